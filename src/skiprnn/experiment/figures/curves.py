"""Learning curves of a table's runs as markdown: the metric and the state updates every N steps.

    python -m skiprnn.experiment.figures.curves results/table4 [--every 1500] [--seed 0] [--metric accuracy] [--rows '*lam1e-4*']

Reads ``<dir>/<row>/seed=<k>/curve.jsonl`` (what the trainer writes at every evaluation) and prints one table
per row: step, validation metric and validation state updates, so that a training budget can be chosen
from measured curves (and the choice checked later). Runs still training are read as far as they got.
"""
from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

from ..metrics import METRICS
from ..tracking import read_curve


def pick(curve: list[dict], every: int) -> list[dict]:
    """The first evaluation, the first at or after each multiple of ``every`` steps, and the last one."""
    rows, mark = [], 0
    for row in curve:
        if row["step"] >= mark:
            rows.append(row)
            mark = (row["step"] // every + 1) * every
    if curve and (not rows or rows[-1] is not curve[-1]):
        rows.append(curve[-1])
    return rows


def markdown(name: str, rows: list[dict], metric: str) -> str:
    spec = METRICS[f"val_{metric}"].fmt
    fmt = lambda v: format(v, spec)  # noqa: E731
    lines = [f"**{name}**", "", "| step | " + " | ".join(str(r["step"]) for r in rows) + " |",
             "|---|" + "---|" * len(rows),
             f"| val {metric} | " + " | ".join(fmt(r[f"val_{metric}"]) for r in rows) + " |",
             "| val updates | " + " | ".join(f"{r['val_updates']:.1f}" for r in rows) + " |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.experiment.figures.curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table_dir", type=Path, help="a sweep folder, e.g. results/table4")
    parser.add_argument("--every", type=int, default=1500,
                        help="steps between the evaluations shown; best a multiple of trainer.eval_every (default 1500)")
    parser.add_argument("--seed", type=int, default=0, help="which seed's runs (default 0)")
    parser.add_argument("--metric", default=None, help="mse or accuracy (default: whichever the curve has)")
    parser.add_argument("--rows", default="*", help="only the rows whose name matches this pattern (default: all)")
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in args.table_dir.glob(f"*/seed={args.seed}/curve.jsonl")
                  if fnmatch.fnmatchcase(p.parent.parent.name, args.rows))
    if not runs:
        raise SystemExit(f"no {args.table_dir}/<row>/seed={args.seed}/curve.jsonl found for rows {args.rows!r}")
    for run in runs:
        curve = read_curve(run)
        if not curve:
            continue
        metric = args.metric or next((m.short for m in METRICS.values() if m.key in curve[0]), "accuracy")
        print(markdown(run.parent.name, pick(curve, args.every), metric) + "\n")


if __name__ == "__main__":
    main()
