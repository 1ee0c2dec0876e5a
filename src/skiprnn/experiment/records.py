"""Read one run directory's record: the single place that decides a run's status, as a typed ``RunResult``.

The trainer (trainer.py, through tracking.py) writes a run directory: ``metrics.json`` when it finishes,
``curve.jsonl`` (one evaluation a line) as it goes, ``failed.json`` when it fails, and ``.hydra/config.yaml`` (the
resolved config of the invocation that last trained it). The tables (tables/), ``compare``, ``longer`` and the HTML report
(report/) all read it here. A file that cannot be read never raises: the run says what is wrong with it.
"""
from __future__ import annotations

import bisect
import json
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .metrics import METRICS as METRIC_SPECS
from .metrics import TASK_METRICS
from .numbers import finite
from .tracking import CURVE, FAILED, METRICS, RECORD

MARKERS = (METRICS, CURVE, FAILED)  # a folder holding one of these is a run directory
SKIP_DIRS = {"wandb", "__pycache__", "node_modules"}


def _is_run(path: Path, names: set[str]) -> tuple[bool, bool]:
    """(is a run directory, holds only a config record)."""
    if names & set(MARKERS):
        return True, False
    return (RECORD in names and (path / RECORD / "config.yaml").is_file()), True


def find_runs(folder: Path) -> list[Path]:
    """Run directories at or below ``folder``, the one rule that tables, ``compare`` and the report use: folders
    holding a result, a failure record, a learning curve, or only the config of an invocation that has not evaluated
    yet. Symlinked folders are followed (each real folder once); hidden and W&B folders are not searched."""
    found: dict[Path, bool] = {}
    visited: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        real = here.resolve()
        if real in visited:  # a link back up, or two links to one folder
            dirnames[:] = []
            continue
        visited.add(real)
        is_run, config_only = _is_run(here, set(filenames) | set(dirnames))
        if is_run:
            found[here] = config_only
            if not config_only:
                dirnames[:] = []  # a run's own subfolders (.hydra, wandb) hold no runs
                continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
    # a folder holding only a config record and other runs below it is a container, not a run
    return sorted(p for p, config_only in found.items()
                  if not (config_only and any(q != p and p in q.parents for q in found)))

# Headline metric keys, in the order a record is searched for one (experiment/metrics.py declares each)
METRIC_KEYS = tuple(METRIC_SPECS)
UPDATES = "val_update_fraction"


def metric_key(final: dict | None) -> str | None:
    """The headline metric an evaluation or a finished record holds: val_mse (lower is better), val_accuracy or
    val_map (Charades' mAP; higher is better)."""
    return next((k for k in METRIC_KEYS if k in (final or {})), None)


class Status(StrEnum):
    """A run's state, as every tool names it (the values are what tables and reports print)."""
    COMPLETED = "completed"  # finished: a metrics.json at least as new as its curve
    UNFINISHED = "unfinished"  # training, stopped, or resumed with a larger budget
    FAILED = "failed"  # a failed.json and no newer result
    UNREADABLE = "unreadable"  # a record that cannot be read: the run says which file and why
    CONFLICT = "conflict"  # a table's verdict: trained with another config than the table asks for
    MISSING = "missing"  # a table's verdict: no evaluation yet where the table expects a run


@dataclass
class RunResult:
    """What one run directory holds: written by the trainer (tracking.py), read only by ``read_run``."""
    path: Path
    display: str = ""  # for reports: the folder as given on the command line joined with the path below it
    root: int = 0  # for reports: index of the folder given that holds it
    status: Status = Status.UNFINISHED
    seed: int | None = None
    row: str | None = None
    config: dict | None = None
    step: int = 0  # completed: its final step; else its latest evaluation's (0: none yet)
    max_steps: int | None = None
    final: dict = field(default_factory=dict)  # completed: metrics.json "final"; else the latest curve row
    curve: list[dict] = field(default_factory=list)
    legs: list[dict] = field(default_factory=list)  # [{"commit", "from_step"}], oldest first
    error: str = ""  # why it failed / is unreadable
    problems: list[str] = field(default_factory=list)  # "file: what is wrong with it"
    overrides: list[str] = field(default_factory=list)  # its command-line overrides (as recorded, plumbing included)
    below_budget: int = 0  # a table's verdict: finished, but for fewer steps than this budget the table asks for

    @property
    def metric(self) -> str | None:
        for source in (self.final, *(reversed(self.curve))):
            for key in METRIC_KEYS:
                if finite(source.get(key)) is not None:
                    return key
        name = ((self.config or {}).get("task") or {}).get("name") if isinstance(self.config, dict) else None
        return TASK_METRICS.get(name)

    @property
    def commit(self) -> str:
        """The commit(s) that trained it: "abc" or "abc (from 0) → def (from 3,900)"; "" when not recorded."""
        if len(self.legs) <= 1:
            return self.legs[0]["commit"] if self.legs else ""
        return " → ".join(f"{leg['commit']} (from {leg['from_step']:,})" for leg in self.legs)

    @property
    def commits(self) -> tuple[str, ...]:
        """Each distinct commit of its legs, oldest first."""
        return tuple(dict.fromkeys(leg["commit"] for leg in self.legs))

    @property
    def numerics(self) -> str:
        """Its numerics mode(s), "reproducible", "fast" or "fast/reproducible" (a leg made before the modes
        existed was fast)."""
        return "/".join(dict.fromkeys(_leg_numerics(leg) for leg in self.legs)) or "fast"

    @property
    def where(self) -> str:
        """Its numerics mode and machine per leg, where they changed: "reproducible, AMD EPYC, 1 thread(s)"."""
        shown: list[str] = []
        for leg in self.legs:
            env = leg.get("environment")
            text = (f"{env['numerics']}, {env['cpu']}, {env['threads']['kernels']} thread(s)" if env
                    else "fast, machine not recorded")
            if not shown or shown[-1] != text:
                shown.append(text)
        return " → ".join(shown) or "fast, machine not recorded"

    def commit_at(self, step: int) -> str:
        """The commit that trained the evaluation at ``step`` (the leg it falls in)."""
        if not self.legs:
            return ""
        starts = [leg["from_step"] for leg in self.legs]
        return self.legs[max(0, bisect.bisect_left(starts, step) - 1)]["commit"]


def _leg_numerics(leg: dict) -> str:
    env = leg.get("environment")
    return env["numerics"] if env else "fast"


# ------------------------------------------------------------------------------------------------ reading

def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_yaml(path: Path) -> Any:
    import yaml  # PyYAML, a dependency of omegaconf/hydra

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _legs(m: dict) -> list[dict]:
    legs = m.get("legs")
    if isinstance(legs, list) and legs:
        out = [{"commit": str(leg.get("commit", "?")), "from_step": int(leg.get("from_step") or 0),
                **({"environment": leg["environment"]} if isinstance(leg.get("environment"), dict) else {})}
               for leg in legs if isinstance(leg, dict)]
        return sorted(out, key=lambda leg: leg["from_step"])
    return [{"commit": str(m["commit"]), "from_step": 0}] if m.get("commit") else []


def _read_overrides(path: Path, metrics: dict | None, run: RunResult) -> list[str]:
    """The overrides stored with its finished result, else those of the invocation that last trained it."""
    if metrics is not None and isinstance(metrics.get("overrides"), list):  # absent in older results
        return [str(o) for o in metrics["overrides"]]
    record = path / RECORD / "overrides.yaml"
    if not record.exists():
        return []
    try:
        overrides = _read_yaml(record)
    except Exception as error:  # noqa: BLE001 - as config.yaml: listed, never fatal
        run.problems.append(f"{RECORD}/overrides.yaml: {str(error).splitlines()[0] if str(error) else error!r}")
        return []
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def _read_curve(path: Path, run: RunResult) -> bool:
    """Every readable evaluation into run.curve; False when the file has unreadable lines (listed in problems)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        run.problems.append(f"{CURVE}: {error}")
        return False
    bad = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not an evaluation record (no integer 'step')")
        except ValueError as error:
            bad.append(f"line {number}: {str(error)[:120]}")
            continue
        run.curve.append(row)
    run.curve.sort(key=lambda r: r["step"])
    if bad:
        run.problems.append(f"{CURVE}: {len(bad)} unreadable line(s) ({'; '.join(bad[:3])}"
                            f"{'; …' if len(bad) > 3 else ''})")
    return not bad


def read_run(path: Path, display: str = "", root: int = 0) -> RunResult:
    """A run directory's state. Status, as the tables read it: a metrics.json at least as new as the curve is a
    finished run (a finished run resumed with a larger budget is unfinished until it finishes again); else a
    failed.json is a failed run; else it is unfinished (possibly with no evaluation yet)."""
    run = RunResult(path=path, display=display or str(path), root=root)
    curve_ok = True
    if (path / CURVE).exists():
        curve_ok = _read_curve(path / CURVE, run)
    last = run.curve[-1] if run.curve else None

    configs: list[Any] = []
    metrics = failed = None
    if (path / METRICS).exists():
        try:
            metrics = _read_json(path / METRICS)
            if not isinstance(metrics, dict) or not isinstance(metrics.get("final"), dict) \
                    or not isinstance(metrics.get("step"), int):
                raise ValueError("not a run record (needs 'step' and a 'final' object)")
            configs.append(metrics.get("config"))
        except (OSError, ValueError) as error:
            run.status, run.error = Status.UNREADABLE, f"{METRICS}: {error}"
            run.problems.append(run.error)
            metrics = None
    if (path / FAILED).exists():
        try:
            failed = _read_json(path / FAILED)
            if not isinstance(failed, dict):
                raise ValueError("not an object")
            configs.append(failed.get("config"))
        except (OSError, ValueError) as error:
            run.problems.append(f"{FAILED}: {error}")
            if run.status != Status.UNREADABLE:
                run.status, run.error = Status.UNREADABLE, f"{FAILED}: {error}"
            failed = None
    record = path / RECORD / "config.yaml"
    if record.exists():
        try:
            configs.append(_read_yaml(record))
        except Exception as error:  # noqa: BLE001 - YAMLError, OSError, UnicodeDecodeError: listed, never fatal
            run.problems.append(f"{RECORD}/config.yaml: {str(error).splitlines()[0] if str(error) else error!r}")
    run.config = next((c for c in configs if isinstance(c, dict) and c), None)

    if run.status != Status.UNREADABLE:
        if metrics is not None and (last is None or last["step"] <= metrics["step"]):
            run.status, run.step, run.final = Status.COMPLETED, metrics["step"], metrics["final"]
            run.max_steps = metrics["step"]
            run.legs = _legs(metrics)
        elif failed is not None:
            run.status, run.error = Status.FAILED, str(failed.get("error") or "failed (no error recorded)")
        elif not curve_ok:
            run.status, run.error = Status.UNREADABLE, next(p for p in run.problems if p.startswith(CURVE))
        else:
            run.status = Status.UNFINISHED
            if metrics is not None:  # resumed with a larger budget: the earlier legs are known
                run.legs = _legs(metrics)
    if run.status != Status.COMPLETED and last is not None:
        run.step, run.final = last["step"], last
        run.max_steps = last.get("max_steps") if isinstance(last.get("max_steps"), int) else None
    if run.max_steps is None and isinstance(run.config, dict):
        trainer = run.config.get("trainer")
        if isinstance(trainer, dict) and isinstance(trainer.get("max_steps"), int):
            run.max_steps = trainer["max_steps"]

    seed = (run.config or {}).get("seed") if run.config else None
    if seed is None and metrics is not None:
        seed = metrics.get("seed")
    if seed is None:
        match = re.search(r"seed=(\d+)", path.name)
        seed = int(match.group(1)) if match else None
    run.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    row = (run.config or {}).get("row") if run.config else None
    if row is None and metrics is not None:
        row = metrics.get("row")
    run.row = str(row) if row not in (None, "") else None
    run.overrides = _read_overrides(path, metrics, run)
    return run
