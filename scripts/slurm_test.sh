#!/usr/bin/env bash
# make test-slurm: a table sweep through hydra/launcher=slurm on a one-node Slurm cluster started here (slurmctld and
# slurmd on localhost, Debian's slurm-wlm with munge), one of its jobs preempted with submitit's signal (SIGUSR2, what
# Slurm sends ahead of a time limit): the job must save its step, requeue itself, resume and finish.
#
# Where this machine cannot host the cluster (not root, no Slurm and no apt-get), it prints one line starting with
# "SKIPPED" and exits 0: skipped, never passed. Any other failure exits 1 with the logs' tails.
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

skip() { echo "SKIPPED test-slurm: $*"; exit 0; }
fail() {
    echo "FAILED test-slurm: $*" >&2
    for f in "$work"/log/*.log "$work"/sweep.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    exit 1
}

[[ $(id -u) == 0 ]] || skip "a one-node cluster needs root here (munged and slurmd run as root); run it on a machine where you are"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || skip "no Slurm (slurmctld, munged) and no apt-get to install Debian's slurm-wlm"
    echo "installing Debian's slurm-wlm and munge (once per machine)"
    { apt-get install -y slurm-wlm munge >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 &&
      apt-get install -y slurm-wlm munge >/dev/null 2>&1; }; } || skip "apt-get could not install slurm-wlm and munge"
fi

work=$(mktemp -d /tmp/skiprnn-slurm.XXXXXX)
mkdir -p "$work"/{state,spool,log}
cleanup() {
    [[ -f $work/slurmd.pid ]] && kill "$(cat "$work/slurmd.pid")" 2>/dev/null || true
    [[ -f $work/slurmctld.pid ]] && kill "$(cat "$work/slurmctld.pid")" 2>/dev/null || true
}
trap cleanup EXIT

# munge: the key Debian's package made, the socket folder a container lacks
[[ -f /etc/munge/munge.key ]] || mungekey --create >/dev/null 2>&1 || skip "no munge key and mungekey could not make one"
mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
[[ -S /run/munge/munge.socket.2 ]] || munged --force >/dev/null 2>&1 || skip "munged would not start"

host=$(hostname)
port=$((17000 + RANDOM % 2000))
cat >"$work/slurm.conf" <<EOF
ClusterName=skiprnn-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
NodeName=$host CPUs=$(nproc) RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
slurmctld -c >/dev/null 2>&1 || skip "slurmctld would not start (see $work/log)"
slurmd >/dev/null 2>&1 || skip "slurmd would not start (see $work/log)"
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 1; done
sinfo -h -o %T | grep -qx idle || skip "the one-node cluster did not come up within 60 s (see $work/log)"
echo "one-node Slurm cluster up ($(sinfo -V)); training a small table sweep through hydra/launcher=slurm"

# Two tiny runs of Table 1's Skip GRU row, one job each (a job array); evaluations every 100 steps
results=$work/results
"$py" -m skiprnn.train -m table=table1 experiment=table1/skip_gru_lam1e-5 seed=0,1 trainer.max_steps=20000 \
    trainer.eval_every=100 model.hidden_size=8 trainer.batch_size=16 task.eval_batches=1 logger=none \
    trainer.progress=false hydra/launcher=slurm hydra.launcher.partition=test hydra.launcher.cpus_per_task=1 \
    hydra.launcher.mem_gb=1 hydra.launcher.timeout_min=20 "hydra.sweep.dir=$results/table1" >"$work/sweep.log" 2>&1 &
sweep=$!

# Preempt the first run once it has evaluated twice: SIGUSR2 to its job, as Slurm sends ahead of a time limit
victim=$results/table1/skip_gru_lam1e-5/seed=0
for _ in $(seq 300); do
    [[ -f $victim/curve.jsonl && $(wc -l <"$victim/curve.jsonl") -ge 2 ]] && break
    kill -0 "$sweep" 2>/dev/null || fail "the sweep ended before its first run had evaluated twice"
    sleep 1
done
[[ -f $victim/curve.jsonl ]] || fail "the first run never evaluated"
first=$(squeue -h -o %i | sort | head -n 1)
[[ -n $first ]] || fail "no job in the queue to preempt"
scancel --signal=USR2 "$first" || fail "scancel --signal=USR2 $first failed"
echo "sent SIGUSR2 to job $first at step $(tail -n 1 "$victim/curve.jsonl" | sed 's/.*"step": \([0-9]*\).*/\1/')"

wait "$sweep" || fail "the sweep exited $? (see $work/sweep.log)"
for seed in 0 1; do
    [[ -f $results/table1/skip_gru_lam1e-5/seed=$seed/metrics.json ]] || fail "seed $seed has no metrics.json"
done
logs=$results/table1/.submitit
grep -rqs "stopped at step" "$logs" || fail "no job said it stopped (was the signal delivered?)"
grep -rqs "takes over (submitit requeues" "$logs" || fail "the stopped job did not hand the signal to submitit"
grep -rqs "resuming from step" "$logs" || fail "no job resumed from its checkpoint after the requeue"
rm -rf "$work"
echo "PASSED test-slurm: the preempted job saved its step, requeued, resumed and finished; both runs finished"
