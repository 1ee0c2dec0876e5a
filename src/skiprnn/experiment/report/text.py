"""How the report writes values, seeds, statuses and hover text."""
from __future__ import annotations

import html
import math
from collections.abc import Iterable

from ..metrics import of_key
from ..records import RunResult
from .runs import Group

STATUS_MARK = {"completed": "✓ finished", "unfinished": "◔ unfinished", "failed": "✗ failed",
               "unreadable": "⚠ unreadable"}



def fmt_metric(key: str | None, value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    spec = of_key(key)
    return spec.show(value) if spec else f"{value:.3g}"


def fmt_updates(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def seed_ranges(seeds: Iterable[int]) -> str:
    """0, 1, 2, 3, 7 -> "0–3, 7": a long list of seeds stays one short cell."""
    out, values = [], sorted(set(seeds))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if j == i else f"{values[i]}–{values[j]}" if j > i + 1 else f"{values[i]}, {values[j]}")
        i = j + 1
    return ", ".join(out)


def hover_text(text: str) -> str:
    """Literal text inside a plotly hovertemplate: HTML-escaped, and no "%{" that plotly would substitute."""
    return html.escape(str(text)).replace("{", "&#123;").replace("}", "&#125;")


def progress_text(run: RunResult) -> str:
    if run.status == "completed":
        return f"{run.step:,}"
    if not run.step:
        return "no evaluation yet"
    if run.max_steps:
        return f"{run.step:,} / {run.max_steps:,}"
    return f"{run.step:,}" if run.step else "no evaluation yet"


def run_lines(group: Group, run: RunResult) -> list[str]:
    seed = "?" if run.seed is None else run.seed
    return [f"<b>{hover_text(group.label)}</b>", f"run: {hover_text(run.display)}",
            f"seed: {seed} · {hover_text(STATUS_MARK[run.status])}"]
