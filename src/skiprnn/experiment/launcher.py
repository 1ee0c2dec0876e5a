"""``hydra/launcher=local_parallel``: a sweep's runs in parallel processes on this machine, each run in a process of
its own, so that a dead process fails its own run only.

joblib's pool (hydra-joblib-launcher, which this replaces) aborts the whole sweep when one worker dies: a ``kill -9``
or the kernel's out-of-memory killer stopped the runs beside it and left the queued ones unstarted. Here the parent
forks one process per run, at most ``n_jobs`` at a time, and waits on them without threads. A run whose process
dies by a signal is marked failed with that signal (``failed.json`` in its folder, and the sweep's failure summary);
the others go on, the queued ones start, and the command exits non-zero. Rerunning the same command resumes the
dead run from its last checkpoint. A fresh process per run also lets each run choose its numerics mode before torch's
first operation (``backends/numerics.py``).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class WorkerDied(RuntimeError):
    """The process running a job ended without a result (a signal, or an exit outside Python's control)."""


def _job_config(hydra_context: HydraContext, config: DictConfig, overrides: Sequence[str], idx: int) -> DictConfig:
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return sweep_config


def _child(conn, idx: int, overrides, hydra_context, config, task_function, singleton_state) -> None:
    """In the forked process: tell the parent the job's folder, run the job, send back its JobReturn."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C reaches each run, which saves and says so
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's forwarding handler; the trainer sets its own
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = _job_config(hydra_context, config, overrides, idx)
    folder = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    conn.send({"folder": str(folder), "num": idx, "sweep_dir": str(sweep_config.hydra.sweep.dir)})
    try:
        ret = run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    except KeyboardInterrupt as stop:  # the run has said where it stopped; no traceback
        from .errors import Terminated

        conn.close()
        os._exit(143 if isinstance(stop, Terminated) else 130)
    if ret.status == JobStatus.FAILED:  # the error itself may not pickle: keep its one-line form
        try:
            _ = ret.return_value
        except Exception as error:  # noqa: BLE001  any error a job can end with
            from .sweep import reason

            ret._return_value = WorkerDied(reason(error))
    ret.hydra_cfg = None  # the parent has its own; a job's is large and holds the whole sweep config
    conn.send(ret)
    conn.close()


def describe_exit(code: int | None) -> str:
    if code in (130, 143):
        return f"it was stopped by {'SIGTERM' if code == 143 else 'Ctrl-C'} and saved its last step"
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        why = " (also what the kernel's out-of-memory killer sends)" if name == "SIGKILL" else ""
        return f"the process running it was killed by {name}{why}"
    return f"the process running it exited with status {code} before reporting a result"


def record_death(job: dict, overrides: Sequence[str], code: int | None) -> WorkerDied:
    """Mark a dead job's run failed (failed.json, read by tables and compare) and list it in the sweep's summary."""
    from . import sweep, tracking
    from .trainer import record_failure

    error = WorkerDied(f"{describe_exit(code)}; rerun the same command to resume it from its last checkpoint")
    folder = Path(job["folder"]) if job.get("folder") else None
    if folder is not None:
        record = folder / tracking.RECORD / "config.yaml"
        cfg = OmegaConf.to_container(OmegaConf.load(record)) if record.exists() else None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            record_failure(folder, error, [o for o in overrides if not o.startswith("hydra")], cfg)
        except OSError:
            pass  # the summary below still names it
    hydra_cfg = OmegaConf.create({"runtime": {"output_dir": str(folder or "?")}, "overrides": {"task": list(overrides)},
                                  "sweep": {"dir": job.get("sweep_dir", ".")}, "job": {"num": job.get("num", 0)}})
    sweep.record(hydra_cfg, error)
    return error


def _receive(conn, entry: tuple) -> None:
    """Everything the child has sent so far: its job's folder (a dict), then its JobReturn."""
    job = entry[4]
    try:
        while conn.poll():
            message = conn.recv()
            if isinstance(message, dict):
                job.update(message)
            else:
                job["return"] = message
    except (EOFError, OSError):
        pass


class LocalParallelLauncher(Launcher):
    def __init__(self, n_jobs: int = 2) -> None:
        if not isinstance(n_jobs, int) or n_jobs < 1:
            raise ValueError(f"hydra.launcher.n_jobs={n_jobs!r} is not allowed: it must be a whole number >= 1")
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs, {self.n_jobs} at a time, each in its own process")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        ctx = multiprocessing.get_context("fork")
        singleton_state = Singleton.get_state()
        pending = list(enumerate(job_overrides))
        running: dict[Any, tuple] = {}  # sentinel -> (idx, overrides, process, connection, job info)
        results: list[JobReturn | None] = [None] * len(job_overrides)
        def forward_sigterm(signum, frame):  # a SIGTERM to the sweep (a Slurm limit, kill) stops every run cleanly
            from .errors import Terminated

            for _, _, proc, _, _ in running.values():
                proc.terminate()
            raise Terminated

        previous = signal.signal(signal.SIGTERM, forward_sigterm)
        try:
            self._supervise(ctx, pending, running, results, initial_job_idx, singleton_state)
        except KeyboardInterrupt:  # Ctrl-C reached every run too: each saves its step and says where it stopped
            for _, _, proc, _, _ in running.values():
                proc.join(timeout=120)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return [r for r in results if r is not None]

    def _supervise(self, ctx, pending, running, results, initial_job_idx, singleton_state) -> None:
        while pending or running:
            while pending and len(running) < self.n_jobs:
                idx, overrides = pending.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, initial_job_idx + idx, overrides, self.hydra_context,
                                                        self.config, self.task_function, singleton_state))
                proc.start()
                send.close()
                running[proc.sentinel] = (idx, overrides, proc, receive, {})
            receivers = {entry[3]: sentinel for sentinel, entry in running.items()}
            ready = wait([*running, *receivers])
            for conn in (r for r in ready if r in receivers):  # read as they come: a child blocks on a full pipe
                _receive(conn, running[receivers[conn]])
            for sentinel in (r for r in ready if r in running):
                idx, overrides, proc, receive, job = running.pop(sentinel)
                _receive(receive, (idx, overrides, proc, receive, job))
                proc.join()
                ret = job.get("return")
                if ret is None:
                    error = record_death(job, overrides, proc.exitcode)
                    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)
                    log.error(f"#{idx} {' '.join(filter_overrides(overrides))}: {error}")
                results[idx] = ret
