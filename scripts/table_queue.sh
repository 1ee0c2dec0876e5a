#!/usr/bin/env bash
# Train chosen runs of a table in the background, WORKERS at a time, in the order of a queue file, so the runs a
# claim needs first finish first (make reproduce-tableN trains a table in the sweep's own order).
#
#   scripts/table_queue.sh QUEUE TABLE [WORKERS] [RESULTS]       (ARGS='threads=2 ...': overrides for every run)
#
# QUEUE: one "<row> <seed>" per line ('#' lines are comments); each worker takes the next line until none is left,
# removing it from the file (give it a copy: scripts/queues/ holds the tables' orders). A run already finished is
# skipped by the trainer, and a stopped one resumes from its checkpoint, so the same command picks the queue up again.
# Each run: python -m skiprnn.train -m table=TABLE experiment=TABLE/<row> seed=<seed> $ARGS, into RESULTS/TABLE (the
# table's config gives each run one thread; in numerics=reproducible the count does not change a run's bits, so
# ARGS=threads=2 with WORKERS=1 is a schedule, not another run).
set -euo pipefail
queue=$1 table=$2 workers=${3:-2} results=${4:-results}
py=${PYTHON:-.venv/bin/python}
# The package of this checkout (a worktree that shares another clone's .venv would otherwise import that clone's
# src/ through its editable install), and the configs beside it
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
[[ -f $queue ]] || { echo "error: no queue file $queue" >&2; exit 2; }
logs="$results/$table/.queue-logs"
mkdir -p "$logs"

next_run() {  # pop the queue's first line, under a lock shared by the workers
    exec 9>"$queue.lock"
    flock 9
    local line
    line=$(head -n 1 "$queue")
    [[ -n $line ]] && sed -i '1d' "$queue"
    flock -u 9
    echo "$line"
}

worker() {
    while true; do
        read -r row seed <<<"$(next_run)" || true
        [[ -z ${row:-} ]] && return 0
        [[ $row == \#* ]] && continue  # a comment line
        echo "$(date -u +%FT%TZ) worker $1: $row seed=$seed"
        # shellcheck disable=SC2086  # ARGS: whitespace-separated overrides
        "$py" -m skiprnn.train -m "table=$table" "experiment=$table/$row" "seed=$seed" hydra/launcher=basic \
            "hydra.sweep.dir=\"$results/$table\"" ${ARGS:-} >>"$logs/$row-seed$seed.log" 2>&1 ||
            echo "$(date -u +%FT%TZ) worker $1: $row seed=$seed failed (see $logs/$row-seed$seed.log)"
    done
}

for w in $(seq 1 "$workers"); do worker "$w" & done
wait
