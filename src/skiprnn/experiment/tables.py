"""Aggregate run directories into a results table beside the paper's numbers.

    python -m skiprnn.tables table1 [--seeds 0,1,2,3] [--results results]

reads results/table1/<row>/seed=<k>/{metrics.json, failed.json, curve.jsonl} and writes results/table1.md
and results/table1.csv. Missing, failed and unfinished runs of the seeds asked for are listed as such, never
dropped; finished runs of other seeds are counted in the header (and on stderr) as left out.
``--note "..."`` adds a sentence to the table's header and keeps it in results/table1_note.md, so later
rebuilds (``make table1``) carry it; edit that file to change it, or pass ``--note ""`` to remove it.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import re
import shlex
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from yaml import YAMLError

from . import records, tracking
from .errors import UserError
from .identity import EXECUTION, as_trained, matches
from .metrics import METRICS
from .records import metric_key
from .tasks import paper_tables
from .tasks.base import PaperRow, PaperTable


@dataclass
class Run:
    seed: int
    status: str  # completed | failed | unfinished | missing | unreadable
    step: int = 0
    max_steps: int = 0
    final: dict | None = None  # completed: metrics.json's "final"; unfinished: the last curve row
    commit: str = ""  # the commit(s) that trained it: "abc" or, resumed across commits, "abc (from 0) → def (from 3,900)"
    error: str = ""
    overrides: tuple[str, ...] = ()  # what it was trained with, minus plumbing (run_overrides)
    commits: tuple[str, ...] = ()
    worst: str = ""  # the worst evaluation in the last quarter of training, so that a late collapse shows
    config: dict | None = None  # the resolved config it was trained with, where its record holds one
    below_budget: int = 0  # finished, but for fewer steps than the table asks (this many)
    curve: list = field(default_factory=list)  # finished: every evaluation
    where: str = ""  # finished: its numerics mode and machine, per leg where they changed ("reproducible, AMD EPYC, 1 thread")
    numerics: str = ""  # finished: its numerics mode ("fast" for a record made before the modes existed)


def _where(legs: list[dict]) -> tuple[str, str]:
    """(numerics mode, "mode, CPU, threads" of each leg where it changed) of a finished run's legs."""
    shown, modes = [], []
    for leg in legs:
        env = leg.get("environment")
        modes.append(env["numerics"] if env else "fast")
        text = (f"{env['numerics']}, {env['cpu']}, {env['threads']['kernels']} thread(s)" if env
                else "fast, machine not recorded")
        if not shown or shown[-1] != text:
            shown.append(text)
    return ("/".join(dict.fromkeys(modes)) or "fast"), " → ".join(shown) or "fast, machine not recorded"


def _worst_late(curve: list[dict], metric_key: str) -> str:
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


def load_run(path: Path, seed: int) -> Run:
    """One run directory's state as the table shows it (records.read_run decides the status). The table is
    strict: an unreadable line, file or field makes the run unreadable, so that no number rests on part of a record."""
    record = records.read_run(path)
    if record.status == "unreadable" or record.problems:
        return Run(seed, "unreadable", error=f"{path}: {record.error or '; '.join(record.problems)}")
    try:
        return _table_run(path, seed, record)
    except (OSError, ValueError, KeyError, TypeError, IndexError, YAMLError) as error:
        return Run(seed, "unreadable", error=f"{path}: {error!r}")


def _table_run(path: Path, seed: int, record: records.Run) -> Run:
    overrides = tuple(run_overrides(path))
    if record.status == "failed":
        return Run(seed, "failed", error=record.error, overrides=overrides)
    if record.status == "unfinished":
        if not record.curve:
            return Run(seed, "missing", overrides=overrides)
        return Run(seed, "unfinished", record.step, record.max_steps or 0, record.final, config=record.config,
                   overrides=overrides)
    final = record.final
    if "stable_updates" not in final and record.curve:  # runs made before it was recorded
        final["stable_updates"] = statistics.fmean(r["val_updates"] for r in record.curve[-final["stable_window"]:])
    key = metric_key(final)
    numerics, where = _where(record.legs)
    return Run(seed, "completed", record.step, record.step, final, record.commit,
               commits=tuple(dict.fromkeys(leg["commit"] for leg in record.legs)),
               worst=_worst_late(record.curve, key) if key else "", config=record.config, overrides=overrides,
               curve=record.curve, where=where, numerics=numerics)


def asked_configs(table: PaperTable, overrides: list[str], rows: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Each row's config (or only ``rows``') as ``make reproduce-<table>`` with these Hydra overrides composes it
    (seed 0)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from .cli import CONF_DIR

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


def check_against(run: Run, asked: dict | None) -> Run:
    """A run of another config than the one asked for is a conflict, named with the keys that differ; a finished
    run shorter than the asked budget is marked below budget."""
    from .trainer import differences, fingerprint

    if asked is None or run.config is None or run.status not in ("completed", "unfinished"):
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
        return Run(run.seed, "conflict", run.step, run.max_steps, commit=run.commit,
                   error=f"another config's run ({diff}); move it away or retrain with force=true")
    budget = asked["trainer"]["max_steps"] if not asked["trainer"].get("max_epochs") else 0
    if run.status == "completed" and budget and run.max_steps < budget:
        run.below_budget = budget
    return run


# ---------------------------------------------------------------------------------- our columns
# Overrides that only choose the sweep's points (the row and seed columns say them) or the launcher.
_SWEEP_KEYS = ("experiment", "seed", "table", "hydra")


def run_overrides(path: Path) -> list[str]:
    """The command-line overrides a run was made with, minus plumbing: those stored with its finished result,
    else those of the invocation that last trained it (``.hydra/overrides.yaml``)."""
    overrides = None
    if (path / tracking.METRICS).exists():
        overrides = tracking.read_json(path / tracking.METRICS).get("overrides")  # absent in older runs
    if overrides is None:
        record = path / tracking.RECORD / "overrides.yaml"
        if not record.exists():
            return []
        from omegaconf import OmegaConf

        overrides = OmegaConf.load(record)
    return [o for o in overrides if _shown(o.split("=", 1)[0].lstrip("+~"))]


def _shown(key: str) -> bool:
    """An override says something about what was trained: not the sweep's choice of point, not execution."""
    return not matches(key, _SWEEP_KEYS + EXECUTION)


def mean_std(values: list[float], fmt: str, scale: float = 1.0, unit: str = "") -> str:
    """mean ± population std; one run prints its value alone, since "± 0" would read as a measured spread."""
    if not values:
        return "–"
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:{fmt}}{unit}"
    return f"{mean:{fmt}}{unit} ± {statistics.pstdev(values) * scale:{fmt}}{unit}"


def _sci(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _over_videos(runs: list[Run]) -> str:
    """State updates per sequence as mean ± std over the evaluation's sequences (Table 3: over the validation
    videos) of one run; with several runs, the mean and the std are each averaged over them."""
    if not runs:
        return "–"
    return (f"{statistics.fmean(r.final['val_updates'] for r in runs):.1f} ± "
            f"{statistics.fmean(r.final['val_updates_std'] for r in runs):.1f}")


def _solved(runs):
    return f"{sum(bool(r.final['val_solved']) for r in runs)}/{len(runs)}" if runs else "–"


COLUMNS = {
    "solved": _solved,
    "update_pct": lambda runs: mean_std([r.final["val_update_fraction"] for r in runs], ".1f", 100, "%"),
    "updates_steps": lambda runs: mean_std([r.final["val_updates"] for r in runs], ".1f"),
    "test_updates_steps": lambda runs: mean_std([r.final["test_updates"] for r in runs], ".2f"),
    "flops": lambda runs: _sci(statistics.fmean(r.final["inference_flops"] for r in runs)) if runs else "–",
    # FLOPs at the test set's mean update count (Table 2); inference_flops is linear in the val updates it used.
    "test_flops": lambda runs: _sci(statistics.fmean(
        r.final["inference_flops"] * r.final["test_updates"] / r.final["val_updates"] for r in runs)) if runs else "–",
    "mse": lambda runs: mean_std([r.final["val_mse"] for r in runs], ".2e"),
    "accuracy": lambda runs: mean_std([r.final["val_accuracy"] for r in runs], ".3f"),
    "map_pct": lambda runs: mean_std([r.final["val_map"] for r in runs], ".2f", 100),
    "updates_videos": _over_videos,
    "test_accuracy": lambda runs: mean_std([r.final["test_accuracy"] for r in runs], ".3f"),
    "test_accuracy_best_val": lambda runs: mean_std([r.final["best_val_test_accuracy"] for r in runs], ".3f"),
    "stable": lambda runs: (
        f"{mean_std([r.final['stable_mse'] for r in runs], '.2e')} / "
        f"{mean_std([r.final['stable_update_fraction'] for r in runs], '.1f', 100, '%')}" if runs else "–"),
    "stable_accuracy": lambda runs: (
        f"{mean_std([r.final['stable_accuracy'] for r in runs], '.3f')} / "
        f"{mean_std([r.final.get('stable_updates', float('nan')) for r in runs], '.1f')}" if runs else "–"),
    "stable_map": lambda runs: (
        f"{mean_std([r.final['stable_map'] for r in runs], '.2f', 100)} / "
        f"{mean_std([r.final['stable_updates'] for r in runs], '.1f')}" if runs else "–"),
}


def _leading_number(printed: str) -> float:
    """The mean of a printed "mean ± std" value ("81.1% ± 3.6%" -> 81.1)."""
    try:
        return float(printed.split("±")[0].strip().removesuffix("%"))
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class UpdateMeasure:
    """How a table states its updates, as the paper prints them: a count of steps, or a percentage of the steps."""

    key: str  # the evaluation's value in curve.jsonl and metrics.json
    stable_key: str  # its mean over the last evaluations, in metrics.json
    scale: float  # key x scale = the printed figure
    unit: str  # "" (steps) or "%"
    paper_column: str | None  # the paper's column of the table


def update_measure(table: PaperTable) -> UpdateMeasure:
    """The measure of the table's first update column (a count where it has none)."""
    for ours, paper, _ in table.columns:
        if ours == "updates_steps":
            return UpdateMeasure("val_updates", "stable_updates", 1.0, "", paper)
        if ours == "update_pct":
            return UpdateMeasure("val_update_fraction", "stable_update_fraction", 100.0, "%", paper)
    return UpdateMeasure("val_updates", "stable_updates", 1.0, "", None)


def paper_updates(table: PaperTable) -> dict[str, float]:
    """Each row's mean state updates as the paper prints them, in the table's measure (NaN where it prints none)."""
    paper_key = update_measure(table).paper_column
    return {row.row: _leading_number(row.paper.get(paper_key, "")) for row in table.rows}


def _change(a: float, b: float, fmt: str = ".1f") -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return "–"
    return f"{a:{fmt}} → {b:{fmt}} (×{b / a:.2f})"


def _pairs_section(table: PaperTable, grid: dict[str, list[Run]]) -> list[str]:
    """Mean updates of row pairs the paper compares, ours (final and last five evaluations) and the paper's, in the
    table's measure. Ours average only the seeds finished in both rows, so a ratio never compares different seeds;
    each seed's own ratio is listed too."""
    if not table.pairs:
        return []
    paper = paper_updates(table)
    measure = update_measure(table)
    finished = {row: {r.seed: r for r in runs if r.status == "completed"} for row, runs in grid.items()}

    def mean_of(row: str, seeds: list[int], key: str) -> float:
        return (measure.scale * statistics.fmean(finished[row][s].final.get(key, math.nan) for s in seeds)
                if seeds else math.nan)

    def ratios(a: str, b: str, seeds: list[int]) -> str:
        """Each seed's own ratio, so that one unsettled run cannot hide inside a mean."""
        each = [(finished[a][s].final[measure.key], finished[b][s].final[measure.key]) for s in seeds]
        return ", ".join(f"{s}: ×{y / x:.2f}" for s, (x, y) in zip(seeds, each) if x) or "–"

    unit = f", {measure.unit}" if measure.unit else ""
    lines = [f"## {table.pairs_title}", "",
             f"| Model | Updates (ours{unit}) | Last 5 evals (ours) | Ratio per seed (ours) | Updates (paper) | Steps (ours) |",
             "|---|---|---|---|---|---|"]
    for label, a, b in table.pairs:
        seeds = sorted(finished[a].keys() & finished[b].keys())
        steps = sorted({finished[row][s].max_steps for row in (a, b) for s in seeds})  # shorter budgets show here
        lines.append(f"| {label} | {_change(mean_of(a, seeds, measure.key), mean_of(b, seeds, measure.key))} | "
                     f"{_change(mean_of(a, seeds, measure.stable_key), mean_of(b, seeds, measure.stable_key))} | "
                     f"{ratios(a, b, seeds)} | "
                     f"{_change(paper[a], paper[b])} | "
                     f"{', '.join(f'{n:,}' for n in steps) or '–'} |")
    return lines + [""]


_METRIC_COLUMNS = ("mse", "accuracy", "map_pct")  # a table's headline metric among its columns


def _longer_section(table: PaperTable, results: Path, seeds: list[int], asked: dict[str, dict]) -> list[str]:
    """Rows trained on past the table's budget (PaperTable.longer), from the same runs: their updates at the
    table's budget and at the longer one, and whether they were still falling when they stopped."""
    longer = table.longer
    folder = results / longer.folder(table.name) if longer else None
    if folder is None or not folder.is_dir():  # none trained here (make longer-<table> makes the folder)
        return []
    command = f"`make longer-{table.name}` (`python -m skiprnn.longer {table.name}`)"
    lines = [f"## Longer budget ({longer.max_steps:,} steps): {'; '.join(_row(table, r).label for r in longer.rows)}", "",
             f"{longer.why} Each run goes on from its finished {longer.from_steps:,}-step run's checkpoint (where that "
             f"is on the machine; else from step 0, to that budget first), in `{folder.name}/`, trained by {command}; its record lists its "
             "legs. These runs do not enter the table at the top.", ""]
    def checked(row: str, seed: int) -> Run:
        run = check_against(load_run(folder / row / f"seed={seed}", seed), asked.get(row))
        return _check_curve(_check_columns(table, run)) if run.status == "completed" else run

    grid = {row: [checked(row, s) for s in seeds] for row in longer.rows}
    for run in (r for runs in grid.values() for r in runs):  # the budget these runs are asked for is the longer one
        run.below_budget = longer.max_steps if run.status == "completed" and run.max_steps < longer.max_steps else 0
    if not any(r.status != "missing" for runs in grid.values() for r in runs):
        return lines + ["No runs of these seeds yet.", ""]
    tail = longer.max_steps - longer.max_steps // 10

    def updates_at(run: Run, step: int) -> float:
        """The update fraction of the last evaluation at or before ``step``."""
        before = [r for r in run.curve if r["step"] <= step]
        return before[-1][records.UPDATES] if before else math.nan

    metric, metric_title = next((ours, title) for ours, _, title in table.columns if ours in _METRIC_COLUMNS)
    lines += [f"| Model | Updates at {longer.from_steps:,} (ours) | Updates at {longer.max_steps:,} (ours) | "
              f"{metric_title} at {longer.max_steps:,} (ours) | Solved at {longer.max_steps:,} (ours) | Still falling (lowest "
              "evaluation in the last 10% of steps, solved at the end) | State updates (paper) | Runs |", "|---|---|---|---|---|---|---|---|"]
    paper_key = update_measure(table).paper_column
    for row in longer.rows:
        done = [r for r in grid[row] if r.status == "completed" and r.max_steps >= longer.max_steps]
        lines.append(f"| {_row(table, row).label} | "
                     f"{mean_std([updates_at(r, longer.from_steps) for r in done], '.1f', 100, '%')} | "
                     f"{COLUMNS['update_pct'](done)} | {COLUMNS[metric](done)} | {_solved(done)} | "
                     f"{_still_falling(done, tail)} | "
                     f"{_row(table, row).paper.get(paper_key, '–')} | {_status(grid[row])} |")
    lines += ["", f"| Row | Seed | Status | Step | Updates at {longer.from_steps:,} | Updates | Lowest updates (step) | "
              f"{metric_title} | Commit / error |", "|---|---|---|---|---|---|---|---|---|"]
    for row in longer.rows:
        for r in grid[row]:
            shown = r.status == "completed" and r.curve
            low = _lowest(r) if shown else None
            lines.append(
                f"| {row} | {r.seed} | {r.status} | {r.step}/{r.max_steps or '?'} | "
                + (f"{100 * updates_at(r, longer.from_steps):.1f}% | {100 * r.final[records.UPDATES]:.1f}% | "
                   f"{100 * low[records.UPDATES]:.1f}% ({low['step']:,}) | {r.final[metric_key(r.final)]:.3g} | "
                   if shown else "– | – | – | – | ")
                + f"{r.error or r.commit} |")
    return lines + [""]


def _lowest(run: Run) -> dict:
    """A finished run's evaluation with the fewest updates (the first, where several tie)."""
    return min(run.curve, key=lambda r: r[records.UPDATES])


def _still_falling(done: list[Run], tail: int) -> str:
    """How many finished runs were lowest in their last steps (after ``tail``) and still solve the task. A run whose
    updates fell because it collapsed (the budget won and the task was lost) is named apart, not counted as falling."""
    if not done:
        return "–"
    late = [r for r in done if _lowest(r)["step"] > tail]
    lost = sum(not r.final["val_solved"] for r in late)
    return f"{len(late) - lost} of {len(done)} runs" + (f"; {lost} more lowest there but unsolved" if lost else "")


def _check_curve(run: Run) -> Run:
    """A finished run whose curve is missing or lacks update fractions is listed as unreadable (the longer section
    reads its evaluations)."""
    if run.status == "completed" and (not run.curve or any(records.UPDATES not in r for r in run.curve)):
        return Run(run.seed, "unreadable", error=f"curve of seed {run.seed} is missing or has no {records.UPDATES}")
    return run


def _row(table: PaperTable, name: str) -> PaperRow:
    return next(r for r in table.rows if r.row == name)


def _status(runs: list[Run]) -> str:
    """Counts by status, and the budget(s) the finished runs trained for, flagged when they differ."""
    counts = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    order = ("completed", "unfinished", "failed", "conflict", "unreadable", "missing")
    text = ", ".join(f"{counts[s]} {s}" for s in order if s in counts)
    budgets = sorted({r.max_steps for r in runs if r.status == "completed"})
    if budgets:
        text += f" ({' and '.join(f'{b:,}' for b in budgets)} steps{', mixed budgets' if len(budgets) > 1 else ''})"
    short = [r for r in runs if r.below_budget]
    if short:
        text += f"; **{len(short)} below the {short[0].below_budget:,}-step budget**"
    return text


def _check_columns(table: PaperTable, run: Run) -> Run:
    """A finished run whose metrics.json lacks what the table prints (an older format, another task's run) is
    listed as unreadable, naming the missing key, instead of stopping the table."""
    for ours, _, _ in table.columns:
        try:
            COLUMNS[ours]([run])
        except (KeyError, TypeError, ZeroDivisionError) as error:
            return Run(run.seed, "unreadable", error=f"metrics.json of seed {run.seed} has no usable {error} for column {ours!r}")
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


def _fidelity_summary(runs: list[Run]) -> str:
    """Which side of the 2026-12 fidelity fixes the finished runs were trained on, where the switch acts: the update
    gate's W_p init (Skip runs) and the random-skip baseline's first step (p_skip runs). A record without the key
    predates it (identity.LEGACY_MODEL_KEYS)."""
    gate, first = {}, {}
    for r in runs:
        model = as_trained(r.config or {}).get("model") or {}
        if "gate_init" in model:
            gate[model["gate_init"]] = gate.get(model["gate_init"], 0) + 1
        if "p_skip_keep_first" in model:
            kind = "kept" if model["p_skip_keep_first"] else "drawn"
            first[kind] = first.get(kind, 0) + 1
    parts = []
    for title, counts in (("update-gate W_p init (Skip runs)", gate), ("random skip's first step (p_skip runs)", first)):
        if counts:
            text = ", ".join(f"`{k}` ({n} run{'s' * (n != 1)})" for k, n in sorted(counts.items()))
            parts.append(f"{title}: {text}" + (" — **the table mixes both kinds**" if len(counts) > 1 else ""))
    return "; ".join(parts)


def _numerics_summary(runs: list[Run]) -> str:
    """How many finished runs each numerics mode made, and what each promises."""
    counts = Counter(r.numerics for r in runs)
    if not counts:
        return "–"
    meaning = {"reproducible": "the same bits on any x86-64 CPU with AVX2 and FMA",
               "fast": "bits that hold on the machine and thread count that made them"}
    text = "; ".join(f"`{mode}` ({n} run{'s' * (n != 1)}: {meaning.get(mode, 'mixed within a run')})"
                     for mode, n in sorted(counts.items()))
    return text + (" — **the table mixes both modes** (each run's in 'Every run')" if len(counts) > 1 else "")


def _overrides_summary(runs: list[Run]) -> str:
    """Each distinct set of overrides and how many finished runs used it (the runs are in 'Every run')."""
    counts = {}
    for r in runs:
        key = " ".join(f"`{o}`" for o in r.overrides) or "none"
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{key} ({n} run{'s' * (n != 1)})" for key, n in sorted(counts.items())) or "–"


def _results_option(results: Path) -> str:
    """The --results part of the rebuild command: empty for the default folder, relative to here where possible."""
    try:
        results = Path(results).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return "" if Path(results) == Path("results") else f" --results {shlex.quote(str(results))}"


def build(table: PaperTable, results: Path, seeds: list[int], note: str = "",
          overrides: list[str] | None = None) -> tuple[str, list[dict]]:
    if isinstance(overrides, str):  # list("a=1") would quote the table's command one character at a time
        raise TypeError(f"overrides must be a list of KEY=VALUE strings, not the string {overrides!r}")
    asked = asked_configs(table, list(overrides or []))
    grid = {row.row: [check_against(load_run(results / table.name / row.row / f"seed={s}", s), asked.get(row.row))
                      for s in seeds] for row in table.rows}
    grid = {row: [_check_columns(table, r) if r.status == "completed" else r for r in runs] for row, runs in grid.items()}
    done = [r for runs in grid.values() for r in runs if r.status == "completed"]
    commits = sorted({c for r in done for c in r.commits}) or ["–"]
    budgets = sorted({r.max_steps for r in done})
    per_row = sorted({sum(r.status == "completed" for r in runs) for runs in grid.values()})
    left_out = finished_seeds_left_out(table, results, seeds)

    header = ["Model"]
    for _, paper, title in table.columns:
        header += [f"{title} (ours)"] + ([f"{title} (paper)"] if paper else [])
    header.append("Runs")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv_rows = []
    for row in table.rows:
        runs = [r for r in grid[row.row] if r.status == "completed"]
        cells, record = [row.label], {"row": row.row, "model": row.label, "runs": _status(grid[row.row])}
        for ours, paper, _ in table.columns:
            value = COLUMNS[ours](runs)
            cells.append(value)
            record[f"{ours}"] = value
            if paper:
                cells.append(row.paper.get(paper, "–"))
                record[f"paper_{paper}"] = row.paper.get(paper, "")
        cells.append(record["runs"])
        lines.append("| " + " | ".join(cells) + " |")
        csv_rows.append(record)

    detail = ["| Row | Seed | Status | Step | Metric | Updates | Worst eval, last quarter of steps | Overrides | Numerics, machine "
              "| Commit / error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.rows:
        for r in grid[row.row]:
            metric = updates = "–"
            key = metric_key(r.final)
            if key:
                metric = f"{key.removeprefix('val_')} {r.final[key]:.4g}"
                updates = f"{100 * r.final['val_update_fraction']:.1f}%"
            # not `overrides`: that is the table's own, quoted in the header below
            shown = " ".join(f"`{o}`" for o in r.overrides) if r.status == "completed" else ""
            detail.append(f"| {row.row} | {r.seed} | {r.status} | {r.step}/{r.max_steps or '?'} | {metric} | {updates} | "
                          f"{r.worst or '–'} | {shown} | {r.where or '–'} | {r.error or r.commit} |")

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    seeds_text = ", ".join(map(str, seeds))
    finished_per_row = "–".join(map(str, (per_row[0], per_row[-1]))) if per_row[0] != per_row[-1] else str(per_row[0])
    md = [
        f"# {table.title}",
        "",
        f"> Paper caption: {table.caption}",
        "",
        f"- **Sweep:** `make reproduce-{table.name}` (`conf/table/{table.name}.yaml`; the rows, beside the paper's "
        f"numbers, in `skiprnn.experiment.tasks.{table.task}`). **Aggregated** {now} by "
        f"`python -m skiprnn.tables {table.name} --seeds {','.join(map(str, seeds))}{_results_option(results)}"
        f"{''.join(' ' + shlex.quote(o) for o in overrides or [])}`.",
        f"- **Code commit(s) of the finished runs:** {', '.join(commits)} (per run, and per leg of a run resumed "
        "across commits, in 'Every run')",
        f"- **Seeds asked for:** {seeds_text}; finished per row: {finished_per_row}. **Steps of the finished runs:** "
        f"{', '.join(f'{b:,}' for b in budgets) or '–'} steps. Finished runs: {len(done)} of {len(seeds) * len(table.rows)}.",
        *(["- **Left out by --seeds:** finished runs of seed "
           + ", ".join(f"{seed} ({n} row{'s' * (n != 1)})" for seed, n in left_out.items())] if left_out else []),
        f"- **Overrides on top of the table config:** {_overrides_summary(done)}",
        f"- **Numerics** (`python -m skiprnn.verify RUN_DIR` retrains a run and compares it bit for bit): "
        f"{_numerics_summary(done)}",
        *([f"- **Fidelity switches** (docs/faithfulness.md): {_fidelity_summary(done)}"] if _fidelity_summary(done) else []),
        *([f"- **Note:** {note}"] if note else []),
        "- Ours: mean ± std (population std) over the finished seeds of the final evaluation; a cell with one run "
        "shows that run's value alone"
        + ("; 'Last 5 evals' averages the last five evaluations of each run, to show how settled the final numbers are"
           if any(title.startswith("Last 5") for *_, title in table.columns) else "")
        + ". Only finished runs enter the statistics.",
        "",
        *lines,
        "",
        *_pairs_section(table, grid),
        "## Every run",
        "",
        *detail,
        "",
        *_longer_section(table, results, seeds, asked),
    ]
    return "\n".join(md), csv_rows


def paper_points(table: PaperTable, results: Path) -> dict[str, dict]:
    """Each row's point in the report's trade-off plot: the paper's update fraction, and its metric where it prints
    a number (accuracy). A count of updates becomes a fraction by the length of the row's sequences, read from one
    of its runs (updates / fraction)."""
    points = {}
    for row in table.rows:
        updates = metric = None
        for ours, paper, _ in table.columns:
            printed = row.paper.get(paper or "", "")
            if not printed:
                continue
            number = _leading_number(printed)
            if ours == "update_pct":
                updates = number / 100
            elif ours.endswith("updates_steps"):
                length = _sequence_length(results / table.name / row.row)
                updates = number / length if length else None
            elif ours.endswith("accuracy") and math.isfinite(number):
                metric = number
        if updates is not None and math.isfinite(updates):
            points[row.row] = {"metric": metric, "updates": updates}
    return points


def _sequence_length(row_dir: Path) -> float | None:
    for metrics in sorted(row_dir.glob(f"seed=*/{tracking.METRICS}")):
        try:
            final = tracking.read_json(metrics)["final"]
            if final.get("val_update_fraction"):
                return final["val_updates"] / final["val_update_fraction"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def write_report(table: PaperTable, results: Path, seeds: list[int]) -> Path:
    """results/<table>.html (interactive, offline; plotly.js written once beside it, not committed) and
    results/<table>.png (the key plots, committed)."""
    from .report import build_report

    budgets = {row: cfg["trainer"]["max_steps"] for row, cfg in asked_configs(table, []).items()
               if not cfg["trainer"].get("max_epochs")}
    return build_report([results / table.name], results / f"{table.name}.html", paper=paper_points(table, results),
                        title=f"{table.title}: runs, curves and the trade-off beside the paper", js="directory",
                        seeds=seeds, png=results / f"{table.name}.png", budgets=budgets)


_STAMP = re.compile(r"\*\*Aggregated\*\* [^*]*? by ")


class EmptyTable(UserError):
    """No finished run for the seeds asked for, and a table with runs already written: it is left as it is."""


def _finished(text: str) -> int:
    """How many finished runs a written table counts ("Finished runs: N of M"); 0 when it does not say."""
    found = re.search(r"Finished runs: (\d+) of", text)
    return int(found.group(1)) if found else 0


def write(table: PaperTable, results: Path, seeds: list[int], note: str = "",
          overrides: list[str] | None = None) -> tuple[Path, bool]:
    """Write the table and its CSV; returns (the table's path, whether it changed). A table that differs only in
    its time stamp is not rewritten, and one with finished runs is never replaced by one without (EmptyTable)."""
    text, rows = build(table, results, seeds, note, overrides)
    out = results / f"{table.name}.md"
    old = out.read_text() if out.exists() else ""
    if _finished(text) == 0 and _finished(old) > 0:
        raise EmptyTable(f"no finished runs for seed(s) {', '.join(map(str, seeds))} in {results / table.name}, so "
                         f"{out} (with {_finished(old)} finished runs) is left as it is. Train them first "
                         f"(make reproduce-{table.name} SEEDS=...), or pass the seeds that have runs")
    if _STAMP.sub("", old) == _STAMP.sub("", text):
        return out, False
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    results.mkdir(parents=True, exist_ok=True)
    tracking.atomic_write_texts({out: text, results / f"{table.name}.csv": buffer.getvalue()})
    return out, True


def parse_seeds(parser: argparse.ArgumentParser, text: str | None, table: PaperTable) -> list[int]:
    """``--seeds 0,1,2``: distinct integers; the table's own seeds when not given."""
    try:
        seeds = [int(s) for s in text.split(",")] if text else list(table.seeds)
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, e.g. 0,1,2,3; got {text!r}")
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds lists a seed twice: {text!r}")
    return seeds


def main(argv: list[str] | None = None) -> int:
    tables = paper_tables()
    parser = argparse.ArgumentParser(prog="python -m skiprnn.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help=f"one of {', '.join(tables)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds expected per row (default: the paper's four)")
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--note", default=None,
                        help="a sentence for the table's header, e.g. why the run is reduced; kept in "
                             "<results>/<table>_note.md for later rebuilds (default: that file's text)")
    parser.add_argument("--no-report", action="store_true", help="skip the interactive HTML report and its PNG")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="the Hydra overrides the table's runs were asked with (make passes STEPS, EPOCHS and "
                             "ARGS): a run of another config is listed as a conflict, not counted")
    args = parser.parse_intermixed_args(argv)
    if args.table not in tables:
        parser.error(f"unknown table {args.table!r}; choose one of {', '.join(tables)}")
    table = tables[args.table]
    seeds = parse_seeds(parser, args.seeds, table)
    if not (args.results / table.name).is_dir():
        parser.error(f"no runs in {args.results / table.name}: train them first (make reproduce-{table.name}) "
                     "or point --results at the folder that holds them")
    note_file = args.results / f"{table.name}_note.md"
    note = args.note.strip() if args.note is not None else (note_file.read_text().strip() if note_file.exists() else "")
    try:
        out, changed = write(table, args.results, seeds, note, args.overrides)
    except EmptyTable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.note is not None:  # kept only once the table it belongs to is written
        if note:
            tracking.atomic_write_text(note_file, note + "\n")
        else:
            note_file.unlink(missing_ok=True)
    left_out = finished_seeds_left_out(table, args.results, seeds)
    if left_out:
        print(f"note: --seeds {args.seeds} leaves out finished runs of seed(s) {', '.join(map(str, left_out))}; "
              f"pass them in --seeds to include them", file=sys.stderr)
    print(f"wrote {out}" if changed else f"{out} is up to date (only its time stamp would change): left as it is")
    if not args.no_report:
        print(f"wrote {write_report(table, args.results, seeds)} (open it in a browser) and {table.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
