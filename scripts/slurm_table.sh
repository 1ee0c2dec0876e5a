#!/usr/bin/env bash
# Submit a paper table to a Slurm cluster from its login node: one Slurm job per run (a job array), each resumed from
# its checkpoint after a preemption or a time limit (submitit requeues it), then the table written to results/.
#
#   scripts/slurm_table.sh TABLE PARTITION [KEY=VALUE ...]
#   scripts/slurm_table.sh 1 cpu hydra.launcher.timeout_min=180 hydra.launcher.array_parallelism=40
#
# The options a cluster usually wants are in conf/hydra/launcher/slurm.yaml (time, CPUs, GPUs, memory, setup lines);
# `make test-slurm` tries the whole path on a one-node cluster first.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: scripts/slurm_table.sh TABLE PARTITION [KEY=VALUE ...]  (e.g. scripts/slurm_table.sh 1 cpu)" >&2
    exit 2
fi
table=${1#table} partition=$2
shift 2
command -v sbatch >/dev/null || { echo "error: no sbatch here: run this on your cluster's login node" >&2; exit 1; }
exec make "reproduce-table$table" LAUNCHER=slurm ARGS="hydra.launcher.partition=$partition $*"
