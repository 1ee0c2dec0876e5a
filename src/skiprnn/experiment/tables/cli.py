"""``python -m skiprnn.tables TABLE [--seeds 0,1,2,3] [--results results] [--note ...] [KEY=VALUE ...]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import numbers, tracking
from ..tasks import paper_tables
from ..tasks.base import PaperTable
from . import __doc__ as DOC
from .load import finished_seeds_left_out
from .render import TableShrinks, write, write_report


def parse_seeds(parser: argparse.ArgumentParser, text: str | None, table: PaperTable) -> list[int]:
    """``--seeds 0,1,2``: distinct integers; the table's own seeds when not given."""
    if not text:
        return list(table.seeds)
    try:
        return numbers.parse_seeds(text)
    except ValueError as error:
        parser.error(f"--seeds: {error}")


def parse_table_args(parser: argparse.ArgumentParser, argv: list[str] | None, tables: dict[str, PaperTable],
                     unknown: str, first: str) -> tuple[argparse.Namespace, PaperTable, list[int]]:
    """The arguments of a command over one table's runs (``table``, ``--seeds``, ``--results``): the table, its
    seeds, and a folder that holds its runs; ``unknown`` ({name}: the name given) and ``first`` ({table}) say what to do
    instead."""
    args = parser.parse_intermixed_args(argv)
    if args.table not in tables:
        parser.error(unknown.format(name=repr(args.table)))
    table = tables[args.table]
    seeds = parse_seeds(parser, args.seeds, table)
    if not (args.results / table.name).is_dir():
        parser.error(f"no runs in {args.results / table.name}: {first.format(table=table.name)}, or point --results "
                     "at the folder that holds them")
    return args, table, seeds


def main(argv: list[str] | None = None) -> int:
    tables = paper_tables()
    parser = argparse.ArgumentParser(prog="python -m skiprnn.tables", description=DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help=f"one of {', '.join(tables)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds expected per row (default: the paper's four)")
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--note", default=None,
                        help="a sentence for the table's header, e.g. why the run is reduced; kept in "
                             "<results>/<table>_note.md for later rebuilds (default: that file's text)")
    parser.add_argument("--no-report", action="store_true", help="skip the interactive HTML report and its PNG")
    parser.add_argument("--force", action="store_true",
                        help="write the table even when it counts fewer finished runs than the one written")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="the Hydra overrides the table's runs were asked with (make passes STEPS, EPOCHS and "
                             "ARGS): a run of another config is listed as a conflict, not counted")
    args, table, seeds = parse_table_args(parser, argv, tables, "unknown table {name}; choose one of " + ", ".join(tables),
                                          "train them first (make reproduce-{table})")
    note_file = args.results / f"{table.name}_note.md"
    note = args.note.strip() if args.note is not None else (note_file.read_text().strip() if note_file.exists() else "")
    try:
        out, changed = write(table, args.results, seeds, note, args.overrides, force=args.force)
    except TableShrinks as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.note is not None:  # kept only once the table it belongs to is written
        if note:
            tracking.atomic_write_text(note_file, note + "\n")
        else:
            note_file.unlink(missing_ok=True)
    left_out = finished_seeds_left_out(table, args.results, seeds)
    if left_out:
        print(f"note: --seeds {args.seeds} leaves out finished runs of seed(s) {', '.join(map(str, left_out))}; "
              f"pass them in --seeds to include them", file=sys.stderr)
    print(f"wrote {out}" if changed else f"{out} is up to date (only its time stamp would change): left as it is")
    if not args.no_report:
        print(f"wrote {write_report(table, args.results, seeds)} (open it in a browser) and {table.name}.png")
    return 0
