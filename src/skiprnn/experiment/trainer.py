"""The shared training loop: Adam, global-norm clipping, periodic evaluation, checkpoints and resume.

A run directory ends with ``metrics.json`` only when training finished. A run that finds one (for the same
config and at least the same budget) does not train again; a run that finds a checkpoint resumes from it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from ..backends import numerics
from ..nn.flops import inference_flops
from ..nn.rnn import budget_loss
from . import tracking
from .errors import CheckpointError, ConfigError, OutOfMemory, RunConflict, Terminated
from .identity import as_trained, identifies_run
from .model import SequenceModel, model_from_config
from .tasks import build_task
from .tasks.base import as_batch


def load_trained(run_dir: Path, **task_overrides):
    """A run directory's resolved config, its model from ``checkpoint.pt`` (eval mode, CPU), its task (with
    ``task_overrides``, e.g. a local ``data_root``) and the checkpoint's step: for figures and analyses."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    cfg_path, ckpt_path = run_dir / tracking.RECORD / "config.yaml", run_dir / tracking.CHECKPOINT
    for path in (cfg_path, ckpt_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: pass a run directory trained on this machine by "
                                    f"`python -m skiprnn.train`; checkpoints are not committed with results/, "
                                    f"and `make clean-checkpoints` deletes them")
    cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True, enum_to_str=True)
    cfg["task"].update(task_overrides)
    task = build_task(cfg["task"], cfg["trainer"]["batch_size"])
    model = model_from_config(cfg["model"], task.input_size, task.output_size, task.readout)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return cfg, model.eval(), task, state["step"]


def fingerprint(cfg: dict) -> dict:
    """What identifies a run: its config minus the keys ``identity`` declares not to (execution, budget), with its
    model keys as they acted (``identity.as_trained``)."""
    return as_trained(_keep(cfg))


def _keep(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        if identifies_run(prefix + key):
            out[key] = _keep(value, f"{prefix}{key}.") if isinstance(value, dict) else value
    return out


def _lookup(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return KeyError
        d = d[part]
    return d


def differences(stored: dict, current: dict) -> list[str]:
    """Keys in which a stored run's fingerprint and the current config differ.

    Options added after the run was made are absent from its record; they do not count while they keep
    their neutral default (False or None), which reproduces the old behaviour.
    """
    stored = fingerprint(stored)  # drop keys excluded since
    return [k for k in _diff(stored, current)
            if not (_lookup(stored, k) is KeyError and _lookup(current, k) in (False, None))]


def _diff(a: dict, b: dict, prefix="") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


def run_label(cfg: dict, run_dir: Path) -> str:
    """How the progress lines name a run: <row>-seed<k>, plus its folder's name (the overrides) when that is not
    seed=<k>, so that the runs of an ad-hoc sweep, which share a row, can be told apart in interleaved logs."""
    label = f"{cfg['row']}-seed{cfg['seed']}"
    return label if run_dir.name in ("", f"seed={cfg['seed']}") else f"{label} ({run_dir.name})"


def duration(seconds: float) -> str:
    """2h05m, 7m12s, 40s: how long a run has left, in the plain progress lines."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """A tqdm bar on a terminal; one plain line per evaluation otherwise (log files, a sweep's run processes), which says
    how long the run has left at the pace of this invocation (evaluations included)."""

    def __init__(self, total: int, start: int, name: str, enabled: bool, clock=time.perf_counter):
        self.bar = None
        self.name = name
        self.last_eval: dict = {}  # the latest validation metric, shown beside the live loss
        self.clock, self.start, self.started = clock, start, clock()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=name, dynamic_ncols=True, smoothing=0.05)

    def step(self, postfix: dict) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({**postfix, **self.last_eval}, refresh=False)

    def evaluation(self, row: dict, metric: str, total: int) -> None:
        text = (f"{self.name} step {row['step']}/{total} loss {row['train_loss']:.4g} val {metric} {row['val_' + metric]:.4g} "
                f"updates {100 * row['val_update_fraction']:.1f}%")
        done = row["step"] - self.start
        if 0 < done and row["step"] < total:
            pace = (self.clock() - self.started) / done
            text += f", {pace:.3g} s/step, {duration(pace * (total - row['step']))} left"
        self.last_eval = {f"val_{metric}": f"{row['val_' + metric]:.3g}"}
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluation_generator(seed: int, split: str, evaluation: int) -> torch.Generator:
    """The generator an evaluation's random skips (p_skip) come from: a pure function of (seed, split, evaluation), so
    that re-evaluating a checkpoint repeats the recorded numbers; apart from every data stream (tasks.base)."""
    return torch.Generator().manual_seed(2**48 + (seed * 1_000_003 + evaluation) * 4 + {"val": 0, "test": 1}.get(split, 2))


def evaluate(model: SequenceModel, task, split: str, evaluation: int, seed: int, device) -> dict:
    """The split's scores and update counts; a task with its own ``evaluate`` (per-video metrics) computes them. A
    random-skip model draws its skips from ``evaluation_generator`` (on the CPU; the mask then moves to the device)."""
    generator = evaluation_generator(seed, split, evaluation) if torch.device(device).type == "cpu" else None
    with model.rnn.skip_draws(generator):
        own = getattr(task, "evaluate", None)
        if own is not None:
            return own(model, split, evaluation, seed, device)
        return _evaluate(model, task, split, evaluation, seed, device)


@torch.no_grad()
def _evaluate(model: SequenceModel, task, split: str, evaluation: int, seed: int, device) -> dict:
    model.eval()
    predictions, targets, counts, lengths = [], [], [], []
    for x, y in task.eval_batches(split, evaluation, seed):
        prediction, updates = model(x.to(device))
        predictions.append(prediction.cpu())
        targets.append(y)
        counts.append(updates.sum(0).cpu())
        lengths.append(x.shape[0])
    model.train()
    counts_all = torch.cat(counts)
    fractions = torch.cat([c / n for c, n in zip(counts, lengths)])
    scores = task.score(torch.cat(predictions), torch.cat(targets))
    out = {f"{split}_{k}": v for k, v in scores.items()}
    out[f"{split}_updates"] = counts_all.mean().item()
    out[f"{split}_updates_std"] = counts_all.std(unbiased=False).item()
    out[f"{split}_update_fraction"] = fractions.mean().item()
    out[f"{split}_update_fraction_std"] = fractions.std(unbiased=False).item()
    out[f"{split}_solved"] = bool(task.solved(scores))
    return out


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def summarize(curve: list[dict], task, cfg: dict, model_cfg: dict) -> dict:
    """Final values, and the same averaged over the last evaluations to show how settled they are."""
    curve = [r for r in curve if r["step"] > 0] or curve  # a short run's step-0 evaluation is no result
    last, window = curve[-1], curve[-cfg["trainer"]["stable_window"]:]
    metric = task.metric
    final = {k: v for k, v in last.items()}
    final["stable_" + metric] = _mean(window, "val_" + metric)
    final["stable_update_fraction"] = _mean(window, "val_update_fraction")
    final["stable_updates"] = _mean(window, "val_updates")
    if all("val_solved" in r for r in window):  # tasks without a "solved" criterion (Charades) have no flag
        final["stable_solved_fraction"] = sum(r["val_solved"] for r in window) / len(window)
    final["stable_window"] = len(window)
    best = (max if task.higher_is_better else min)(curve, key=lambda r: r["val_" + metric])
    final["best_val_step"] = best["step"]
    final["best_val_" + metric] = best["val_" + metric]
    if "test_" + metric in best:
        final["best_val_test_" + metric] = best["test_" + metric]
        final["best_val_test_updates"] = best["test_updates"]
    final["inference_flops"] = inference_flops(
        model_cfg["mode"], task.input_size, model_cfg["hidden_size"], last["val_updates"], model_cfg["num_layers"],
        feature_flops=task.feature_flops)
    return final


def _wandb_key(key: str) -> str:
    """val_mse -> val/mse, so W&B groups the charts by split."""
    split, _, rest = key.partition("_")
    return f"{split}/{rest}" if split in ("train", "val", "test") else key


def _save_checkpoint(run: RunContext, step: int, curve: list, legs: list, interval: dict | None = None) -> None:
    """``interval``: the training sums since the last evaluation, for a checkpoint between two (a stopped run), so
    that its resumption reports the same averages as an uninterrupted run."""
    path = run.run_dir / tracking.CHECKPOINT
    state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "step": step, "curve": curve,
             "rng": torch.get_rng_state(), "fingerprint": run.fp, "legs": legs, "interval": interval}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()  # p_skip draws on the device's generator
    if path.exists():  # keep the one before: a damaged newest checkpoint then costs one evaluation interval
        os.replace(path, path.with_name(tracking.PREVIOUS_CHECKPOINT))
    tracking.atomic_write(path, lambda f: torch.save(state, f), binary=True)


# SIGUSR2: what submitit has Slurm send ahead of a time limit or a preemption (hydra/launcher=slurm)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
_NOT_HANDLERS = (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler, None)


class StopRequest:
    """Ctrl-C, SIGTERM (``kill``, a Slurm time limit or preemption) or SIGUSR2 (submitit's warning of one) while a
    run trains: noted, and acted on at the end of the current step, which the run then saves (``_loop``); a second
    signal stops at once. ``handoff``: the handler the process had for that signal before training (submitit's,
    which requeues the job), to run once the run is saved."""

    def __init__(self):
        self.signal: int | None = None
        self.handoff = None

    def __call__(self, signum, frame):
        if self.signal is not None:
            raise Terminated if signum != signal.SIGINT else KeyboardInterrupt
        self.signal = signum

    def exception(self) -> KeyboardInterrupt:
        return KeyboardInterrupt() if self.signal == signal.SIGINT else Terminated()


@contextlib.contextmanager
def _deferred_interrupt():
    """Ctrl-C or SIGTERM during the block takes effect when it ends: the curve and its checkpoint are saved together,
    so a stopped run never leaves a curve ahead of its checkpoint, nor the checkpoint half-replaced. Inside the
    training loop the signal goes to its StopRequest; elsewhere it raises."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield
        return
    caught = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        handler = previous[caught[0]]
        if isinstance(handler, StopRequest):
            handler(caught[0], None)
        else:
            raise KeyboardInterrupt if caught[0] == signal.SIGINT else Terminated


@contextlib.contextmanager
def _stop_requests():
    """A StopRequest that takes Ctrl-C and SIGTERM for the block (None outside the main thread, which gets no signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    stop = StopRequest()
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stop.signal is not None and callable(previous[stop.signal]) and previous[stop.signal] not in _NOT_HANDLERS:
            stop.handoff = previous[stop.signal]


def _load_checkpoint(path: Path, device) -> dict:
    """A checkpoint's state; a damaged one is named with the ways on."""
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # torch raises several types for a truncated or overwritten file
        previous = path.with_name(tracking.PREVIOUS_CHECKPOINT)
        choices = (f"resume from the previous checkpoint (one evaluation interval earlier) with `mv '{previous}' "
                   f"'{path}'` and rerun, or " if previous.exists() else "")
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {str(error).splitlines()[0][:200]}). "
                              f"It is damaged: {choices}train this run again from step 0 with force=true") from None


def train(cfg: dict, run_dir: Path, overrides: list[str] | None = None, sweep_dir: Path | None = None,
          record: dict | None = None) -> dict | None:
    """Train one run described by the resolved config ``cfg`` into ``run_dir``.

    ``sweep_dir``: the sweep this run belongs to, if any; its runs share one W&B folder there, and its name keeps a
    quick or variant folder's runs out of the real table's W&B group.
    ``overrides`` (the command line's) are recorded with the config in ``.hydra/`` when training starts or
    resumes, never by an invocation that finds the run finished or holding another config.
    ``record``: the config as the run's record (``.hydra/config.yaml``, metrics.json, failed.json, W&B) keeps it,
    where it differs from ``cfg`` (the CLI records data locations unresolved: ``identity.recorded_config``).
    Returns the final metrics, or None when the run halted early (``trainer.halt_after_steps``).
    """
    record = cfg if record is None else record
    run_dir.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(cfg)
    metrics_path = run_dir / tracking.METRICS
    tcfg = cfg["trainer"]
    if cfg.get("force"):
        for name in (tracking.METRICS, tracking.CHECKPOINT, tracking.PREVIOUS_CHECKPOINT, tracking.CURVE, tracking.FAILED,
                     tracking.WANDB_ID):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / tracking.RECORD, ignore_errors=True)

    overrides = list(overrides or [])
    try:
        task = build_task(cfg["task"], tcfg["batch_size"])
        max_steps, eval_every = tcfg["max_steps"], tcfg["eval_every"]
        if tcfg.get("max_epochs"):
            if not task.steps_per_epoch:
                raise ConfigError(f"trainer.max_epochs={tcfg['max_epochs']} is not allowed: task {task.name} has no "
                                  "epochs (its data are generated); use trainer.max_steps")
            max_steps, eval_every = tcfg["max_epochs"] * task.steps_per_epoch, task.steps_per_epoch
    except Exception as error:  # e.g. missing data: a sweep's table and compare show the run as failed, not missing
        if not metrics_path.exists():
            record_failure(run_dir, error, overrides, record)
        raise

    if metrics_path.exists():
        done = tracking.read_json(metrics_path)
        if differences(done["fingerprint"], fp):
            raise RunConflict(f"{run_dir} holds a finished run with a different config (differs in: "
                              f"{', '.join(differences(done['fingerprint'], fp))}). Choose another directory or pass force=true.")
        if done["step"] >= max_steps:
            print(f"{cfg['row']} seed={cfg['seed']}: finished result found in {run_dir}, not training again", flush=True)
            return done

    try:
        with tracking.run_lock(run_dir):
            return _run(cfg, run_dir, task, max_steps, eval_every, fp, overrides, sweep_dir, record)
    except tracking.RunLocked as holder:
        raise RunConflict(f"{run_dir} is being trained by {holder} (another sweep or command on the same folder): "
                          "let it finish, then rerun to skip or resume it") from None
    except RunConflict:
        raise  # another config's run lives here: leave its directory as it is
    except Exception as error:
        if isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error)):
            memory = OutOfMemory(f"{run_dir}: the run needs more memory than {tcfg['device']} has "
                                 f"({str(error).splitlines()[0][:120]}). Lower trainer.batch_size={tcfg['batch_size']} "
                                 "(or task.eval_batch_size / model.hidden_size), or run fewer jobs at once (JOBS=)")
            record_failure(run_dir, memory, overrides, record)
            raise memory from None
        record_failure(run_dir, error, overrides, record)  # its checkpoint stays for a retry
        raise


def record_failure(run_dir: Path, error: Exception, overrides: list[str], cfg: dict) -> None:
    """failed.json: what went wrong and with which config, so that tables list the run as failed."""
    tracking.write_json(run_dir / tracking.FAILED, {"error": repr(error), "traceback": traceback.format_exc(),
                                                    "overrides": overrides, "config": cfg})


def record_config(run_dir: Path, cfg: dict, overrides: list[str]) -> None:
    """The config and command-line overrides of the invocation that trains this run, in Hydra's layout
    (``.hydra/config.yaml``, ``.hydra/overrides.yaml``; Hydra's own copy is turned off, see conf/config.yaml)."""
    from omegaconf import OmegaConf

    record = run_dir / tracking.RECORD
    record.mkdir(parents=True, exist_ok=True)
    tracking.atomic_write_text(record / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg)))
    tracking.atomic_write_text(record / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides))))


def _run(cfg, run_dir, task, max_steps, eval_every, fp, overrides, sweep_dir=None, record=None):
    record = cfg if record is None else record
    tcfg, mcfg = cfg["trainer"], cfg["model"]
    ckpt_path = run_dir / tracking.CHECKPOINT
    torch.manual_seed(cfg["seed"])
    device = torch.device(tcfg["device"])
    model = model_from_config(mcfg, task.input_size, task.output_size, task.readout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg["lr"], betas=(0.9, 0.999), eps=1e-8)
    start, curve, legs, interval = 0, [], [], None
    previous = run_dir / tracking.PREVIOUS_CHECKPOINT
    if not ckpt_path.exists() and previous.exists():  # killed between the two renames of _save_checkpoint
        ckpt_path = previous
    if ckpt_path.exists():
        state = _load_checkpoint(ckpt_path, device)
        if differences(state["fingerprint"], fp):
            raise RunConflict(f"{ckpt_path} was written by a different config (differs in: "
                              f"{', '.join(differences(state['fingerprint'], fp))}). Choose another directory or pass force=true.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, curve, interval = state["step"], state["curve"], state.get("interval")
        legs = state.get("legs") or [{"commit": "unrecorded", "from_step": 0}]  # checkpoints made before legs were kept
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if start > max_steps:
            print(f"{cfg['row']} seed={cfg['seed']}: the checkpoint in {run_dir} is at step {start}, past "
                  f"trainer.max_steps={max_steps}; nothing to train (raise the budget to go on)", flush=True)
            return None
        print(f"{cfg['row']} seed={cfg['seed']}: resuming from step {start}", flush=True)
    # The code and the machine of this invocation, read now (HEAD may move while it trains); a resumed run keeps every
    # leg's. A run keeps one numerics mode: a leg in another would make it neither reproducible nor fast's.
    env = numerics.environment()
    trained_in = {leg.get("environment", {}).get("numerics", "fast") for leg in legs}
    if trained_in - {env["numerics"]}:
        raise RunConflict(f"{ckpt_path} was trained with numerics={trained_in.pop()}, and this invocation runs "
                          f"numerics={env['numerics']}. Resume it in its own mode (numerics=...), or pass force=true "
                          "to train it again from step 0")
    legs = legs + [{"commit": tracking.git_commit(), "from_step": start, "environment": env}]
    record_config(run_dir, record, overrides)
    (run_dir / tracking.FAILED).unlink(missing_ok=True)
    wandb_id_file = run_dir / tracking.WANDB_ID
    resume_id = wandb_id_file.read_text().strip() if wandb_id_file.exists() else None
    tracker = tracking.Tracker(cfg["logger"], run_dir, run_label(cfg, run_dir), tracking.wandb_group(cfg, sweep_dir),
                               {**record, "environment": env}, resume_id, wandb_root=sweep_dir, metric=task.metric,
                               higher_is_better=task.higher_is_better)
    with tracker:
        if tracker.run_id:
            wandb_id_file.write_text(tracker.run_id)
        run = RunContext(cfg, run_dir, task, model, optimizer, tracker, device, max_steps, eval_every, fp, overrides,
                         record, run_label(cfg, run_dir))
        return _loop(run, TrainingState(start, curve, legs, interval or _zero_sums()))


def _zero_sums() -> dict:
    """The training sums of an evaluation interval, before its first step."""
    return {"loss": 0.0, "task_loss": 0.0, "updates": 0.0, "n": 0.0, "seconds": 0.0}


@dataclasses.dataclass
class TrainingState:
    """Where a run stands: its last completed step, its evaluations, the invocations (legs) that trained it, and the
    training sums since its last evaluation."""
    start: int
    curve: list
    legs: list
    interval: dict


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What the training loop of one run works with: its config and folder, task, model, optimizer and tracker, its
    budget, and what its records keep (fingerprint, overrides, recorded config)."""
    cfg: dict
    run_dir: Path
    task: Any
    model: SequenceModel
    optimizer: torch.optim.Optimizer
    tracker: tracking.Tracker
    device: torch.device
    max_steps: int
    eval_every: int
    fp: dict
    overrides: list[str]
    record: dict
    label: str

    @property
    def seed(self) -> int:
        return self.cfg["seed"]


def _evaluation_row(run: RunContext, step: int, evaluation: int) -> dict:
    row = {"step": step, "max_steps": run.max_steps,
           **evaluate(run.model, run.task, "val", evaluation, run.seed, run.device)}
    if run.task.has_test:
        row.update(evaluate(run.model, run.task, "test", evaluation, run.seed, run.device))
    return row


def _train_step(run: RunContext, step: int, params: list) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One optimizer step on the step's batch: (loss, task loss, fraction of state updates)."""
    tcfg, lam = run.cfg["trainer"], run.cfg["lam"]
    x, y, lengths = as_batch(run.task.train_batch(step - 1, tcfg["batch_size"], run.seed))
    x, y = x.to(run.device), y.to(run.device)
    if lengths is None:
        prediction, updates = run.model(x)
        task_loss = run.task.loss(prediction, y)
    else:  # padded sequences: the model masks the padding, the loss and the budget count real steps only
        lengths = lengths.to(run.device)
        prediction, updates = run.model(x, lengths=lengths)
        task_loss = run.task.loss(prediction, y, lengths)
    loss = task_loss + budget_loss(updates, lam, lengths=lengths) if lam else task_loss
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, tcfg["grad_clip"])
    run.optimizer.step()
    fraction = (updates.detach().mean() if lengths is None else updates.detach().sum() / lengths.sum()).item()
    return loss, task_loss, fraction


def _loop(run: RunContext, state: TrainingState) -> dict | None:
    tcfg, max_steps, eval_every = run.cfg["trainer"], run.max_steps, run.eval_every
    start, curve, legs, sums = state.start, state.curve, state.legs, state.interval
    eval_size = {split: run.task.eval_size(split) for split in ("val", "test") if split == "val" or run.task.has_test}
    print(f"{run.label}: each evaluation scores "
          + " and ".join(f"{n:,} {split} sequences" for split, n in eval_size.items()), flush=True)
    halt = tcfg.get("halt_after_steps")
    progress = Progress(max_steps, start, run.label, tcfg["progress"])
    params = list(run.model.parameters())
    step = start
    if start == 0 and not curve and max_steps < 2 * eval_every:
        # A budget with fewer than two evaluations (a short trial) is evaluated at step 0 too, so that its learning
        # curves have two points; evaluation -1 draws its own batches, so the later evaluations are unchanged.
        curve.append(_evaluation_row(run, 0, -1))
        run.tracker.log({_wandb_key(k): v for k, v in curve[-1].items() if k != "step"}, 0)
    stopped = None
    try:
        with _stop_requests() as stop:
            for step in range(start + 1, max_steps + 1):
                tick = time.perf_counter()
                loss, task_loss, fraction = _train_step(run, step, params)
                sums["seconds"] += time.perf_counter() - tick
                loss = loss.item()
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at step {step}")
                for key, value in (("loss", loss), ("task_loss", task_loss.item()), ("updates", fraction), ("n", 1)):
                    sums[key] += value
                progress.step({"loss": f"{loss:.3g}", "upd": f"{100 * fraction:.0f}%"})

                evaluated = step % eval_every == 0 or step == max_steps
                if evaluated:
                    n = sums["n"]
                    row = {"train_loss": sums["loss"] / n, "train_task_loss": sums["task_loss"] / n,
                           "train_update_fraction": sums["updates"] / n, "seconds_per_step": sums["seconds"] / n}
                    evaluation = sum(r["step"] > 0 for r in curve)  # a step-0 evaluation has its own batches
                    row = {**_evaluation_row(run, step, evaluation), **row}
                    curve.append(row)
                    sums = _zero_sums()
                    with _deferred_interrupt():
                        tracking.write_curve(run.run_dir, curve)
                        _save_checkpoint(run, step, curve, legs)
                    run.tracker.log({_wandb_key(k): v for k, v in row.items() if k != "step"}, step)
                    progress.evaluation(row, run.task.metric, max_steps)
                if stop is not None and stop.signal is not None and step < max_steps:
                    # stopped between two steps: this step is saved, with the sums since the last evaluation
                    if not evaluated:
                        with _deferred_interrupt():
                            _save_checkpoint(run, step, curve, legs, interval=sums)
                    stopped = stop.exception()
                    break
                if halt and evaluated and step - start >= halt and step < max_steps:
                    print(f"halting at step {step} (trainer.halt_after_steps={halt} in this invocation); rerun to resume",
                          flush=True)
                    return None
        if stopped is not None:
            raise stopped
    except KeyboardInterrupt:
        progress.close()
        saved = step if stopped is not None else (curve[-1]["step"] if curve else 0)
        handoff = stop.handoff if stopped is not None else None
        print(f"\n{run.label}: stopped at step {step}; {run.run_dir / tracking.CHECKPOINT} holds step {saved:,}. "
              + (f"The launcher's handler of {signal.Signals(stop.signal).name} takes over (submitit requeues the "
                 "job, which resumes from there)." if handoff else "Rerun the same command to resume from there."),
              flush=True)
        run.tracker.stopped = True
        if handoff:
            handoff(stop.signal, None)
        raise
    finally:
        progress.close()
    return _finish(run, curve, legs, eval_size)


def _write_outputs(run: RunContext, curve: list) -> list[str]:
    """The task's files of the finished model (Charades: its submission files), with the final evaluation's random
    skips, so that they score what that evaluation scored."""
    evaluation = sum(r["step"] > 0 for r in curve) - 1
    generator = evaluation_generator(run.seed, "val", evaluation) if run.device.type == "cpu" else None
    with run.model.rnn.skip_draws(generator):
        return run.task.write_outputs(run.model, run.run_dir, run.device)


def _finish(run: RunContext, curve: list, legs: list, eval_size: dict) -> dict:
    """metrics.json, the run's result (written first: W&B only mirrors it), and the W&B summary."""
    cfg = run.cfg
    final = summarize(curve, run.task, cfg, cfg["model"])
    metrics = {"status": "completed", "step": run.max_steps, "row": cfg["row"], "seed": run.seed,
               "commit": legs[-1]["commit"], "environment": legs[-1]["environment"], "legs": legs,
               "eval_size": eval_size, "final": final, "fingerprint": run.fp, "config": run.record,
               "overrides": run.overrides}
    outputs = _write_outputs(run, curve)
    if outputs:
        metrics["outputs"] = outputs
    tracking.write_json(run.run_dir / tracking.METRICS, metrics)
    run.tracker.summary({k: v for k, v in final.items() if isinstance(v, (int, float))})
    return metrics
