"""Numbers as the result tools read and print them: one definition each, shared by tables, compare, the report
and the figures."""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def mean_std(values: list[float], fmt: str | Callable[[float], str], scale: float = 1.0, unit: str = "") -> str:
    """mean ± population std of ``values`` x ``scale``, each printed with ``fmt`` (a format spec or a function) and
    ``unit``; one value prints alone, since "± 0" would read as a measured spread; none prints "–"."""
    if not values:
        return "–"
    show = fmt if callable(fmt) else (lambda x: f"{x:{fmt}}")
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{show(mean)}{unit}"
    return f"{show(mean)}{unit} ± {show(statistics.pstdev(values) * scale)}{unit}"


def leading_number(printed: str) -> float:
    """The mean of a printed "mean ± std" value ("81.1% ± 3.6%" -> 81.1); NaN when it holds none."""
    try:
        return float(printed.split("±")[0].strip().removesuffix("%"))
    except ValueError:
        return math.nan


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]: distinct integers; raises ValueError saying what is wrong."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, e.g. 0,1,2,3; got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed is listed twice: {text!r}")
    return seeds
