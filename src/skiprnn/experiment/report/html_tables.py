"""The report's HTML tables: one row per group (finished, unfinished, failed, unreadable and missing runs, mean ± std)
and one per run."""
from __future__ import annotations

import html
from functools import partial

from ..identity import flatten
from ..numbers import finite, mean_std
from ..records import UPDATES
from .runs import Collection, format_value
from .series import (
    METRIC_NAMES,
    color,
    group_stats,
    paper_for,
)
from .text import STATUS_MARK, fmt_metric, fmt_updates, progress_text, seed_ranges


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
                                  "; ".join(f"seed {r.seed}: step {progress_text(r)}" for r in unfinished)))
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
            cells.append(f'<td class="warn wrap" title="the means of this row average runs of different lengths">'
                         f'mixed budgets: {html.escape("; ".join(f"{x:,}" for x in steps))}</td>')
        else:
            cells.append(f'<td class="num">{html.escape("; ".join(f"{x:,}" for x in steps) or "–")}</td>')
        commits = sorted({leg["commit"] for r in g.runs for leg in r.legs})
        shown = commits[0][:12] if len(commits) == 1 else f"{len(commits)} commits" if commits else "–"
        cells.append(f'<td class="mono label" title="{html.escape(", ".join(commits))}">{html.escape(shown)}</td>')
        words = [g.label, *(f"{k}={format_value(v)}" for k, v in settings.items()), *(f"seed={x}" for x in seeds)]
        out.append(f'<tr data-group="g{g.index}" data-search="{_search_text(words)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _search_text(words) -> str:
    """What the filter box matches a row against: its words, lower-case, escaped for an attribute."""
    return html.escape(" ".join(str(w) for w in words).lower(), quote=True)


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
                     f'<td class="num">{html.escape(progress_text(r))}</td>',
                     f'<td class="num">{html.escape(fmt_metric(metric, finite(r.final.get(metric)) if metric else None))}</td>',
                     f'<td class="num">{html.escape(fmt_updates(finite(r.final.get(UPDATES))))}</td>',
                     f'<td class="mono">{html.escape(r.commit or "–")}</td>',
                     f'<td class="err">{html.escape(" | ".join(notes))}</td>']
            words = [g.label, r.display, f"seed={r.seed}", r.status, r.error,
                     *(f"{k}={format_value(v)}" for k, v in flatten(r.config or {}).items())]
            out.append(f'<tr data-group="g{g.index}" data-search="{_search_text(words)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
