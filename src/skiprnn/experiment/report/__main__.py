"""Command line: ``python -m skiprnn.experiment.report FOLDER [FOLDER ...] -o report.html``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import numbers

EPILOG = """\
A run directory is any folder below FOLDER holding metrics.json (finished), curve.jsonl (evaluations so far),
failed.json (failed) or .hydra/config.yaml (started). Runs whose configs are equal but for the seed and
plumbing keys (trainer.max_steps, trainer.device, logger, threads, ...) form a group, labelled by its row
name when rows are unique (a row name that several groups share gets the config key that tells them apart,
e.g. "gru (name=mnist)"), else by the config keys that differ. Given several folders, each keeps its own
groups. Unreadable files never stop the report: their runs are listed as unreadable.

The page needs no network and no server: open it in a browser.

--paper FILE is JSON mapping a group label or row name to the paper's values:
  {"skip_gru_lam1e-4": {"metric": 0.99, "updates": 0.52}, "gru": {"metric": null, "updates": 1.0}}
(metric: MSE or accuracy as a fraction, or null when the paper prints none; updates: fraction of steps).

examples:
  python -m skiprnn.experiment.report results/table4 -o table4.html
  python -m skiprnn.experiment.report results/table1 results/pre-fixes/table1 -o t1.html --title "Table 1"
  python -m skiprnn.experiment.report results/table4 -o reports/table4.html --js directory --png reports/table4.png
"""


def parse_seeds(text: str) -> list[int]:
    try:
        return numbers.parse_seeds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skiprnn.experiment.report",
        description="Write an offline, interactive HTML report (plotly) of the training runs below FOLDERs: "
                    "learning curves of the task metric and the update fraction (each seed thin, the group mean "
                    "thick), the metric/update-fraction trade-off with the paper's values, and a table of the "
                    "groups with finished, unfinished, failed, unreadable and missing runs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", metavar="FOLDER", help="folders to search for run directories")
    parser.add_argument("-o", "--output", default="report.html", metavar="HTML",
                        help="the HTML file to write (default: %(default)s)")
    parser.add_argument("--paper", metavar="JSON", help="the paper's values per group or row (format below)")
    parser.add_argument("--title", help="page title (default: the folders)")
    parser.add_argument("--js", choices=("inline", "directory"), default="inline",
                        help="inline: plotly.js inside the page, one self-contained file of ~5 MB (default); "
                             "directory: plotly.min.js written once beside the HTML, so the reports of a folder "
                             "share it and each page stays small")
    parser.add_argument("--png", metavar="PATH", help="also write a static PNG of the curves and the trade-off "
                                                     "(matplotlib)")
    parser.add_argument("--seeds", type=parse_seeds, metavar="0,1,2,3",
                        help="seeds every group should have, to mark the missing ones (default: every seed seen "
                             "in the same folder)")
    args = parser.parse_args(argv)

    for folder in args.folders:
        if not Path(folder).is_dir():
            parser.error(f"not a folder: {folder}")
    from .page import make_report, summary

    try:
        out, coll = make_report(args.folders, args.output, paper=args.paper, title=args.title, js=args.js,
                                seeds=args.seeds, png=args.png)
    except (OSError, ValueError) as error:  # a bad --paper file, an unwritable output
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not coll.runs:
        print(f"warning: no run directory found below {', '.join(args.folders)}", file=sys.stderr)
    if args.paper:
        from .series import load_paper

        known = {g.label for g in coll.groups} | {row for g in coll.groups for row in g.rows}
        unused = sorted(set(load_paper(args.paper)) - known)
        if unused:
            print(f"warning: {args.paper} names {', '.join(map(repr, unused))}, which no group or row of these runs "
                  f"has (they are: {', '.join(sorted(known)) or 'none'}); those values are not shown", file=sys.stderr)
    print(f"wrote {summary(out, coll)}", file=sys.stderr)
    if args.png:
        print(f"wrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
