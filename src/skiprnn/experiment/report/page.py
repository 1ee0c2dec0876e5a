"""Build the report: plotly figures and tables in one HTML page that works offline, and an optional PNG.

    build_report(["results/table4"], "report.html", paper={"gru_ts1": {"metric": 1.0, "updates": 1.0}})

The page never loads anything from the network: plotly.js is written into the page (``js="inline"``, one
self-contained file) or once beside it as ``plotly.min.js`` (``js="directory"``, shared by every report in that
folder, so each page stays small).
"""
from __future__ import annotations

import html
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from .. import tracking
from .figures import curves_figure, figure_json, tradeoff_figure
from .html_tables import groups_table, runs_table
from .runs import Collection, collect, format_value
from .series import (
    Paper,
    load_paper,
    paper_for,
)
from .text import STATUS_MARK

PLOTLY_FILE = "plotly.min.js"
JS_MODES = ("inline", "directory")


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
        "reset; click a legend entry or a checkbox in the table to hide or show a group in every plot. The search box "
        "keeps the runs (and groups) whose config, folder, seed or status hold every word typed, in the tables and "
        "the plots.</p>",
        '<p class="controls"><button id="show-all" type="button">show all groups</button>'
        '<button id="hide-all" type="button">hide all groups</button>'
        '<input id="filter" type="search" size="60" aria-label="find runs" placeholder="find runs: any config value, '
        'folder, seed or status, e.g. lam=1e-05 seed=2"> <span id="filter-count" class="help"></span></p>',
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
