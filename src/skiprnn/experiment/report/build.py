"""Build the report: plotly figures and tables in one HTML page that works offline, and an optional PNG.

    build_report(["results/table4"], "report.html", paper={"gru_ts1": {"metric": 1.0, "updates": 1.0}})

The page never loads anything from the network: plotly.js is written into the page (``js="inline"``, one
self-contained file) or once beside it as ``plotly.min.js`` (``js="directory"``, shared by every report in that
folder, so each page stays small).
"""
from __future__ import annotations

import html
import math
import os
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np

from .. import tracking
from ..metrics import METRICS, of_key
from ..numbers import finite, mean_std
from ..records import UPDATES, RunResult
from .runs import Collection, Group, collect, format_value
from .series import (
    METRIC_NAMES,
    Paper,
    color,
    curve_points,
    dash,
    group_stats,
    load_paper,
    mean_curve,
    paper_for,
)

PLOTLY_FILE = "plotly.min.js"
JS_MODES = ("inline", "directory")
STATUS_MARK = {"completed": "✓ finished", "unfinished": "◔ unfinished", "failed": "✗ failed",
               "unreadable": "⚠ unreadable"}



# ------------------------------------------------------------------------------------------------ formatting


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


def _hover_text(text: str) -> str:
    """Literal text inside a plotly hovertemplate: HTML-escaped, and no "%{" that plotly would substitute."""
    return html.escape(str(text)).replace("{", "&#123;").replace("}", "&#125;")


def _progress(run: RunResult) -> str:
    if run.status == "completed":
        return f"{run.step:,}"
    if not run.step:
        return "no evaluation yet"
    if run.max_steps:
        return f"{run.step:,} / {run.max_steps:,}"
    return f"{run.step:,}" if run.step else "no evaluation yet"


def _run_lines(group: Group, run: RunResult) -> list[str]:
    seed = "?" if run.seed is None else run.seed
    return [f"<b>{_hover_text(group.label)}</b>", f"run: {_hover_text(run.display)}",
            f"seed: {seed} · {_hover_text(STATUS_MARK[run.status])}"]


# ------------------------------------------------------------------------------------------------ paper values


# ------------------------------------------------------------------------------------------------ statistics


# ------------------------------------------------------------------------------------------------ figures
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
                lines = _run_lines(g, run) + ["step: %{x:,}", f"{label}: %{{y{value_fmt}}}"]
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
                    lines.append(f"commit: {_hover_text(next(iter(legs)) if legs else 'not recorded')}")
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
                    hovertemplate=(f"<b>{_hover_text(g.label)}</b> · mean ± std of {runs} runs<br>"
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
                text = ["<br>".join(_run_lines(g, r) + [
                    f"step: {_progress(r)}", f"{METRIC_NAMES.get(metric, metric)}: {fmt_metric(metric, v)}",
                    f"update fraction: {fmt_updates(u)}", f"commit: {_hover_text(r.commit or 'not recorded')}"])
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
                         hovertemplate=(f"<b>{_hover_text(g.label)}</b> · mean ± std of {len(pairs)} finished runs<br>"
                                        f"update fraction: %{{x:.1%}} ± {fmt_updates(statistics.pstdev(us))}<br>"
                                        f"{METRIC_NAMES.get(metric, metric)}: %{{y{value_fmt}}} ± "
                                        f"{fmt_metric(metric, statistics.pstdev(vs))}<extra></extra>")))
            found = paper_for(g, paper)
            if found:
                name, p = found
                hover = (f"<b>{_hover_text(g.label)}</b> · paper ({_hover_text(name)})<br>"
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


# ------------------------------------------------------------------------------------------------ tables
def _status_cell(count: int, css: str, mark: str, detail: str = "") -> str:
    if not count:
        return '<td class="num zero">0</td>'
    title = f' title="{html.escape(detail)}"' if detail else ""
    return f'<td class="num {css}"{title}>{mark} {count}</td>'


def groups_table(coll: Collection, paper: dict[str, dict]) -> str:
    stats = {g.index: group_stats(g) for g in coll.groups}
    has_test = any(s["test_values"] for s in stats.values())
    has_paper = bool(paper)
    head = ["show", "group", *[coll.short[k] for k in coll.varying], "seeds", "finished", "unfinished", "failed",
            "unreadable", "missing", "metric (mean ± std)", "update fraction (mean ± std)"]
    if has_test:
        head.append("test metric (mean ± std)")
    if has_paper:
        head += ["paper metric", "paper update fraction"]
    head += ["steps", "commits"]
    out = ['<table class="groups"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for g in coll.groups:
        s = stats[g.index]
        metric = s["metric"]
        settings = dict(g.settings or {})
        settings["folder"] = coll.roots[g.root]
        seeds = [r.seed for r in g.runs if r.seed is not None]
        expected = coll.expected_seeds.get(g.root, [])
        missing = [x for x in expected if x not in seeds]
        duplicated = sorted({x for x in seeds if seeds.count(x) > 1})
        cells = [f'<td><input type="checkbox" checked data-group="g{g.index}" '
                 f'aria-label="show {html.escape(g.label)}"></td>',
                 f'<td class="label"><span class="swatch" style="background:{color(g)}"></span>'
                 f'{html.escape(g.label)}</td>']
        cells += [f"<td>{html.escape(format_value(settings.get(k, '–')))}</td>" for k in coll.varying]
        seed_text = seed_ranges(seeds) or "–"
        cells.append(f'<td class="label">{html.escape(seed_text)}'
                     + (f' <span class="bad" title="seed trained twice">dup {duplicated}</span>' if duplicated else "")
                     + "</td>")
        cells.append(_status_cell(len(s["finished"]), "ok", "✓"))
        unfinished = g.by_status("unfinished")
        cells.append(_status_cell(len(unfinished), "warn", "◔",
                                  "; ".join(f"seed {r.seed}: step {_progress(r)}" for r in unfinished)))
        failed = g.by_status("failed")
        cells.append(_status_cell(len(failed), "bad", "✗", "; ".join(f"seed {r.seed}: {r.error}" for r in failed)))
        unreadable = g.by_status("unreadable")
        cells.append(_status_cell(len(unreadable), "bad", "⚠",
                                  "; ".join(f"{r.display}: {r.error}" for r in unreadable)))
        cells.append(f'<td class="warn">missing seed{"s" if len(missing) > 1 else ""} '
                     f'{", ".join(map(str, missing))}</td>' if missing else '<td class="zero">–</td>')
        if s["finished"]:
            name = METRIC_NAMES.get(metric, metric or "metric")
            cells.append(f'<td class="num" title="{html.escape(name)}, final evaluation of the finished runs">'
                         f'{html.escape(mean_std(s["metric_values"], partial(fmt_metric, metric)))}</td>')
            cells.append(f'<td class="num">{html.escape(mean_std(s["update_values"], fmt_updates))}</td>')
        else:
            cells.append('<td class="warn" colspan="2">no finished run</td>')
        if has_test:
            test = mean_std(s["test_values"], partial(fmt_metric, s["test_key"]))
            cells.append(f'<td class="num">{html.escape(test)}</td>')
        if has_paper:
            found = paper_for(g, paper)
            if found:
                cells.append(f'<td class="num paper">{html.escape(fmt_metric(metric, found[1]["metric"]))}</td>')
                cells.append(f'<td class="num paper">{html.escape(fmt_updates(found[1]["updates"]))}</td>')
            else:
                cells.append('<td class="zero">–</td><td class="zero">–</td>')
        steps = sorted({r.step for r in s["finished"]})
        if len(steps) > 1:  # the means above mix budgets: said in the row, never silently
            cells.append(f'<td class="num warn" title="the means of this row average runs of different lengths">'
                         f'mixed budgets: {html.escape("; ".join(f"{x:,}" for x in steps))}</td>')
        else:
            cells.append(f'<td class="num">{html.escape("; ".join(f"{x:,}" for x in steps) or "–")}</td>')
        commits = sorted({leg["commit"] for r in g.runs for leg in r.legs})
        shown = commits[0][:12] if len(commits) == 1 else f"{len(commits)} commits" if commits else "–"
        cells.append(f'<td class="mono label" title="{html.escape(", ".join(commits))}">{html.escape(shown)}</td>')
        out.append(f'<tr data-group="g{g.index}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def runs_table(coll: Collection) -> str:
    head = ["group", "run folder", "seed", "status", "step", "metric", "update fraction", "commit", "error / problems"]
    out = ['<table class="runs"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for g in coll.groups:
        metric = g.metric
        for r in g.runs:
            css = {"completed": "ok", "unfinished": "warn"}.get(r.status, "bad")
            status = STATUS_MARK[r.status]
            budget = coll.budgets.get(r.row or "", 0)
            if r.status == "completed" and r.step < budget:  # as the table's "below the N-step budget"
                css, status = "warn", f"{status} · below the {budget:,}-step budget"
            notes = [r.error] if r.error else []
            notes += [p for p in r.problems if p != r.error]
            cells = [f'<td class="label"><span class="swatch" style="background:{color(g)}"></span>'
                     f'{html.escape(g.label)}</td>',
                     f'<td class="mono">{html.escape(r.display)}</td>',
                     f'<td class="num">{"–" if r.seed is None else r.seed}</td>',
                     f'<td class="{css}">{html.escape(status)}</td>',
                     f'<td class="num">{html.escape(_progress(r))}</td>',
                     f'<td class="num">{html.escape(fmt_metric(metric, finite(r.final.get(metric)) if metric else None))}</td>',
                     f'<td class="num">{html.escape(fmt_updates(finite(r.final.get(UPDATES))))}</td>',
                     f'<td class="mono">{html.escape(r.commit or "–")}</td>',
                     f'<td class="err">{html.escape(" | ".join(notes))}</td>']
            out.append(f'<tr data-group="g{g.index}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ page
def _asset(name: str) -> str:
    """The page's own CSS or script (report/assets/, package data): kept as files so that editors and linters
    read them as CSS and JavaScript."""
    return (resources.files(__package__) / "assets" / name).read_text(encoding="utf-8")


def _plotly_js() -> tuple[str, str]:
    """(plotly.min.js, its version), from the installed plotly package: no network."""
    import re

    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    found = re.search(r"plotly\.js v(\d[\w.\-]*)", js[:500])
    return js, found.group(1) if found else "?"


def render(coll: Collection, paper: dict[str, dict], title: str, js: str, plotly_js: str, plotly_version: str) -> str:
    metrics = coll.metrics
    counts = {s: sum(r.status == s for r in coll.runs) for s in STATUS_MARK}
    figures = []
    if any(r.curve for r in coll.runs):
        figures.append(("curves", "Learning curves", curves_figure(coll, metrics)))
    if metrics:
        figures.append(("tradeoff", "Trade-off: task metric against state updates",
                        tradeoff_figure(coll, metrics, paper)))
    unmatched = sorted(set(paper) - {found[0] for g in coll.groups if (found := paper_for(g, paper))})
    problems = [(r.display, p) for r in coll.runs for p in r.problems]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_asset('report.css')}</style>",
        (f"<script>{plotly_js}</script>" if js == "inline" else f'<script src="{PLOTLY_FILE}"></script>'),
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">Runs below {", ".join(f"<code>{e(r)}</code>" for r in coll.roots)} · '
        f"{len(coll.runs)} runs in {len(coll.groups)} groups: {counts['completed']} finished, "
        f"{counts['unfinished']} unfinished, {counts['failed']} failed, {counts['unreadable']} unreadable · "
        f"built {now} · plotly.js {e(plotly_version)} ({'inline' if js == 'inline' else PLOTLY_FILE + ' beside this file'})"
        "</p>",
        '<div id="plotly-missing" class="notice" hidden>plotly.js did not load: this page expects '
        f"<code>{PLOTLY_FILE}</code> in the same folder (build the report with <code>--js inline</code> for one "
        "self-contained file). The tables below do not need it.</div>",
        '<p class="help">Groups are runs whose configs are equal but for the seed and plumbing keys (budget, device, '
        "logging…). Hover a point or line for its run folder, seed, step and commit; drag to zoom, double-click to "
        "reset; click a legend entry or a checkbox in the table to hide or show a group in every plot.</p>",
        '<p class="controls"><button id="show-all" type="button">show all groups</button>'
        '<button id="hide-all" type="button">hide all groups</button></p>',
    ]
    for name, heading, fig in figures:
        parts.append(f"<h2>{e(heading)}</h2>")
        if name == "curves":
            parts.append('<p class="help">Thin lines: one run each (dotted: failed or unreadable); thick: the '
                         "group's mean at each step over the runs that reached it.</p>")
        parts.append(f'<div id="plot-{name}" class="plot"></div>')
        parts.append(f'<script type="application/json" data-plot="plot-{name}">{figure_json(fig)}</script>')
    parts.append("<h2>Groups</h2>")
    parts.append('<p class="help">Mean ± population std over the finished runs of the final evaluation (one run: '
                 "its value alone). Unfinished, failed and unreadable runs are counted, never averaged (hover a "
                 "count for details); missing: seeds asked for (by default, seen in another group of the same "
                 "folder) that this group has no run of.</p>")
    parts.append(f'<div class="scroll">{groups_table(coll, paper)}</div>' if coll.groups else "<p>No runs found.</p>")
    if unmatched:
        parts.append(f'<p class="warn">Paper values matching no group: {e(", ".join(unmatched))}</p>')
    parts.append("<details" + (" open" if counts["completed"] < len(coll.runs) else "") + "><summary>Every run ("
                 f"{len(coll.runs)})</summary><div class=\"scroll\">{runs_table(coll)}</div></details>")
    if problems:
        parts.append(f'<h2>Unreadable files ({len(problems)})</h2><ul class="err">'
                     + "".join(f"<li><code>{e(d)}</code>: {e(p)}</li>" for d, p in problems) + "</ul>")
    if coll.shared:
        parts.append("<details><summary>Settings every group shares (a model key: every group it acts on)</summary><table><tbody>"
                     + "".join(f"<tr><td class='mono'>{e(k)}</td><td class='mono'>{e(format_value(v))}</td></tr>"
                               for k, v in sorted(coll.shared.items())) + "</tbody></table></details>")
    parts.append(f"<script>{_asset('report.js')}</script></body></html>")
    return "\n".join(parts)


def build_report(folders: Iterable[str | os.PathLike] | str | os.PathLike, output: str | os.PathLike,
                 paper: Paper | str | os.PathLike | None = None, title: str | None = None, js: str = "inline", *,
                 seeds: Iterable[int] | None = None, png: str | os.PathLike | None = None,
                 budgets: dict[str, int] | None = None) -> Path:
    """Write an offline, interactive HTML report of the runs below ``folders`` to ``output``; return its path.

    ``paper``: the paper's values per group label or row name, ``{"skip_gru_lam1e-4": {"metric": 0.99 or None,
    "updates": 0.5}}`` (updates as a fraction), or the path of a JSON file holding that. ``js``: "inline" (one
    self-contained file) or "directory" (``plotly.min.js`` written once beside ``output``, shared by every
    report in that folder). ``seeds``: the seeds every group should have, to mark missing ones (default: every
    seed seen in that folder). ``png``: also write a static PNG of the curves and the trade-off (matplotlib).
    """
    return make_report(folders, output, paper, title, js, seeds=seeds, png=png, budgets=budgets)[0]


def make_report(folders, output, paper=None, title=None, js="inline", *, seeds=None,
                png=None, budgets=None) -> tuple[Path, Collection]:
    """build_report(), returning also the runs found (for the command line's summary)."""
    if js not in JS_MODES:
        raise ValueError(f"js must be one of {JS_MODES}, not {js!r}")
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    folders = list(folders)
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise FileNotFoundError(f"not a folder: {', '.join(missing)}")
    paper_values = load_paper(paper)
    coll = collect(folders, seeds)
    coll.budgets = dict(budgets or {})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    plotly_js, version = _plotly_js()
    if title is None:
        title = "Training runs: " + ", ".join(str(f) for f in folders)
    page = render(coll, paper_values, title, js, plotly_js if js == "inline" else "", version)
    if js == "directory":
        beside = output.parent / PLOTLY_FILE
        if not beside.exists() or beside.read_text(encoding="utf-8", errors="replace") != plotly_js:
            tracking.atomic_write_text(beside, plotly_js)
    tracking.atomic_write_text(output, page)
    if png is not None:
        from .static import write_png

        write_png(coll, png, paper_values, title)
    return output, coll


def summary(output: Path, coll: Collection) -> str:
    size = output.stat().st_size
    counts = ", ".join(f"{sum(r.status == s for r in coll.runs)} {s.replace('completed', 'finished')}"
                       for s in STATUS_MARK)
    return (f"{output} ({f'{size / 1e6:.2f} MB' if size >= 1e6 else f'{size / 1e3:.0f} kB'}): "
            f"{len(coll.runs)} runs in {len(coll.groups)} groups ({counts})")
