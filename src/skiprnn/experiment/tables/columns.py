"""A table's columns: each one's formula over the finished runs of a row, and how the table states updates."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ..numbers import leading_number, mean_std
from ..records import RunResult
from ..tasks.base import PaperTable


def _sci(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _over_videos(runs: list[RunResult]) -> str:
    """State updates per sequence as mean ± std over the evaluation's sequences (Table 3: over the validation
    videos) of one run; with several runs, the mean and the std are each averaged over them."""
    if not runs:
        return "–"
    return (f"{statistics.fmean(r.final['val_updates'] for r in runs):.1f} ± "
            f"{statistics.fmean(r.final['val_updates_std'] for r in runs):.1f}")


def solved(runs: list[RunResult]) -> str:
    return f"{sum(bool(r.final['val_solved']) for r in runs)}/{len(runs)}" if runs else "–"


COLUMNS = {
    "solved": solved,
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
    return {row.row: leading_number(row.paper.get(paper_key, "")) for row in table.rows}


METRIC_COLUMNS = ("mse", "accuracy", "map_pct")  # a table's headline metric among its columns
