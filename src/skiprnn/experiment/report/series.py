"""The numbers behind every plot of the report: group colours, the paper's point of a group, per-group statistics
and (mean) curves. Shared by the HTML page (page.py, figures.py, tables.py) and the static PNG (static.py)."""
from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import METRICS
from ..numbers import finite
from ..records import UPDATES, RunResult
from .runs import Group

Paper = Mapping[str, Mapping[str, Any]]


# Matplotlib's tab10 first; then hues spaced by the golden angle, at three lightnesses in turn: every group its own
# colour, however many (a fixed palette repeated itself past its length, and held two near-identical blues).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


DASHES = ["solid", "dash", "dot", "dashdot"]


METRIC_NAMES = {key: m.name for key, m in METRICS.items()}


def _hsl_hex(hue: float, saturation: float, lightness: float) -> str:
    import colorsys

    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return "#" + "".join(f"{round(255 * v):02x}" for v in (r, g, b))


def color(group: Group) -> str:
    i = group.index
    if i < len(PALETTE):
        return PALETTE[i]
    k = i - len(PALETTE)
    return _hsl_hex(0.07 + k * 0.381966, 0.75, (0.30, 0.50, 0.40)[k % 3])


def dash(group: Group) -> str:
    return DASHES[(group.index // len(PALETTE)) % len(DASHES)]


def load_paper(paper: Paper | str | os.PathLike | None) -> dict[str, dict]:
    """The paper's values by group label or row name: {"metric": value or None, "updates": fraction or None}."""
    if paper is None:
        return {}
    if isinstance(paper, (str, os.PathLike)):
        try:
            paper = json.loads(Path(paper).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{paper} is not valid JSON ({error}): it must map a group or row name to "
                             "{'metric': ..., 'updates': ...}") from None
    if not isinstance(paper, Mapping):
        raise ValueError("paper values must map a group or row name to {'metric': ..., 'updates': ...}")
    out = {}
    for name, entry in paper.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"paper values for {name!r} must be an object with 'metric' and/or 'updates'")
        updates = finite(entry.get("updates"))
        if updates is not None and not 0.0 <= updates <= 1.0:
            raise ValueError(f"paper updates for {name!r} must be a fraction of the steps (0 to 1), not {updates}")
        out[str(name)] = {"metric": finite(entry.get("metric")), "updates": updates}
    return out


def paper_for(group: Group, paper: dict[str, dict]) -> tuple[str, dict] | None:
    for name in (group.label, *(group.rows if len(group.rows) == 1 else ())):
        if name in paper:
            return name, paper[name]
    return None


def group_stats(group: Group) -> dict[str, Any]:
    metric = group.metric
    done = group.by_status("completed")
    values = [(r, finite(r.final.get(metric)) if metric else None, finite(r.final.get(UPDATES))) for r in done]
    test = f"test_{metric.removeprefix('val_')}" if metric else None
    return {
        "metric": metric,
        "finished": done,
        "metric_values": [v for _, v, _ in values if v is not None],
        "update_values": [u for _, _, u in values if u is not None],
        "test_values": [v for v in (finite(r.final.get(test)) for r in done) if v is not None] if test else [],
        "test_key": test,
    }


def curve_points(run: RunResult, key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(row["step"], finite(row.get(key))) for row in run.curve]
    pts = [(s, v) for s, v in pts if v is not None]
    return np.array([s for s, _ in pts], dtype=np.int64), np.array([v for _, v in pts], dtype=np.float64)


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean, population std and number of runs, at every step any run evaluated."""
    by_step: dict[int, list[float]] = {}
    for steps, values in curves:
        for s, v in zip(steps.tolist(), values.tolist()):
            by_step.setdefault(s, []).append(v)
    steps = sorted(by_step)
    return (np.array(steps, dtype=np.int64), np.array([statistics.fmean(by_step[s]) for s in steps]),
            np.array([statistics.pstdev(by_step[s]) for s in steps]), np.array([len(by_step[s]) for s in steps]))
