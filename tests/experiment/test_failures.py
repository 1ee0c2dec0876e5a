"""Where sweeps and damaged files meet: every failure is reported, nothing finished is lost, no raw traceback."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT

TINY = ["trainer.batch_size=16", "task.eval_batches=1", "model.hidden_size=8", "trainer.progress=false", "threads=1",
        "logger=none"]


def test_a_table_lists_another_configs_run_as_a_conflict_and_never_counts_it(tmp_path):
    from skiprnn.experiment import tables, tracking
    from skiprnn.experiment.tasks.adding import TABLE1
    from skiprnn.experiment.trainer import fingerprint

    asked = tables.asked_configs(TABLE1, [])
    final = {"val_mse": 1e-5, "val_updates": 50.0, "val_update_fraction": 1.0, "val_solved": True,
             "inference_flops": 2.46e6, "stable_mse": 1e-5, "stable_update_fraction": 1.0, "stable_window": 1,
             "stable_updates": 50.0}
    for row, lr, steps in (("gru", 3e-4, 30000), ("lstm", 1e-4, 30000), ("lstm_pskip0.2", 1e-4, 600)):
        cfg = {**asked[row], "seed": 0, "trainer": {**asked[row]["trainer"], "lr": lr, "max_steps": steps}}
        run = tmp_path / "table1" / row / "seed=0"
        run.mkdir(parents=True)
        tracking.write_json(run / tracking.METRICS, {"step": steps, "commit": "abc", "final": final, "config": cfg,
                                                     "fingerprint": fingerprint(cfg)})
    text, rows = tables.build(TABLE1, tmp_path, [0])
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert lines["GRU"].rstrip().endswith("| 1 conflict |") and "| – |" in lines["GRU"]  # not in the statistics
    assert "trainer.lr: run 0.0003, asked 0.0001" in text and "completed" not in lines["GRU"]
    assert "1 completed (30,000 steps) |" in lines["LSTM"]
    assert "**1 below the 20,000-step budget**" in lines["LSTM (p_skip = 0.2)"]
    # asked with the same override, the lr=3e-4 run counts and the others conflict
    text, _ = tables.build(TABLE1, tmp_path, [0], overrides=["trainer.lr=3e-4"])
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "1 completed" in lines["GRU"] and "1 conflict" in lines["LSTM"]


def test_a_sweep_reports_every_failed_job_and_leaves_a_record(cli, tmp_path):
    proc = cli("-m", "model=lstm", "model.p_skip=0,1.5,2.5", f"hydra.sweep.dir={tmp_path}", "trainer.max_steps=2",
               "trainer.eval_every=2", "hydra.launcher.n_jobs=2", *TINY, check=False)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "2 job(s) of this sweep failed" in out
    assert "model.p_skip=1.5 is not allowed" in out and "model.p_skip=2.5 is not allowed" in out
    assert "Traceback" not in out
    failed = sorted(p.parent.name for p in tmp_path.rglob("failed.json"))
    assert len(failed) == 2 and all("p_skip=1.5" in f or "p_skip=2.5" in f for f in failed)
    assert not (tmp_path / ".failures").exists()  # the per-job notes are consumed by the summary
    compare = cli(str(tmp_path), module="skiprnn.compare").stdout
    assert compare.count("seed 0 failed") == 2


def test_an_added_key_outside_the_schema_stops_the_run_naming_the_nearest(cli, tmp_path):
    proc = cli("+trainer.max_step=10", f"hydra.run.dir={tmp_path}", *TINY, check=False)
    assert proc.returncode == 1
    assert "error: trainer.max_step is not a config key: did you mean trainer.max_steps" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "metrics.json").exists()


def test_a_damaged_checkpoint_is_named_with_the_ways_on(cli, tmp_path):
    args = (f"hydra.run.dir={tmp_path}", "trainer.max_steps=6", "trainer.eval_every=2", "trainer.halt_after_steps=4",
            *TINY)
    cli(*args)  # halts at step 4: checkpoint.pt holds step 4, checkpoint.prev.pt step 2
    assert torch.load(tmp_path / "checkpoint.prev.pt", weights_only=False)["step"] == 2
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 100)
    proc = cli(*args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'checkpoint.pt'} cannot be read" in proc.stderr
    assert "checkpoint.prev.pt" in proc.stderr and "force=true" in proc.stderr
    os.replace(tmp_path / "checkpoint.prev.pt", tmp_path / "checkpoint.pt")  # the way on it names
    assert "resuming from step 2" in cli(*args).stdout


def test_a_read_only_folder_gives_one_line(cli, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the message itself is tested below")
    tmp_path.chmod(0o500)
    proc = cli(f"hydra.run.dir={tmp_path}/run", *TINY, check=False)
    assert proc.returncode == 1 and "error: cannot write" in proc.stderr


def test_storage_errors_become_one_line():
    import errno

    from skiprnn.experiment.errors import storage_message

    msg = storage_message(OSError(errno.ENOSPC, "No space left on device", "/data/run/checkpoint.pt"))
    assert msg.startswith("cannot write /data/run/checkpoint.pt: no space left on the device")
    assert storage_message(OSError(errno.EROFS, "Read-only file system", "/ro")).startswith("cannot write /ro: read-only")
    assert storage_message(OSError(errno.ENOENT, "No such file")) is None  # not a storage problem: a traceback


@pytest.mark.slow
@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_saves_the_step_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path, stop, code):
    """Ctrl-C, and SIGTERM (what Slurm sends at a time limit or a preemption): the run stops after its current step,
    saves it (between evaluations too), says where, and resumes to the same curve as a run never stopped."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb_home"), OMP_NUM_THREADS="1")
    env.pop("ATEN_CPU_CAPABILITY", None)
    base = [sys.executable, "-m", "skiprnn.train", "trainer.eval_every=5", "logger=none", *TINY]
    run = tmp_path / "run"
    proc = subprocess.Popen([*base, f"hydra.run.dir={run}", "trainer.max_steps=100000"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    curve = run / "curve.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (curve.exists() and len(curve.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    time.sleep(0.03)  # most likely between two evaluations
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert "Traceback" not in err
    saved = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert f"stopped at step {saved}; " in out and f"holds step {saved:,}" in out and "Rerun the same command" in out
    if stop == signal.SIGINT:
        return  # the same save and resume as SIGTERM's, checked there
    budget = (saved // 5 + 2) * 5
    resumed = subprocess.run([*base, f"hydra.run.dir={run}", f"trainer.max_steps={budget}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {saved}" in resumed.stdout
    whole = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'whole'}", f"trainer.max_steps={budget}"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr

    def values(folder):
        rows = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("seconds_per_step", "max_steps")} for r in rows]

    assert values(run) == values(tmp_path / "whole")


def test_ctrl_c_while_saving_waits_for_the_checkpoint(tmp_path):
    """The stop lands after the curve and its checkpoint are both written (a stop between them once left a curve
    whose checkpoint was missing)."""
    from skiprnn.experiment.trainer import _deferred_interrupt

    done = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the tests run as a background job
    with pytest.raises(KeyboardInterrupt):
        with _deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is delivered here, and must not interrupt the block
            done.append("curve")
            done.append("checkpoint")
    assert done == ["curve", "checkpoint"]
    assert signal.getsignal(signal.SIGINT) is before  # restored
    from skiprnn.experiment.errors import Terminated

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with _deferred_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            done.append("saved")
    assert done[-1] == "saved" and signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_make_takes_a_results_path_with_a_space(tmp_path):
    results = tmp_path / "with space"
    make = subprocess.run(["make", "reproduce-table1", "SEEDS=0", "STEPS=2", f"RESULTS={results}", "JOBS=1",
                           "ARGS=trainer.eval_every=2 " + " ".join(TINY) + " experiment=table1/lstm"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert make.returncode == 0, make.stdout[-2000:] + make.stderr[-2000:]
    assert (results / "table1" / "lstm" / "seed=0" / "metrics.json").exists()
    assert "1 completed" in (results / "table1.md").read_text()


def test_wandb_groups_keep_quick_folders_apart_and_name_ad_hoc_runs():
    from pathlib import Path

    from skiprnn.experiment.identity import flatten
    from skiprnn.experiment.tracking import wandb_group

    assert wandb_group({"group": "table1"}, Path("results/table1")) == "table1"
    assert wandb_group({"group": "table1"}, Path("/tmp/quick/table1")) == "table1 (quick)"
    assert wandb_group({"group": "table1"}, Path("results/table1_100k")) == "table1_100k"  # the longer budget
    assert wandb_group({"group": "table1"}, Path("results/table10")) == "table1 (results)"
    assert wandb_group({"group": "adding"}, Path("runs")) == "adding"
    assert wandb_group({"group": "table1"}, None) == "table1"
    assert flatten({"model": {"mode": "gru", "x": {"y": 1}}, "lam": 0.0}) == {"model.mode": "gru", "model.x.y": 1, "lam": 0.0}


def test_a_sweeps_runs_share_one_wandb_folder_that_the_end_of_the_sweep_names(cli, tmp_path):
    proc = cli("-m", "model=lstm,gru", f"hydra.sweep.dir={tmp_path}", "trainer.max_steps=2", "trainer.eval_every=2",
               "hydra.launcher.n_jobs=2", *TINY[:-1])  # logger=wandb (offline)
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    assert f"wandb leet '{tmp_path / 'wandb'}'" in proc.stdout
    ids = sorted(p.read_text() for p in tmp_path.rglob("wandb_id.txt"))
    assert len(ids) == 2 and all(any(i in p.name for p in (tmp_path / "wandb").iterdir()) for i in ids)


def test_the_cluster_path_runs_a_sweep_through_submitit_and_marks_a_failed_job(cli, tmp_path):
    """hydra/launcher=local_jobs is submitit's local executor: jobs are pickled and run as on Slurm."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    proc = cli("-m", "hydra/launcher=local_jobs", "model=lstm", "model.p_skip=0,1.5", f"hydra.sweep.dir={tmp_path}",
               "trainer.max_steps=2", "trainer.eval_every=2", *TINY, check=False)
    assert proc.returncode == 1 and "1 job(s) of this sweep failed" in proc.stdout
    finished = [p.parent.name for p in tmp_path.rglob("metrics.json")]
    failed = [p.parent.name for p in tmp_path.rglob("failed.json")]
    assert len(finished) == 1 and "model.p_skip=0," in finished[0]
    assert len(failed) == 1 and "model.p_skip=1.5" in failed[0]
    logs = tmp_path / ".submitit"
    assert not (logs / "%j").exists() and len(list(logs.glob("*_log.out"))) == 2  # one log per job, by its id


def test_a_cross_task_sweep_with_one_tasks_option_says_how_to_write_it(cli):
    proc = cli("-m", "task=adding,mnist", "task.data_root=/data", check=False)
    assert proc.returncode == 1
    assert "task.data_root is an option of one task, but this sweep runs task=adding,mnist" in proc.stderr
    assert "SKIPRNN_DATA=/path" in proc.stderr


def test_a_full_disk_under_torch_save_is_named_as_such(tmp_path):
    """torch.save reports ENOSPC as a RuntimeError about file positions; the write raises the disk's error instead."""
    from skiprnn.experiment import tracking
    from skiprnn.experiment.errors import storage_message

    def write(f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("unexpected pos 506944 vs 506836") from None

    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError) as caught:
        tracking.atomic_write(target, write, binary=True)
    assert caught.value.errno == errno.ENOSPC
    assert storage_message(caught.value).startswith(f"cannot write {target}: no space left on the device")
    assert not list(tmp_path.iterdir())  # no temporary file left


@pytest.mark.parametrize("overrides, message", [
    (["seed=99999999999999999999"], "seed=99999999999999999999 is not allowed: seed must be an integer in [0, 2^41)"),
])
def test_values_that_would_fail_late_or_silently_get_one_line(cli, tmp_path, overrides, message):
    done = cli(*overrides, f"hydra.run.dir={tmp_path / 'run'}", "logger=none", check=False)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr


def test_a_run_out_of_memory_names_the_keys_that_size_it(tmp_path, monkeypatch):
    from skiprnn.experiment import trainer
    from skiprnn.experiment.errors import OutOfMemory

    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 400000000000 bytes.")

    monkeypatch.setattr(trainer, "_run", allocate)
    cfg = {"task": {"name": "adding", "seq_len": 50, "eval_batches": 1, "solved_mse": 0.1}, "model": {},
           "trainer": {"batch_size": 10_000_000, "max_steps": 10, "eval_every": 5, "max_epochs": None, "device": "cpu"},
           "seed": 0, "lam": 0.0}
    with pytest.raises(OutOfMemory, match=r"needs more memory than cpu has .*Lower trainer.batch_size=10000000"):
        trainer.train(cfg, tmp_path / "run")
    assert "OutOfMemory" in (tmp_path / "run" / "failed.json").read_text()


def test_a_launch_that_cannot_work_here_is_named_before_hydra_starts(tmp_path, monkeypatch):
    import shutil

    from skiprnn.experiment.cli import launch_problem

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "needs a Slurm cluster" in launch_problem(["-m", "hydra/launcher=slurm"])
    afile = tmp_path / "a_file"
    afile.write_text("")
    assert launch_problem([f"hydra.sweep.dir={afile}"]) == f"hydra.sweep.dir={afile} is a file: give a folder (new or existing) for the runs"
    assert launch_problem([f"hydra.sweep.dir={tmp_path}", "hydra/launcher=basic"]) is None
    assert "hydra.launcher.n_jobs=0 is not allowed" in launch_problem(["-m", "hydra.launcher.n_jobs=0"])


def test_budget_loss_refuses_a_negative_or_infinite_cost():
    from skiprnn import budget_loss

    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        budget_loss(torch.ones(5, 2), lam=-1)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        budget_loss(torch.ones(5, 2), lam=float("inf"))
    assert budget_loss(torch.ones(5, 2), lam=0.5).item() == 2.5


@pytest.mark.slow
def test_a_killed_worker_fails_its_own_run_only_and_the_same_command_resumes_it(tmp_path):
    """kill -9 of one run's process (what the out-of-memory killer sends) under the default local_parallel launcher:
    the run beside it and the queued one finish, the summary names the killed run with its signal, the exit code is
    non-zero, and rerunning the command resumes the dead run."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb_home"), OMP_NUM_THREADS="1")
    env.pop("ATEN_CPU_CAPABILITY", None)
    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "skiprnn.train", "-m", "seed=0,1,2", "trainer.max_steps=200", "trainer.eval_every=20",
            "logger=none", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", *TINY]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 120
    while time.time() < deadline and victim is None:
        for lock in sweep.rglob(".training.lock"):
            if "seed=0" in str(lock) and (lock.parent / "curve.jsonl").exists():
                victim = lock
                break
        time.sleep(0.1)
    assert victim is not None, "seed 0 never started"
    os.kill(int(victim.read_text().split()[1]), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "1 job(s) of this sweep failed" in out and "killed by SIGKILL" in out, out + err
    runs = {p.parent.name: p.parent for p in sweep.rglob("metrics.json")}
    assert sorted(name.split("seed=")[1].split(",")[0] for name in runs) == ["1", "2"]  # the others finished
    assert "killed by SIGKILL" in (victim.parent / "failed.json").read_text()
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from step" in again.stdout and (victim.parent / "metrics.json").exists()


@pytest.mark.parametrize("row", ["../../escaped", "a/b", ".hidden", "..", "good,../bad"])
def test_a_row_name_cannot_leave_the_sweep_folder(row):
    from skiprnn.experiment.cli import launch_problem
    from skiprnn.experiment.config import ConfigError, check_values

    assert f"row={row} is not allowed" in launch_problem(["-m", f"row={row}"])
    if "," not in row:  # a composed config holds one row
        with pytest.raises(ConfigError, match="row=.* is not allowed: row must be a folder name"):
            check_values({"row": row})
    assert launch_problem(["row=skip_gru_lam1e-5", "row=a.b+c=d-e"]) is None


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_results_follow_the_umask(tmp_path, mask):
    """Collaborators on a shared cluster read what the umask lets them (mkstemp alone would give 0600)."""
    import os

    from skiprnn.experiment import tracking

    old = os.umask(mask)
    try:
        tracking.write_json(tmp_path / "metrics.json", {"a": 1})
        tracking.atomic_write_texts({tmp_path / "t.md": "x", tmp_path / "t.csv": "y"})
        (tmp_path / "plain").write_text("")  # what open() gives, for comparison
    finally:
        os.umask(old)
    want = (tmp_path / "plain").stat().st_mode & 0o777
    assert want == 0o666 & ~mask
    for name in ("metrics.json", "t.md", "t.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name


def test_a_launchers_own_signal_handler_takes_over_once_the_run_is_saved(tmp_path, compose_cfg, monkeypatch, capsys):
    """Under hydra/launcher=slurm, submitit has Slurm send SIGUSR2 ahead of a time limit or a preemption, and its
    handler requeues the job. The trainer first finishes and saves the step, then hands the signal to that handler,
    so the requeued job resumes from the step it stopped at."""
    from omegaconf import OmegaConf

    from skiprnn.experiment import trainer

    plain = OmegaConf.to_container(compose_cfg(*TINY, "trainer.eval_every=5", "trainer.max_steps=40"), resolve=False)
    plain.pop("hydra")
    cfg = OmegaConf.to_container(OmegaConf.create(plain), resolve=True, enum_to_str=True)
    real_step = trainer._train_step

    def step(run, at, params):
        if at == 7:
            os.kill(os.getpid(), signal.SIGUSR2)
        return real_step(run, at, params)

    handed = []

    def submitit_like(signum, frame):  # submitit's checkpoint_and_try_requeue: requeue, then exit
        handed.append((signum, torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"]))
        raise SystemExit(-1)

    monkeypatch.setattr(trainer, "_train_step", step)
    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with pytest.raises(SystemExit):
            trainer.train(cfg, tmp_path / "run")
        assert signal.getsignal(signal.SIGUSR2) is submitit_like  # restored for the launcher
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert handed == [(signal.SIGUSR2, 7)]
    assert "stopped at step 7" in capsys.readouterr().out
