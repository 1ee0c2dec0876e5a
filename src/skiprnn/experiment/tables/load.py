"""Which runs a table reads, and each one as the table shows it: strict (a damaged record is unreadable, never
half-counted), checked against the config the table asks for, and against the columns it prints."""
from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

from yaml import YAMLError

from .. import records, tracking
from ..identity import EXECUTION, matches
from ..metrics import METRICS
from ..records import RunResult, Status
from ..tasks.base import PaperTable
from .columns import COLUMNS


def _unreadable(path: Path, seed: int | None, error: str) -> RunResult:
    return RunResult(path, status=Status.UNREADABLE, seed=seed, error=error)


def load_run(path: Path, seed: int, record: RunResult | None = None) -> RunResult:
    """One run directory as the table shows it (records.read_run decides the status; ``record``: its reading, where
    the caller has it already): the folder's seed; a run with no evaluation yet is missing; only a finished run keeps
    its curve, legs and commit. The table is strict: an unreadable line, file or field makes the run unreadable, so
    that no number rests on part of a record."""
    record = records.read_run(path) if record is None else record
    if record.status == Status.UNREADABLE or record.problems:
        return _unreadable(path, seed, f"{path}: {record.error or '; '.join(record.problems)}")
    try:
        return _table_view(record, seed)
    except (OSError, ValueError, KeyError, TypeError, IndexError, YAMLError) as error:
        return _unreadable(path, seed, f"{path}: {error!r}")


def _table_view(record: RunResult, seed: int) -> RunResult:
    shown = shown_overrides(record.overrides)
    if record.status == Status.FAILED:
        return RunResult(record.path, status=Status.FAILED, seed=seed, error=record.error, overrides=shown)
    if record.status == Status.UNFINISHED:
        if not record.curve:
            return RunResult(record.path, status=Status.MISSING, seed=seed, overrides=shown)
        return RunResult(record.path, status=Status.UNFINISHED, seed=seed, step=record.step,
                         max_steps=record.max_steps or 0, final=record.final, config=record.config, overrides=shown)
    final = record.final
    if "stable_updates" not in final and record.curve:  # runs made before it was recorded
        final["stable_updates"] = statistics.fmean(r["val_updates"] for r in record.curve[-final["stable_window"]:])
    return replace(record, seed=seed, overrides=shown)


def worst_late(curve: list[dict], metric_key: str) -> str:
    """The worst evaluation in the last quarter of the steps, and how many there fell short of "solved"."""
    if not curve or metric_key not in curve[-1]:
        return ""
    late = [r for r in curve if r["step"] >= 0.75 * curve[-1]["step"]]
    worst = METRICS[metric_key].worst(late)
    text = f"{metric_key.removeprefix('val_')} {worst[metric_key]:.4g} at {worst['step']:,}"
    if not any("val_solved" in r for r in late):  # a task without a "solved" criterion (Charades)
        return text
    short = sum(not r.get("val_solved", True) for r in late)
    return f"{text}; {short} of {len(late)} evals unsolved"


def asked_configs(table: PaperTable, overrides: list[str], rows: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Each row's config (or only ``rows``') as ``make reproduce-<table>`` with these Hydra overrides composes it
    (seed 0)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from ..cli import CONF_DIR

    overrides = [o for o in overrides if _shown(o.split("=", 1)[0].lstrip("+~"))]  # not the sweep's choice of points
    GlobalHydra.instance().clear()
    out = {}
    try:
        with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
            for row in (r for r in table.rows if rows is None or r.row in rows):
                cfg = compose(config_name="config", overrides=[f"table={table.name}",
                                                                f"experiment={table.name}/{row.row}", *overrides])
                out[row.row] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    finally:
        GlobalHydra.instance().clear()
    return out


def check_against(run: RunResult, asked: dict | None) -> RunResult:
    """A run of another config than the one asked for is a conflict, named with the keys that differ; a finished
    run shorter than the asked budget is marked below budget."""
    from ..trainer import differences, fingerprint

    if asked is None or run.config is None or run.status not in (Status.COMPLETED, Status.UNFINISHED):
        return run
    want = fingerprint({**asked, "seed": run.seed})
    have = fingerprint(run.config)
    keys = differences(have, want)
    if keys:
        def value(cfg, key):
            for part in key.split("."):
                cfg = cfg.get(part, "absent") if isinstance(cfg, dict) else "absent"
            return cfg

        diff = ", ".join(f"{k}: run {value(have, k)!r}, asked {value(want, k)!r}" for k in keys)
        return replace(run, status=Status.CONFLICT, final={}, curve=[], config=None, overrides=(),
                       error=f"another config's run ({diff}); move it away or retrain with force=true")
    budget = asked["trainer"]["max_steps"] if not asked["trainer"].get("max_epochs") else 0
    if run.status == Status.COMPLETED and budget and run.max_steps < budget:
        run.below_budget = budget
    return run


# ---------------------------------------------------------------------------------- overrides shown
# Overrides that only choose the sweep's points (the row and seed columns say them) or the launcher.
_SWEEP_KEYS = ("experiment", "seed", "table", "hydra")


def shown_overrides(overrides: list[str]) -> tuple[str, ...]:
    """A run's recorded overrides minus plumbing: what it says about what was trained."""
    return tuple(o for o in overrides if _shown(o.split("=", 1)[0].lstrip("+~")))


def _shown(key: str) -> bool:
    """An override says something about what was trained: not the sweep's choice of point, not execution."""
    return not matches(key, _SWEEP_KEYS + EXECUTION)


def check_curve(run: RunResult) -> RunResult:
    """A finished run whose curve is missing or lacks update fractions is listed as unreadable (the longer section
    reads its evaluations)."""
    if run.status == Status.COMPLETED and (not run.curve or any(records.UPDATES not in r for r in run.curve)):
        return _unreadable(run.path, run.seed, f"curve of seed {run.seed} is missing or has no {records.UPDATES}")
    return run


def check_columns(table: PaperTable, run: RunResult) -> RunResult:
    """A finished run whose metrics.json lacks what the table prints (an older format, another task's run) is
    listed as unreadable, naming the missing key, instead of stopping the table."""
    for ours, _, _ in table.columns:
        try:
            COLUMNS[ours]([run])
        except (KeyError, TypeError, ZeroDivisionError) as error:
            return _unreadable(run.path, run.seed,
                               f"metrics.json of seed {run.seed} has no usable {error} for column {ours!r}")
    return run


def finished_seeds_left_out(table: PaperTable, results: Path, seeds: list[int]) -> dict[int, int]:
    """Seed -> number of finished runs on disk that ``seeds`` leaves out of the table."""
    left = {}
    for row in table.rows:
        for path in (results / table.name / row.row).glob("seed=*"):
            seed = path.name.removeprefix("seed=")
            if seed.lstrip("-").isdigit() and int(seed) not in seeds and (path / tracking.METRICS).exists():
                left[int(seed)] = left.get(int(seed), 0) + 1
    return dict(sorted(left.items()))
