"""A static PNG of the report's key plots (learning curves and trade-off), drawn with matplotlib.

plotly's own static export needs kaleido (a browser it downloads), which is not available offline.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path

from ..metrics import METRICS
from ..numbers import finite
from .runs import Collection
from .series import METRIC_NAMES, PALETTE, UPDATES, color, curve_points, group_stats, mean_curve, paper_for

_MPL_DASH = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}


def write_png(coll: Collection, path: str | os.PathLike, paper: dict[str, dict] | None = None,
              title: str = "", dpi: int = 110) -> Path:
    """One row per task metric: the metric against steps, the update fraction against steps, and the trade-off
    (final metric against final update fraction; ★ the paper's value, or a dash-dot line at its update fraction
    where it prints no metric). Thin lines: runs; thick: group means."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    paper = paper or {}
    metrics = coll.metrics
    rows = metrics or [None]
    shown_groups = [g for g in coll.groups if g.metric in rows or (not metrics and g.runs)]
    legend_rows = -(-max(1, len(shown_groups)) // 4)
    fig = Figure(figsize=(18, 4.6 * len(rows) + 0.3 * legend_rows + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for i, metric in enumerate(rows):
        ax_metric, ax_updates, ax_trade = axes[i]
        groups = [g for g in coll.groups if g.metric == metric]
        marks = set()  # how the paper's values are drawn: "★" (update fraction and metric), "line" (updates only)
        for g in groups:
            c, ls = color(g), _MPL_DASH.get("solid")
            for ax, key in ((ax_metric, metric), (ax_updates, UPDATES)):
                if key is None:
                    continue
                curves = [curve_points(r, key) for r in g.runs]
                curves = [(s, v) for s, v in curves if len(s)]
                if not curves:
                    continue
                if len(curves) > 1:
                    for s, v in curves:
                        ax.plot(s, v, color=c, lw=0.8, alpha=0.35, ls=ls)
                steps, mean, _, _ = mean_curve(curves)
                ax.plot(steps, mean, color=c, lw=2.2, ls=ls)
            if metric is None:
                continue
            stats = group_stats(g)
            pts = [(u, v) for r in stats["finished"]
                   if (u := finite(r.final.get(UPDATES))) is not None and (v := finite(r.final.get(metric))) is not None]
            if pts:
                ax_trade.scatter([u for u, _ in pts], [v for _, v in pts], color=c, s=28, alpha=0.8, lw=0)
            if len(pts) > 1:
                us, vs = [u for u, _ in pts], [v for _, v in pts]
                ax_trade.errorbar([statistics.fmean(us)], [statistics.fmean(vs)], xerr=[statistics.pstdev(us)],
                                  yerr=[statistics.pstdev(vs)], color=c, marker="D", ms=8, mec="black", capsize=3)
            found = paper_for(g, paper)
            if found and found[1]["updates"] is not None:
                if found[1]["metric"] is not None:
                    ax_trade.scatter([found[1]["updates"]], [found[1]["metric"]], color=c, marker="*", s=220,
                                     edgecolors="black", linewidths=0.8, zorder=5)
                    marks.add("★")
                else:
                    ax_trade.axvline(found[1]["updates"], color=c, ls="-.", lw=1)
                    marks.add("line")
        name = METRIC_NAMES.get(metric, metric or "")
        if metric is not None:
            ax_metric.set_title(f"{name} ({'higher' if METRICS[metric].higher_is_better else 'lower'} is better)")
            legend = ["● run", "◆ group mean ± std", *(["★ paper"] if "★" in marks else []),
                      *(["-·- paper's update fraction"] if "line" in marks else [])]
            ax_trade.set_title(f"trade-off ({', '.join(legend)})")
            ax_trade.set_xlabel("update fraction (final evaluation)")
            ax_trade.set_ylabel(name)
            ax_trade.xaxis.set_major_formatter(PercentFormatter(1.0))
            ax_metric.set_ylabel(name)
        else:
            ax_metric.set_visible(False)
            ax_trade.set_visible(False)
        ax_updates.set_title("update fraction")
        ax_updates.yaxis.set_major_formatter(PercentFormatter(1.0))
        for ax in (ax_metric, ax_updates):
            ax.set_xlabel("training step")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        for ax in (ax_metric, ax_trade):
            if METRICS[metric].scale == "log":
                ax.set_yscale("log")
            elif METRICS[metric].scale == "percent":
                ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        for ax in axes[i]:
            ax.grid(True, color="#e6e6e6", lw=0.6)
    handles = [Line2D([], [], color=color(g), lw=2.5, label=g.label) for g in shown_groups]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), frameon=False,
                   fontsize=9)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


__all__ = ["write_png", "PALETTE"]
