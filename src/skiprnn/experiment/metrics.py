"""Each headline metric declared once: its key in a record, its name, which way is better, how it prints and plots.
Tasks name theirs (``Task.metric``); tables, ``compare``, the report and the figures read everything else from here.
Imports nothing heavy, so that the record readers stay free of torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str  # in a curve row or a record's "final": "val_mse"
    name: str  # for axes and tables: "validation MSE"
    higher_is_better: bool
    fmt: str  # Python format spec of a value: ".2e"
    scale: str = "linear"  # "log": plotted on a log axis; "percent": as a percentage

    @property
    def short(self) -> str:
        """"mse", as tasks and the curve listings name it."""
        return self.key.removeprefix("val_")

    @property
    def plot_format(self) -> str:
        """A plotly hover format of a value: ":.2%" for a percentage, ":.4g" otherwise."""
        return ":.2%" if self.scale == "percent" else ":.4g"

    def show(self, value: float) -> str:
        """A value as the report prints it: "97.50%" for a percentage, "0.0123" otherwise."""
        return f"{100 * value:.2f}%" if self.scale == "percent" else f"{value:.3g}"

    def best(self, rows: list[dict], key: str | None = None) -> dict:
        """The row with the best value of this metric (or of ``key``, another split's)."""
        return (max if self.higher_is_better else min)(rows, key=lambda r: r[key or self.key])

    def worst(self, rows: list[dict]) -> dict:
        return (min if self.higher_is_better else max)(rows, key=lambda r: r[self.key])


# In the order a record is searched for its headline metric.
METRICS = {m.key: m for m in (
    Metric("val_mse", "validation MSE", higher_is_better=False, fmt=".2e", scale="log"),
    Metric("val_accuracy", "validation accuracy", higher_is_better=True, fmt=".3f", scale="percent"),
    Metric("val_map", "validation mAP", higher_is_better=True, fmt=".3f"),
)}
# The headline metric of each task (Task.metric reads it), for records that hold no evaluation yet.
TASK_METRICS = {"adding": "val_mse", "frequency": "val_accuracy", "mnist": "val_accuracy", "charades": "val_map"}


def of_key(key: str | None) -> Metric | None:
    """The metric a record's key holds, whatever its split ("val_accuracy", "test_accuracy": accuracy)."""
    if not key:
        return None
    return METRICS.get(key) or METRICS.get("val_" + key.split("_", 1)[-1])


def of_task(name: str) -> Metric:
    return METRICS[TASK_METRICS[name]]
