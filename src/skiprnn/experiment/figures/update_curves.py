#!/usr/bin/env python
"""State updates over training for the row pairs a paper table compares (Table 1: each Skip model without and with
the budget; Table 4: each Skip model at both lengths).

    python -m skiprnn.experiment.figures.update_curves table4 [--results results] [--seeds 0,1] [--out results/figure_table4_update_curves.png]

One panel per pair (e.g. Skip GRU, λ = 1e-5 at T_s = 1 ms and 0.5 ms): the validation updates of every seed's run
at every evaluation (``curve.jsonl``), in the table's measure (a count of steps, or a percentage), one colour per row
and one line style per seed, with the paper's means as horizontal lines. Evaluations that fall short of "solved" are
marked with a cross, so that a collapse shows. Where a row was trained on past the table's budget
(``PaperTable.longer``, e.g. results/table1_100k/), the longer run is drawn, since it is the same run gone on; a
dotted line marks the table's budget. A curve still falling at its last step says the budget was too short for it.
It prints each run's last evaluation.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..records import metric_key  # noqa: E402
from ..tables import paper_updates, update_measure  # noqa: E402
from ..tasks import paper_tables  # noqa: E402
from ..tracking import atomic_write_text, read_curve  # noqa: E402

COLOURS = ("tab:blue", "tab:orange")  # first and second row of a pair
STYLES = ("-", "--", ":", "-.")  # seeds in the order given


def _longest_curve(table, results: Path, row: str, seed: int) -> list[dict]:
    """The run's evaluations; where the row was trained on past the table's budget, the longer run's (the same run,
    gone on from the table's checkpoint, so its curve holds the table run's too)."""
    folders = [results / table.name]
    if table.longer and row in table.longer.rows:
        folders.append(results / table.longer.folder(table.name))
    return max((read_curve(folder / row / f"seed={seed}") for folder in folders), key=len)


def paths(table, results: Path, seeds: list[int]) -> str:
    """Each table run's path as a markdown table: where it left 100% updates, its updates at each fifth of the
    table's budget (the last evaluation at or before that step), its last and lowest evaluations and the mean of its
    last five, so that a page can quote them. Only the table's own runs, as the table counts them; the runs gone on
    past its budget are the table's section "Longer budget"."""
    measure = update_measure(table)
    runs = [(row, seed, curve) for _, *rows in table.pairs for row in rows for seed in seeds
            if (curve := read_curve(results / table.name / row / f"seed={seed}"))]
    if not runs:
        return ""
    budget = max(curve[0].get("max_steps", curve[-1]["step"]) for *_, curve in runs)  # the first leg's budget
    marks = [budget * k // 5 for k in range(1, 6)]
    labels = {row.row: row.label for row in table.rows}

    def value(r: dict) -> str:
        return f"{measure.scale * r[measure.key]:.1f}{measure.unit}"

    lines = [f"# {table.title}: each run's state updates over training", "",
             f"Written by `python -m skiprnn.experiment.figures.update_curves {table.name} --seeds "
             f"{','.join(map(str, seeds))}` from the runs' `curve.jsonl` (the figure "
             f"`figure_{table.name}_update_curves.png` draws them). Updates at a step: the last evaluation at or before "
             "it. Left 100%: the first evaluation below 100.0% (to one decimal). The table's own runs only"
             + (f"; `{table.name}.md`, section \"Longer budget\", follows the rows gone on to "
                f"{table.longer.max_steps:,} steps" if table.longer else "") + ".", "",
             "| Row | Seed | Left 100% | " + " | ".join(f"{m:,}" for m in marks)
             + " | Last (step) | Lowest (step) | Last five |",
             "|---|---|---|" + "---|" * len(marks) + "---|---|---|"]
    for row, seed, curve in runs:
        fractions = [(r["step"], r.get("val_update_fraction")) for r in curve]
        left = ("–" if any(f is None for _, f in fractions)  # a record without fractions cannot say
                else next((f"{step:,}" for step, f in fractions if round(100 * f, 1) < 100.0), "never"))
        at = [[r for r in curve if r["step"] <= m] for m in marks]
        lowest = min(curve, key=lambda r: (r[measure.key], -r["step"]))  # the latest of equal lows
        last_five = measure.scale * statistics.fmean(r[measure.key] for r in curve[-5:])
        lines.append(f"| {labels[row]} | {seed} | {left} | "
                     + " | ".join(value(b[-1]) if b and curve[-1]["step"] >= m else "–" for b, m in zip(at, marks))
                     + f" | {value(curve[-1])} ({curve[-1]['step']:,}) | {value(lowest)} ({lowest['step']:,}) | "
                     f"{last_five:.1f}{measure.unit} |")
    return "\n".join(lines) + "\n"


def plot(table, results: Path, seeds: list[int], out: Path) -> list[str]:
    """Draw the figure to ``out``; return one line per run drawn (row, seed, last step, last update count)."""
    if not table.pairs:
        raise SystemExit(f"{table.name} compares no row pairs; tables with pairs: "
                         f"{', '.join(n for n, t in paper_tables().items() if t.pairs) or 'none'}")
    paper = paper_updates(table)
    measure = update_measure(table)
    labels = {row.row: row.label for row in table.rows}
    columns = 3 if len(table.pairs) > 4 else len(table.pairs)
    grid_rows = -(-len(table.pairs) // columns)
    lines_out: list[str] = []
    fig, axes = plt.subplots(grid_rows, columns, squeeze=False, figsize=(4.6 * columns, 3.4 * grid_rows))
    for ax, (title, *rows) in zip(axes.flat, table.pairs):
        went_on = False
        for colour, row in zip(COLOURS, rows):
            suffix = labels[row].rsplit("(", 1)[-1].rstrip(")") if "(" in labels[row] else labels[row].split(", ")[-1]
            for style, seed in zip(STYLES, seeds):
                curve = _longest_curve(table, results, row, seed)
                if not curve:
                    continue
                went_on |= bool(table.longer) and curve[-1]["step"] > table.longer.from_steps
                steps = [r["step"] for r in curve]
                ax.plot(steps, [measure.scale * r[measure.key] for r in curve], style, color=colour, lw=1.1,
                        label=f"{suffix}, seed {seed}")
                short = [r for r in curve if not r.get("val_solved", True)]
                ax.plot([r["step"] for r in short], [measure.scale * r[measure.key] for r in short], "x", color=colour,
                        ms=4)
                metric = metric_key(curve[-1])
                lines_out.append(f"{row} seed {seed}: last evaluation at {steps[-1]:,} steps: "
                                 f"{measure.scale * curve[-1][measure.key]:.1f}{measure.unit} updates, "
                                 f"{metric} {curve[-1][metric]:.4g}")
            if math.isfinite(paper.get(row, math.nan)):
                ax.axhline(paper[row], color=colour, lw=4, alpha=0.2)
        if went_on:
            ax.axvline(table.longer.from_steps, color="grey", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"state updates ({measure.unit + ', ' if measure.unit else ''}validation)")
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(table.pairs):]:
        ax.set_visible(False)
    if not lines_out:
        plt.close(fig)
        raise SystemExit(f"no curve.jsonl under {results / table.name}/<row>/seed=<k>/ for seeds "
                         f"{','.join(map(str, seeds))}")
    fig.suptitle(f"{table.title}. {table.pairs_title}\n"
                 "broad faint lines: the paper's means; x: an evaluation that is not solved", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return lines_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.experiment.figures.update_curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    tables = paper_tables()
    parser.add_argument("table", choices=sorted(tables), help="which table's row pairs")
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder holding <table>/ (default results)")
    parser.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds (default 0,1,2,3; at most 4)")
    parser.add_argument("--out", type=Path, default=None,
                        help="image path (default <results>/figure_<table>_update_curves.png)")
    parser.add_argument("--paths", type=Path, default=None,
                        help="markdown table of each run's path (default <results>/<table>_update_paths.md)")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, e.g. 0,1; got {args.seeds!r}")
    if not 1 <= len(seeds) <= len(STYLES):
        parser.error(f"--seeds takes 1 to {len(STYLES)} seeds; got {len(seeds)}")
    out = args.out or args.results / f"figure_{args.table}_update_curves.png"
    for line in plot(tables[args.table], args.results, seeds, out):
        print(line)
    table_out = args.paths or args.results / f"{args.table}_update_paths.md"
    text = paths(tables[args.table], args.results, seeds)
    if text:
        atomic_write_text(table_out, text)
    print(f"wrote {out}" + (f" and {table_out}" if text else ""))


if __name__ == "__main__":
    main()
