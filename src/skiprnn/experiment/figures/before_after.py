"""The same rows of a table trained two ways, side by side: the fraction of state updates over training.

    python -m skiprnn.experiment.figures.before_after results/pre-fixes/table1 results/table1 \\
        --rows skip_lstm_lam0,skip_gru_lam0,skip_lstm_lam1e-5,skip_gru_lam1e-5 --labels "torch W_p","Glorot W_p" \\
        [--seed 0] [--every 5000] [--out results/table1_fidelity.png]

Reads each folder's <row>/seed=<k>/curve.jsonl (runs still training are drawn as far as they got), draws one panel
per row with both curves and the paper's mean where the table prints one, and prints the update fraction at every
``--every`` steps as a markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..numbers import leading_number
from ..tasks import paper_tables
from ..tracking import read_curve


def at_steps(curve: list[dict], every: int) -> dict[int, float]:
    """The update fraction of the last evaluation at or before each multiple of ``every`` (and the last one)."""
    out = {}
    if not curve:
        return out
    for mark in range(every, curve[-1]["step"] + 1, every):
        before = [r for r in curve if r["step"] <= mark]
        if before:
            out[mark] = before[-1]["val_update_fraction"]
    out[curve[-1]["step"]] = curve[-1]["val_update_fraction"]
    return dict(sorted(out.items()))


def paper_fraction(table_name: str, row: str) -> float | None:
    table = paper_tables().get(table_name)
    for r in table.rows if table else ():
        printed = r.paper.get("updates", "")
        if r.row == row and "%" in printed:
            return leading_number(printed) / 100
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.experiment.figures.before_after", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="a table's folder of runs, e.g. results/pre-fixes/table1")
    parser.add_argument("after", type=Path, help="the same table trained the other way, e.g. results/table1")
    parser.add_argument("--rows", required=True, help="comma-separated row names")
    parser.add_argument("--labels", default="before,after", help="the two legends, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=5000, help="steps between the printed values")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: none, print only)")
    args = parser.parse_args(argv)
    labels = args.labels.split(",")
    if len(labels) != 2:
        parser.error(f"--labels takes two names, comma-separated; got {args.labels!r}")
    rows = args.rows.split(",")
    curves = {(side, row): read_curve(folder / row / f"seed={args.seed}")
              for side, folder in (("before", args.before), ("after", args.after)) for row in rows}
    missing = [f"{folder}/{row}/seed={args.seed}" for (side, row), c in curves.items() if not c
               for folder in [args.before if side == "before" else args.after]]
    if len(missing) == len(curves):
        parser.error(f"no curve.jsonl found in any of: {', '.join(missing)}")

    steps = sorted({s for c in curves.values() for s in at_steps(c, args.every)})
    print(f"| row | run | {' | '.join(f'{s:,}' for s in steps)} |")
    print("|---|---|" + "---|" * len(steps))
    for row in rows:
        for side, label in zip(("before", "after"), labels):
            values = at_steps(curves[side, row], args.every)
            print(f"| {row} | {label} | " + " | ".join(f"{100 * values[s]:.1f}%" if s in values else "–" for s in steps)
                  + " |")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = min(2, len(rows))
        nrows = (len(rows) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 3.4 * nrows), squeeze=False, sharey=True)
        table = args.after.name
        for ax, row in zip(axes.flat, rows):
            for side, label, style in (("before", labels[0], "--"), ("after", labels[1], "-")):
                c = curves[side, row]
                ax.plot([r["step"] for r in c], [100 * r["val_update_fraction"] for r in c], style, label=label)
            paper = paper_fraction(table, row)
            if paper is not None:
                ax.axhline(100 * paper, color="grey", lw=1, ls=":", label=f"paper mean ({100 * paper:.1f}%)")
            ax.set_title(f"{row}, seed {args.seed}")
            ax.set_xlabel("training step")
            ax.set_ylabel("state updates (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(rows):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
