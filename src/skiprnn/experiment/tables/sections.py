"""The sections of a table's page below its main table: the row pairs the paper compares, every run, the longer
budget, and the header's summaries of overrides, numerics and fidelity switches."""
from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

from .. import records
from ..identity import as_trained
from ..numbers import mean_std
from ..records import RunResult, Status, metric_key
from ..tasks.base import PaperRow, PaperTable
from .columns import COLUMNS, METRIC_COLUMNS, paper_updates, solved, update_measure
from .load import check_against, check_columns, check_curve, load_run, worst_late


def _change(a: float, b: float, fmt: str = ".1f") -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return "–"
    return f"{a:{fmt}} → {b:{fmt}} (×{b / a:.2f})"


def pairs_section(table: PaperTable, grid: dict[str, list[RunResult]]) -> list[str]:
    """Mean updates of row pairs the paper compares, ours (final and last five evaluations) and the paper's, in the
    table's measure. Ours average only the seeds finished in both rows, so a ratio never compares different seeds;
    each seed's own ratio is listed too."""
    if not table.pairs:
        return []
    paper = paper_updates(table)
    measure = update_measure(table)
    finished = {row: {r.seed: r for r in runs if r.status == Status.COMPLETED} for row, runs in grid.items()}

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


def longer_section(table: PaperTable, results: Path, seeds: list[int], asked: dict[str, dict]) -> list[str]:
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
    def checked(row: str, seed: int) -> RunResult:
        run = check_against(load_run(folder / row / f"seed={seed}", seed), asked.get(row))
        return check_curve(check_columns(table, run)) if run.status == Status.COMPLETED else run

    grid = {row: [checked(row, s) for s in seeds] for row in longer.rows}
    for run in (r for runs in grid.values() for r in runs):  # the budget these runs are asked for is the longer one
        run.below_budget = longer.max_steps if run.status == Status.COMPLETED and run.max_steps < longer.max_steps else 0
    if not any(r.status != Status.MISSING for runs in grid.values() for r in runs):
        return lines + ["No runs of these seeds yet.", ""]
    tail = longer.max_steps - longer.max_steps // 10

    def updates_at(run: RunResult, step: int) -> float:
        """The update fraction of the last evaluation at or before ``step``."""
        before = [r for r in run.curve if r["step"] <= step]
        return before[-1][records.UPDATES] if before else math.nan

    metric, metric_title = next((ours, title) for ours, _, title in table.columns if ours in METRIC_COLUMNS)
    lines += [f"| Model | Updates at {longer.from_steps:,} (ours) | Updates at {longer.max_steps:,} (ours) | "
              f"{metric_title} at {longer.max_steps:,} (ours) | Solved at {longer.max_steps:,} (ours) | Still falling (lowest "
              "evaluation in the last 10% of steps, solved at the end) | State updates (paper) | Runs |", "|---|---|---|---|---|---|---|---|"]
    paper_key = update_measure(table).paper_column
    for row in longer.rows:
        done = [r for r in grid[row] if r.status == Status.COMPLETED and r.max_steps >= longer.max_steps]
        lines.append(f"| {_row(table, row).label} | "
                     f"{mean_std([updates_at(r, longer.from_steps) for r in done], '.1f', 100, '%')} | "
                     f"{COLUMNS['update_pct'](done)} | {COLUMNS[metric](done)} | {solved(done)} | "
                     f"{still_falling(done, tail)} | "
                     f"{_row(table, row).paper.get(paper_key, '–')} | {status_counts(grid[row])} |")
    lines += ["", f"| Row | Seed | Status | Step | Updates at {longer.from_steps:,} | Updates | Lowest updates (step) | "
              f"{metric_title} | Commit / error |", "|---|---|---|---|---|---|---|---|---|"]
    for row in longer.rows:
        for r in grid[row]:
            shown = r.status == Status.COMPLETED and r.curve
            low = _lowest(r) if shown else None
            lines.append(
                f"| {row} | {r.seed} | {r.status} | {r.step}/{r.max_steps or '?'} | "
                + (f"{100 * updates_at(r, longer.from_steps):.1f}% | {100 * r.final[records.UPDATES]:.1f}% | "
                   f"{100 * low[records.UPDATES]:.1f}% ({low['step']:,}) | {r.final[metric_key(r.final)]:.3g} | "
                   if shown else "– | – | – | – | ")
                + f"{r.error or r.commit} |")
    return lines + [""]


def _lowest(run: RunResult) -> dict:
    """A finished run's evaluation with the fewest updates (the first, where several tie)."""
    return min(run.curve, key=lambda r: r[records.UPDATES])


def still_falling(done: list[RunResult], tail: int) -> str:
    """How many finished runs were lowest in their last steps (after ``tail``) and still solve the task. A run whose
    updates fell because it collapsed (the budget won and the task was lost) is named apart, not counted as falling."""
    if not done:
        return "–"
    late = [r for r in done if _lowest(r)["step"] > tail]
    lost = sum(not r.final["val_solved"] for r in late)
    return f"{len(late) - lost} of {len(done)} runs" + (f"; {lost} more lowest there but unsolved" if lost else "")


def _row(table: PaperTable, name: str) -> PaperRow:
    return next(r for r in table.rows if r.row == name)


def every_run_section(table: PaperTable, grid: dict[str, list[RunResult]]) -> list[str]:
    """One line per run asked for: its status, step, metric, updates, worst late evaluation, overrides, numerics and
    machine, and its commit or what is wrong with it."""
    lines = ["## Every run", "",
             "| Row | Seed | Status | Step | Metric | Updates | Worst eval, last quarter of steps | Overrides | "
             "Numerics, machine | Commit / error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.rows:
        for r in grid[row.row]:
            metric = updates = worst = "–"
            key = metric_key(r.final)
            if key:
                metric = f"{key.removeprefix('val_')} {r.final[key]:.4g}"
                updates = f"{100 * r.final['val_update_fraction']:.1f}%"
            finished = r.status == Status.COMPLETED
            if finished and key:
                worst = worst_late(r.curve, key) or "–"
            shown = " ".join(f"`{o}`" for o in r.overrides) if finished else ""
            lines.append(f"| {row.row} | {r.seed} | {r.status} | {r.step}/{r.max_steps or '?'} | {metric} | {updates} | "
                         f"{worst} | {shown} | {r.where if finished else '–'} | {r.error or r.commit} |")
    return lines + [""]


def status_counts(runs: list[RunResult]) -> str:
    """Counts by status, and the budget(s) the finished runs trained for, flagged when they differ."""
    counts = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    order = ("completed", "unfinished", "failed", "conflict", "unreadable", "missing")
    text = ", ".join(f"{counts[s]} {s}" for s in order if s in counts)
    budgets = sorted({r.max_steps for r in runs if r.status == Status.COMPLETED})
    if budgets:
        text += f" ({' and '.join(f'{b:,}' for b in budgets)} steps{', mixed budgets' if len(budgets) > 1 else ''})"
    short = [r for r in runs if r.below_budget]
    if short:
        text += f"; **{len(short)} below the {short[0].below_budget:,}-step budget**"
    return text


def fidelity_summary(runs: list[RunResult]) -> str:
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


def numerics_summary(runs: list[RunResult]) -> str:
    """How many finished runs each numerics mode made, and what each promises."""
    counts = Counter(r.numerics for r in runs)
    if not counts:
        return "–"
    meaning = {"reproducible": "the same bits on any x86-64 CPU with AVX2 and FMA",
               "fast": "bits that hold on the machine and thread count that made them"}
    text = "; ".join(f"`{mode}` ({n} run{'s' * (n != 1)}: {meaning.get(mode, 'mixed within a run')})"
                     for mode, n in sorted(counts.items()))
    return text + (" — **the table mixes both modes** (each run's in 'Every run')" if len(counts) > 1 else "")


def overrides_summary(runs: list[RunResult]) -> str:
    """Each distinct set of overrides and how many finished runs used it (the runs are in 'Every run')."""
    counts = {}
    for r in runs:
        key = " ".join(f"`{o}`" for o in r.overrides) or "none"
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{key} ({n} run{'s' * (n != 1)})" for key, n in sorted(counts.items())) or "–"
