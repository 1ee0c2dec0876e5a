"""scripts/fetch_data.sh, offline: the download goes through file:// URLs to local files in the official formats, and
every refusal (too little space, a damaged archive, a missing task) is one line."""
import hashlib
import os
import shutil
import subprocess
import tarfile
import zipfile

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "fetch_data.sh"
pytestmark = pytest.mark.skipif(shutil.which("curl") is None and shutil.which("wget") is None,
                                reason="needs curl or wget")


def run(*args, **env):
    return subprocess.run([str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **{k: str(v) for k, v in env.items()}})


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A local copy of AI2's download folder: Charades.zip and the RGB features archive, made from synthetic data."""
    from skiprnn.experiment.tasks.charades import synth

    made = tmp_path_factory.mktemp("made") / "Charades"
    synth.generate(made, videos=6, seed=0, dim=8, min_length=3.0, max_length=4.0, progress=False)
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(site / "Charades.zip", "w") as z:
        for name in ("Charades_v1_train.csv", "Charades_v1_test.csv", "Charades_v1_classes.txt"):
            z.write(made / name, f"Charades/{name}")
    with tarfile.open(site / "Charades_v1_features_rgb.tar.gz", "w:gz") as t:
        t.add(made / "Charades_v1_features_rgb", "Charades_v1_features_rgb")
    data = (site / "Charades.zip").read_bytes()
    return site, {"CHARADES_URL": f"file://{site}", "CHARADES_ZIP_SIZE": len(data),
                  "CHARADES_ZIP_SHA256": hashlib.sha256(data).hexdigest(), "MIN_FREE_GB": 0, "SKIP_CACHE": 1}


def test_charades_is_fetched_unpacked_and_checked(mirror, tmp_path):
    site, env = mirror
    done = run("charades", str(tmp_path / "data"), **env)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "data" / "Charades"
    assert (root / "Charades_v1_train.csv").read_bytes().startswith(b"id,subject,scene")
    assert len(list((root / "Charades_v1_features_rgb").iterdir())) == 6
    assert not (root / "Charades_v1_features_rgb.tar.gz").exists()  # the archive is gone once unpacked
    assert "Charades: annotations and 6 feature folders" in done.stdout
    again = run("check", str(tmp_path / "data"), **env)
    assert "Charades: annotations and 6 feature folders" in again.stdout and "MNIST: missing" in again.stdout
    assert again.returncode == 1  # MNIST is not there


def test_a_damaged_archive_and_too_little_space_are_one_line_each(mirror, tmp_path):
    site, env = mirror
    damaged = run("charades", str(tmp_path / "a"), **{**env, "CHARADES_ZIP_SHA256": "0" * 64})
    assert damaged.returncode == 1 and "another SHA-256 (a damaged copy" in damaged.stderr
    assert [line for line in damaged.stderr.splitlines() if line.startswith("error:")] == \
        [damaged.stderr.strip().splitlines()[-1]]  # one error line, after curl's progress meter
    full = run("charades", str(tmp_path / "b"), **{**env, "MIN_FREE_GB": 10**9})
    assert full.returncode == 1 and "needs about 1000000000 GB" in full.stderr
    assert len(full.stderr.strip().splitlines()) == 1 and not (tmp_path / "b" / "Charades" / "Charades.zip").exists()
    nothing = run("sets", str(tmp_path))
    assert nothing.returncode == 1 and nothing.stderr.strip() == \
        "error: name what to fetch: scripts/fetch_data.sh mnist|charades|check [DATA]"


def test_mnist_files_are_checked_by_size_and_hash(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0" * 10)
    done = run("check", str(tmp_path))
    assert done.returncode == 1
    assert "t10k-labels-idx1-ubyte has 10 bytes, expected 10008" in done.stdout
    assert "missing " + str(raw / "train-images-idx3-ubyte") in done.stdout


def test_the_slurm_example_says_how_to_call_it_and_where_to_run_it(tmp_path):
    usage = subprocess.run([str(ROOT / "scripts" / "slurm_table.sh")], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: scripts/slurm_table.sh TABLE PARTITION")
    (tmp_path / "bash").symlink_to(shutil.which("bash"))  # a PATH with bash and without sbatch
    no_slurm = subprocess.run([str(ROOT / "scripts" / "slurm_table.sh"), "1", "cpu"], capture_output=True, text=True,
                              timeout=30, env={**os.environ, "PATH": str(tmp_path)})
    assert no_slurm.returncode == 1 and "run this on your cluster's login node" in no_slurm.stderr
