#!/usr/bin/env bash
# Fetch and check a task's data:
#
#   scripts/fetch_data.sh mnist    [DATA]   MNIST's four raw files (torchvision's download), checked by size and SHA-256
#   scripts/fetch_data.sh charades [DATA]   Charades.zip (checked by size and SHA-256) and the RGB features (12 GB
#                                           archive, 37 GB unpacked), after a free-space check; then the float16
#                                           cache the task reads (about 14 GB; SKIP_CACHE=1 leaves it to the first run)
#   scripts/fetch_data.sh check    [DATA]   only check what is there, for both tasks
#
# DATA defaults to $SKIPRNN_DATA, else data/ (where the tasks look: task.data_root=${SKIPRNN_DATA:-data}/...).
# CHARADES_URL changes the download location (default AI2's; a file:// URL or a mirror works), MIN_FREE_GB the space
# the Charades step asks for (default 52: the archive while it unpacks, then the features beside their cache).
set -euo pipefail
what=${1:-}
data=${2:-${SKIPRNN_DATA:-data}}
py=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
charades_url=${CHARADES_URL:-https://ai2-public-datasets.s3-us-west-2.amazonaws.com/charades}

die() { echo "error: $*" >&2; exit 1; }

# name size sha256, as published (Charades.zip: the dataset's own listing) or measured on the originals (MNIST)
MNIST_FILES="t10k-images-idx3-ubyte 7840016 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
t10k-labels-idx1-ubyte 10008 ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
train-images-idx3-ubyte 47040016 ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
train-labels-idx1-ubyte 60008 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
CHARADES_ZIP="Charades.zip ${CHARADES_ZIP_SIZE:-3519822} ${CHARADES_ZIP_SHA256:-c616913ef79c2ddde06d9c562eae57bb8901d459d7568a0d27bf09cbf33ae866}"

check_file() {  # path size sha256: one line saying what is wrong, or nothing
    local path=$1 size=$2 sha=$3
    [[ -f $path ]] || { echo "missing $path"; return; }
    local got
    got=$(stat -c %s "$path")
    [[ $got == "$size" ]] || { echo "$path has $got bytes, expected $size (an interrupted download? delete it and fetch again)"; return; }
    [[ $(sha256sum "$path" | cut -d' ' -f1) == "$sha" ]] ||
        echo "$path has the expected size but another SHA-256 (a damaged copy: delete it and fetch again)"
}

check_mnist() {
    local problems=() line name size sha
    while read -r name size sha; do
        line=$(check_file "$data/MNIST/raw/$name" "$size" "$sha")
        [[ -z $line ]] || problems+=("$line")
    done <<<"$MNIST_FILES"
    if ((${#problems[@]})); then
        printf 'MNIST: %s\n' "${problems[@]}"
        return 1
    fi
    echo "MNIST: the four raw files in $data/MNIST/raw are intact (sizes and SHA-256)"
}

check_charades() {
    local root=$data/Charades missing=()
    for name in Charades_v1_train.csv Charades_v1_test.csv Charades_v1_classes.txt; do
        [[ -f $root/$name ]] || missing+=("$name")
    done
    [[ -d $root/Charades_v1_features_rgb ]] || missing+=("Charades_v1_features_rgb/")
    if ((${#missing[@]})); then
        echo "Charades: missing in $root: ${missing[*]} (scripts/fetch_data.sh charades $data fetches them)"
        return 1
    fi
    local videos
    videos=$(find "$root/Charades_v1_features_rgb" -mindepth 1 -maxdepth 1 -type d | wc -l)
    echo "Charades: annotations and $videos feature folders in $root (the cache build checks every file)"
}

fetch() {  # url target
    if command -v curl >/dev/null; then
        curl -fL --retry 3 -C - -o "$2" "$1" || die "could not download $1 (no network? set CHARADES_URL to a mirror)"
    else
        wget -c -O "$2" "$1" || die "could not download $1 (no network? set CHARADES_URL to a mirror)"
    fi
}

case $what in
mnist)
    mkdir -p "$data"
    "$py" -c "import sys; from skiprnn.experiment.tasks.mnist import load_mnist; load_mnist(sys.argv[1], download=True)" \
        "$data" 2>&1 | tail -n 1 >&2 || true
    check_mnist || die "MNIST in $data is not intact (see above)"
    ;;
charades)
    root=$data/Charades
    mkdir -p "$root"
    need=${MIN_FREE_GB:-52}
    free=$(df -Pk "$root" | awk 'NR == 2 {print int($4 / 1048576)}')
    ((free >= need)) || die "$root has $free GB free; fetching and caching Charades needs about $need GB (the 12 GB \
archive while it unpacks to 37 GB, then the 14 GB cache): free space, or point DATA at a larger disk"
    read -r zip size sha <<<"$CHARADES_ZIP"
    if [[ -n $(check_file "$root/$zip" "$size" "$sha") ]]; then
        echo "fetching $charades_url/$zip"
        fetch "$charades_url/$zip" "$root/$zip"
    fi
    problem=$(check_file "$root/$zip" "$size" "$sha")
    [[ -z $problem ]] || die "$problem"
    # the annotations, flat in $root (the zip holds them in Charades/)
    "$py" -c "
import sys, zipfile
from pathlib import Path
root = Path(sys.argv[1])
with zipfile.ZipFile(root / 'Charades.zip') as z:
    for member in z.namelist():
        name = Path(member).name
        if name in ('Charades_v1_train.csv', 'Charades_v1_test.csv', 'Charades_v1_classes.txt'):
            (root / name).write_bytes(z.read(member))
" "$root"
    if [[ ! -d $root/Charades_v1_features_rgb ]]; then
        archive=$root/Charades_v1_features_rgb.tar.gz
        echo "fetching $charades_url/Charades_v1_features_rgb.tar.gz (12 GB)"
        fetch "$charades_url/Charades_v1_features_rgb.tar.gz" "$archive"
        tar -xzf "$archive" -C "$root" || die "$archive does not unpack (a damaged download: delete it and fetch again)"
        rm -f "$archive"
    fi
    check_charades || die "Charades in $root is incomplete (see above)"
    if [[ -z ${SKIP_CACHE:-} ]]; then
        "$py" -m skiprnn.experiment.tasks.charades.cache "$root" "$root/skiprnn_cache" --split train test
    fi
    ;;
check)
    status=0
    check_mnist || status=1
    check_charades || status=1
    exit $status
    ;;
*)
    die "name what to fetch: scripts/fetch_data.sh mnist|charades|check [DATA]"
    ;;
esac
