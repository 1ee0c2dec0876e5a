"""The report's plotly figures: learning curves per group, and the metric against the update fraction beside the
paper's points."""
from __future__ import annotations

import statistics

import numpy as np

from ..metrics import METRICS
from ..numbers import finite
from ..records import UPDATES
from .runs import Collection, Group
from .series import (
    METRIC_NAMES,
    color,
    curve_points,
    dash,
    group_stats,
    mean_curve,
    paper_for,
)
from .text import fmt_metric, fmt_updates, hover_text, progress_text, run_lines


def _metric_axis(key: str) -> dict:
    """A metric's y axis: log for the MSE, a percentage for accuracy (metrics.py says which)."""
    scale = METRICS[key].scale if key in METRICS else "linear"
    return {"log": dict(type="log", exponentformat="power"), "percent": dict(tickformat=".2~%")}.get(scale, {})


def _layout(**extra) -> dict:
    return dict(template="none", font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12),
                hovermode="closest", hoverlabel=dict(namelength=-1, align="left"), margin=dict(l=70, r=20, t=50, b=50),
                legend=dict(title=dict(text="group (click: hide/show · double-click: only this)"),
                            tracegroupgap=2, itemsizing="constant"),
                paper_bgcolor="white", plot_bgcolor="white", **extra)


def _axis_style() -> dict:
    return dict(showgrid=True, gridcolor="#e6e6e6", zeroline=False, showline=True, linecolor="#888", mirror=True,
                ticks="outside")


def _xs(steps: np.ndarray) -> dict:
    """The steps of a trace: evenly spaced ones as x0 + i·dx (most curves), so that the page stays small."""
    if len(steps) > 2 and np.all(np.diff(steps) == steps[1] - steps[0]):
        return {"x0": int(steps[0]), "dx": int(steps[1] - steps[0])}
    small = len(steps) and steps.min() >= 0 and steps.max() < 2 ** 16
    return {"x": steps.astype(np.uint16 if small else np.int32)}


def curves_figure(coll: Collection, metrics: list[str]):
    """The task metric(s) and the update fraction against steps: each run thin, each group's mean thick."""
    from plotly.subplots import make_subplots

    keys = [*metrics, UPDATES]
    names = [f"{METRIC_NAMES.get(m, m)} ({'higher' if METRICS[m].higher_is_better else 'lower'} is better)"
             for m in metrics] + ["update fraction (share of steps whose state was updated)"]
    fig = make_subplots(rows=len(keys), cols=1, shared_xaxes=True, vertical_spacing=0.08 if len(keys) < 3 else 0.05,
                        subplot_titles=names)
    for g in coll.groups:
        shown = False
        for row, key in enumerate(keys, 1):
            if key != UPDATES and g.metric != key:
                continue
            curves = [(run, *curve_points(run, key)) for run in g.runs]
            curves = [(run, s, v) for run, s, v in curves if len(s)]
            if not curves:
                continue
            value_fmt = ":.2%" if key == UPDATES else METRICS[key].plot_format
            label = "update fraction" if key == UPDATES else METRIC_NAMES.get(key, key)
            single = len(curves) == 1
            for run, steps, values in curves:
                legs = {run.commit_at(int(s)) for s in steps} if run.legs else set()
                lines = run_lines(g, run) + ["step: %{x:,}", f"{label}: %{{y{value_fmt}}}"]
                trace = dict(**_xs(steps), y=values.astype(np.float32), mode="lines", name=g.label if single else f"{g.label} · seed {run.seed}",
                             legendgroup=f"g{g.index}", showlegend=single and not shown,
                             line=dict(color=color(g), width=2.5 if single else 1, dash=dash(g)),
                             opacity=1.0 if single else 0.45)
                if run.status in ("failed", "unreadable"):
                    trace["line"]["dash"] = "dot"
                if len(legs) > 1:
                    trace["customdata"] = np.array([run.commit_at(int(s)) for s in steps], dtype=object)
                    lines.append("commit: %{customdata}")
                else:
                    lines.append(f"commit: {hover_text(next(iter(legs)) if legs else 'not recorded')}")
                trace["hovertemplate"] = "<br>".join(lines) + "<extra></extra>"
                fig.add_scatter(row=row, col=1, **trace)
                shown = shown or trace["showlegend"]
            if not single:
                steps, mean, std, n = mean_curve([(s, v) for _, s, v in curves])
                if len(set(n.tolist())) == 1:  # the same runs at every step: say how many once
                    runs, custom, spread = f"{n[0]}", std.astype(np.float32), f"%{{customdata{value_fmt}}}"
                else:
                    runs, custom = "%{customdata[0]}", np.stack([n, std], axis=1).astype(np.float32)
                    spread = f"%{{customdata[1]{value_fmt}}}"
                fig.add_scatter(
                    row=row, col=1, **_xs(steps), y=mean.astype(np.float32), mode="lines", name=g.label,
                    legendgroup=f"g{g.index}", showlegend=not shown, line=dict(color=color(g), width=3.5, dash=dash(g)),
                    customdata=custom,
                    hovertemplate=(f"<b>{hover_text(g.label)}</b> · mean ± std of {runs} runs<br>"
                                   f"step: %{{x:,}}<br>{label}: %{{y{value_fmt}}} ± {spread}<extra></extra>"))
                shown = True
    for row, key in enumerate(keys, 1):
        axis = dict(_axis_style(), title=dict(text="update fraction" if key == UPDATES else METRIC_NAMES.get(key, key)))
        if key == UPDATES:
            axis.update(tickformat=".0%")
        else:
            axis.update(**_metric_axis(key))
        fig.update_yaxes(row=row, col=1, **axis)
        fig.update_xaxes(row=row, col=1, **_axis_style(), tickformat=",")
    fig.update_xaxes(row=len(keys), col=1, title=dict(text="training step"))
    fig.update_layout(_layout(height=60 + 340 * len(keys)))
    return fig


def tradeoff_figure(coll: Collection, metrics: list[str], paper: dict[str, dict]):
    """Final metric against final update fraction: one point per finished run, the group's mean ± std, the latest
    evaluation of each unfinished run (open circle) and the paper's value (star)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[
        f"{METRIC_NAMES.get(m, m)} against update fraction" for m in metrics], horizontal_spacing=0.08)
    for col, metric in enumerate(metrics, 1):
        value_fmt = METRICS[metric].plot_format
        ys = [v for g in coll.groups if g.metric == metric for r in g.runs
              if (v := finite(r.final.get(metric))) is not None]
        for g in (g for g in coll.groups if g.metric == metric):
            shown = False

            def add(trace: dict, g: Group = g, col: int = col) -> None:
                nonlocal shown
                fig.add_scatter(row=1, col=col, legendgroup=f"g{g.index}", name=g.label, showlegend=not shown,
                                **trace)
                shown = True

            for status, symbol in (("completed", "circle"), ("unfinished", "circle-open")):
                pts = [(r, finite(r.final.get(UPDATES)), finite(r.final.get(metric))) for r in g.by_status(status)]
                pts = [(r, u, v) for r, u, v in pts if u is not None and v is not None]
                if not pts:
                    continue
                text = ["<br>".join(run_lines(g, r) + [
                    f"step: {progress_text(r)}", f"{METRIC_NAMES.get(metric, metric)}: {fmt_metric(metric, v)}",
                    f"update fraction: {fmt_updates(u)}", f"commit: {hover_text(r.commit or 'not recorded')}"])
                    for r, u, v in pts]
                add(dict(x=[u for _, u, _ in pts], y=[v for _, _, v in pts], mode="markers", text=text,
                         marker=dict(color=color(g), size=9 if status == "completed" else 8, symbol=symbol,
                                     line=dict(width=1.5 if status != "completed" else 0.5, color=color(g)
                                               if status != "completed" else "white"), opacity=0.85),
                         hovertemplate="%{text}<extra></extra>"))
            stats = group_stats(g)
            pairs = [(u, v) for r in stats["finished"]
                     if (u := finite(r.final.get(UPDATES))) is not None and (v := finite(r.final.get(metric))) is not None]
            if len(pairs) > 1:
                us, vs = [u for u, _ in pairs], [v for _, v in pairs]
                add(dict(x=[statistics.fmean(us)], y=[statistics.fmean(vs)], mode="markers",
                         marker=dict(color=color(g), size=14, symbol="diamond", line=dict(width=1.5, color="black")),
                         error_x=dict(type="data", array=[statistics.pstdev(us)], color=color(g), thickness=1.5),
                         error_y=dict(type="data", array=[statistics.pstdev(vs)], color=color(g), thickness=1.5),
                         hovertemplate=(f"<b>{hover_text(g.label)}</b> · mean ± std of {len(pairs)} finished runs<br>"
                                        f"update fraction: %{{x:.1%}} ± {fmt_updates(statistics.pstdev(us))}<br>"
                                        f"{METRIC_NAMES.get(metric, metric)}: %{{y{value_fmt}}} ± "
                                        f"{fmt_metric(metric, statistics.pstdev(vs))}<extra></extra>")))
            found = paper_for(g, paper)
            if found:
                name, p = found
                hover = (f"<b>{hover_text(g.label)}</b> · paper ({hover_text(name)})<br>"
                         f"update fraction: {fmt_updates(p['updates'])}<br>"
                         f"{METRIC_NAMES.get(metric, metric)}: {fmt_metric(metric, p['metric'])}<extra></extra>")
                if p["updates"] is not None and p["metric"] is not None:
                    add(dict(x=[p["updates"]], y=[p["metric"]], mode="markers", hovertemplate=hover,
                             marker=dict(color=color(g), size=17, symbol="star", line=dict(width=1, color="black"))))
                elif p["updates"] is not None and ys:  # no metric printed: a vertical line at its update fraction
                    add(dict(x=[p["updates"]] * 2, y=[min(ys), max(ys)], mode="lines", hovertemplate=hover,
                             line=dict(color=color(g), width=1.5, dash="dashdot")))
        axis = dict(_axis_style(), title=dict(text=METRIC_NAMES.get(metric, metric)))
        axis.update(**_metric_axis(metric))
        fig.update_yaxes(row=1, col=col, **axis)
        fig.update_xaxes(row=1, col=col, **_axis_style(), tickformat=".0%",
                         title=dict(text="update fraction (final evaluation)"))
    fig.update_layout(_layout(height=520, annotations=[*fig.layout.annotations, dict(
        text="● finished run · ◆ group mean ± std · ○ unfinished run (latest evaluation) · ★ paper "
             "(-·- its update fraction where it prints no metric)",
        xref="paper", yref="paper", x=0, y=-0.2, yanchor="top", showarrow=False, xanchor="left",
        font=dict(size=11, color="#555"))]))
    fig.update_layout(margin=dict(b=100))
    return fig


def figure_json(fig) -> str:
    import plotly.io as pio

    # plotly.io escapes "<", ">" and "/" in strings, so the JSON is safe inside a <script> element; make sure.
    return pio.to_json(fig, validate=False).replace("</", "<\\/")
