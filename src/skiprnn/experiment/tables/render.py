"""A table's page: the main table beside the paper's numbers, its header, the CSV, and the report beside it;
written only when more than its time stamp changed, and never replaced by a table without finished runs."""
from __future__ import annotations

import csv
import io
import math
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

from .. import tracking
from ..errors import UserError
from ..numbers import leading_number
from ..records import Status
from ..tasks.base import PaperTable
from .columns import COLUMNS
from .load import asked_configs, check_against, check_columns, finished_seeds_left_out, load_run
from .sections import (
    every_run_section,
    fidelity_summary,
    longer_section,
    numerics_summary,
    overrides_summary,
    pairs_section,
    status_counts,
)


def _results_option(results: Path) -> str:
    """The --results part of the rebuild command: empty for the default folder, relative to here where possible."""
    try:
        results = Path(results).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return "" if Path(results) == Path("results") else f" --results {shlex.quote(str(results))}"


def build(table: PaperTable, results: Path, seeds: list[int], note: str = "",
          overrides: list[str] | None = None) -> tuple[str, list[dict]]:
    if isinstance(overrides, str):  # list("a=1") would quote the table's command one character at a time
        raise TypeError(f"overrides must be a list of KEY=VALUE strings, not the string {overrides!r}")
    asked = asked_configs(table, list(overrides or []))
    grid = {row.row: [check_against(load_run(results / table.name / row.row / f"seed={s}", s), asked.get(row.row))
                      for s in seeds] for row in table.rows}
    grid = {row: [check_columns(table, r) if r.status == Status.COMPLETED else r for r in runs] for row, runs in grid.items()}
    done = [r for runs in grid.values() for r in runs if r.status == Status.COMPLETED]
    commits = sorted({c for r in done for c in r.commits}) or ["–"]
    budgets = sorted({r.max_steps for r in done})
    per_row = sorted({sum(r.status == Status.COMPLETED for r in runs) for runs in grid.values()})
    left_out = finished_seeds_left_out(table, results, seeds)

    header = ["Model"]
    for _, paper, title in table.columns:
        header += [f"{title} (ours)"] + ([f"{title} (paper)"] if paper else [])
    header.append("Runs")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv_rows = []
    for row in table.rows:
        runs = [r for r in grid[row.row] if r.status == Status.COMPLETED]
        cells, record = [row.label], {"row": row.row, "model": row.label, "runs": status_counts(grid[row.row])}
        for ours, paper, _ in table.columns:
            value = COLUMNS[ours](runs)
            cells.append(value)
            record[f"{ours}"] = value
            if paper:
                cells.append(row.paper.get(paper, "–"))
                record[f"paper_{paper}"] = row.paper.get(paper, "")
        cells.append(record["runs"])
        lines.append("| " + " | ".join(cells) + " |")
        csv_rows.append(record)

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    seeds_text = ", ".join(map(str, seeds))
    finished_per_row = "–".join(map(str, (per_row[0], per_row[-1]))) if per_row[0] != per_row[-1] else str(per_row[0])
    md = [
        f"# {table.title}",
        "",
        f"> Paper caption: {table.caption}",
        "",
        f"- **Sweep:** `make reproduce-{table.name}` (`conf/table/{table.name}.yaml`; the rows, beside the paper's "
        f"numbers, in `skiprnn.experiment.tasks.{table.task}`). **Aggregated** {now} by "
        f"`python -m skiprnn.tables {table.name} --seeds {','.join(map(str, seeds))}{_results_option(results)}"
        f"{''.join(' ' + shlex.quote(o) for o in overrides or [])}`.",
        f"- **Code commit(s) of the finished runs:** {', '.join(commits)} (per run, and per leg of a run resumed "
        "across commits, in 'Every run')",
        f"- **Seeds asked for:** {seeds_text}; finished per row: {finished_per_row}. **Steps of the finished runs:** "
        f"{', '.join(f'{b:,}' for b in budgets) or '–'} steps. Finished runs: {len(done)} of {len(seeds) * len(table.rows)}.",
        *(["- **Left out by --seeds:** finished runs of seed "
           + ", ".join(f"{seed} ({n} row{'s' * (n != 1)})" for seed, n in left_out.items())] if left_out else []),
        f"- **Overrides on top of the table config:** {overrides_summary(done)}",
        f"- **Numerics** (`python -m skiprnn.verify RUN_DIR` retrains a run and compares it bit for bit): "
        f"{numerics_summary(done)}",
        *([f"- **Fidelity switches** (docs/faithfulness.md): {fidelity_summary(done)}"] if fidelity_summary(done) else []),
        *([f"- **Note:** {note}"] if note else []),
        "- Ours: mean ± std (population std) over the finished seeds of the final evaluation; a cell with one run "
        "shows that run's value alone"
        + ("; 'Last 5 evals' averages the last five evaluations of each run, to show how settled the final numbers are"
           if any(title.startswith("Last 5") for *_, title in table.columns) else "")
        + ". Only finished runs enter the statistics.",
        "",
        *lines,
        "",
        *pairs_section(table, grid),
        *every_run_section(table, grid),
        *longer_section(table, results, seeds, asked),
    ]
    return "\n".join(md), csv_rows


def paper_points(table: PaperTable, results: Path) -> dict[str, dict]:
    """Each row's point in the report's trade-off plot: the paper's update fraction, and its metric where it prints
    a number (accuracy). A count of updates becomes a fraction by the length of the row's sequences, read from one
    of its runs (updates / fraction)."""
    points = {}
    for row in table.rows:
        updates = metric = None
        for ours, paper, _ in table.columns:
            printed = row.paper.get(paper or "", "")
            if not printed:
                continue
            number = leading_number(printed)
            if ours == "update_pct":
                updates = number / 100
            elif ours.endswith("updates_steps"):
                length = _sequence_length(results / table.name / row.row)
                updates = number / length if length else None
            elif ours.endswith("accuracy") and math.isfinite(number):
                metric = number
        if updates is not None and math.isfinite(updates):
            points[row.row] = {"metric": metric, "updates": updates}
    return points


def _sequence_length(row_dir: Path) -> float | None:
    for metrics in sorted(row_dir.glob(f"seed=*/{tracking.METRICS}")):
        try:
            final = tracking.read_json(metrics)["final"]
            if final.get("val_update_fraction"):
                return final["val_updates"] / final["val_update_fraction"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def write_report(table: PaperTable, results: Path, seeds: list[int]) -> Path:
    """results/<table>.html (interactive, offline; plotly.js written once beside it, not committed) and
    results/<table>.png (the key plots, committed)."""
    from ..report import build_report

    budgets = {row: cfg["trainer"]["max_steps"] for row, cfg in asked_configs(table, []).items()
               if not cfg["trainer"].get("max_epochs")}
    return build_report([results / table.name], results / f"{table.name}.html", paper=paper_points(table, results),
                        title=f"{table.title}: runs, curves and the trade-off beside the paper", js="directory",
                        seeds=seeds, png=results / f"{table.name}.png", budgets=budgets)


_STAMP = re.compile(r"\*\*Aggregated\*\* [^*]*? by ")


class TableShrinks(UserError):
    """The rebuilt table would count fewer finished runs than the written one: it is left as it is."""


def _finished(text: str) -> int:
    """How many finished runs a written table counts ("Finished runs: N of M"); 0 when it does not say."""
    found = re.search(r"Finished runs: (\d+) of", text)
    return int(found.group(1)) if found else 0


def write(table: PaperTable, results: Path, seeds: list[int], note: str = "",
          overrides: list[str] | None = None, force: bool = False) -> tuple[Path, bool]:
    """Write the table and its CSV; returns (the table's path, whether it changed). A table that differs only in
    its time stamp is not rewritten, and one is never replaced by one that counts fewer finished runs unless
    ``force`` (TableShrinks)."""
    text, rows = build(table, results, seeds, note, overrides)
    out = results / f"{table.name}.md"
    old = out.read_text() if out.exists() else ""
    now, before = _finished(text), _finished(old)
    if now < before and not force:
        found = (f"no finished runs for seed(s) {', '.join(map(str, seeds))}" if now == 0 else
                 f"{now} finished run{'s' * (now != 1)} for seed(s) {', '.join(map(str, seeds))}")
        raise TableShrinks(f"{found} in {results / table.name}, so {out} (with {before} finished runs) is left as it "
                           f"is. Train them first (make reproduce-{table.name} SEEDS=...), pass the seeds that have "
                           "runs, or --force to write the smaller table")
    if _STAMP.sub("", old) == _STAMP.sub("", text):
        return out, False
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    results.mkdir(parents=True, exist_ok=True)
    tracking.atomic_write_texts({out: text, results / f"{table.name}.csv": buffer.getvalue()})
    return out, True
