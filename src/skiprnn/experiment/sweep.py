"""Every failed job of a sweep, reported together at its end.

Hydra runs all of a sweep's jobs, then re-raises only the first failure. Each failed job is recorded, in the
process that ran it, as one file under the sweep folder's ``.failures/``: by the job itself for the errors users
act on (which then end the job quietly), and by ``SweepReport`` (a Hydra callback, conf/config.yaml) for any other
exception. The command line prints them all in one summary when the sweep ends, and exits nonzero.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

FAILURES = ".failures"
_started: dict[str, Any] = {}  # the sweep of this process: {"dir": Path, "at": float}


def reason(error: BaseException) -> str:
    """The error as one line: its own message for the errors users act on, its type and message otherwise."""
    from .errors import UserError

    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, UserError) else f"{type(error).__name__}: {text}"


class SweepReport(Callback):
    def on_multirun_start(self, config, **kwargs: Any) -> None:
        _started.update({"dir": Path(config.hydra.sweep.dir), "at": time.time()})

    def on_job_end(self, config, job_return, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if job_return.status == JobStatus.FAILED and config.hydra.mode.name == "MULTIRUN":
            try:
                _ = job_return.return_value  # a failed job's return_value raises its error
            except Exception as error:  # any error a job can end with
                record(config.hydra, error)


def record(hydra_cfg, error: BaseException) -> None:
    """Note a failed job of a sweep under its folder's ``.failures/``, for the summary at the end of the sweep."""
    record = {"folder": str(hydra_cfg.runtime.output_dir), "overrides": list(hydra_cfg.overrides.task),
              "reason": reason(error), "kind": type(error).__name__}
    out = Path(hydra_cfg.sweep.dir) / FAILURES
    try:
        out.mkdir(parents=True, exist_ok=True)
        name = f"{hydra_cfg.job.num}-{os.getpid()}"
        tmp = out / f".{name}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, out / f"{name}.json")
    except OSError:
        pass  # the folder cannot be written to: the job's own error says so


def report() -> int:
    """Print the failed jobs of the sweep this process ran, and remove their records, then how to browse its W&B
    runs; returns the number of failed jobs."""
    if "dir" not in _started:
        return 0
    wandb_dir = _started["dir"] / "wandb"
    if wandb_dir.is_dir():
        print(f"\nW&B runs of this sweep (offline): browse them together with `wandb leet '{wandb_dir}'`; upload "
              f"them with `wandb sync '{wandb_dir}'/offline-run-*`", flush=True)
    folder = _started["dir"] / FAILURES
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.stat().st_mtime >= _started["at"] - 1:
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                records.append({"folder": "?", "overrides": [], "reason": f"unreadable failure record {path}"})
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
    if records:
        print(f"\n{len(records)} job(s) of this sweep failed:", flush=True)
        by_reason: dict[str, list[dict]] = {}
        for r in records:
            by_reason.setdefault(r["reason"], []).append(r)
        for reason, jobs in by_reason.items():
            if len(jobs) == 1:
                r = jobs[0]
                print(f"  - {' '.join(r['overrides'])}\n    folder: {r['folder']}\n    reason: {reason}", flush=True)
            else:  # e.g. missing data: every job stops the same way, so the reason is said once
                print(f"  - {len(jobs)} jobs, all for this reason: {reason}", flush=True)
                for r in jobs:
                    print(f"    {' '.join(r['overrides'])} (folder: {r['folder']})", flush=True)
    return len(records)
