"""Train a table's rows on past the table's budget (``PaperTable.longer``), each from its finished run.

    python -m skiprnn.longer table1 [--seeds 0,1,2,3] [--results results] [KEY=VALUE ...]

For each row and seed it copies the checkpoint of the finished run ``results/table1/<row>/seed=<k>/`` (at the
table's budget) into ``results/table1_100k/<row>/seed=<k>/``, where the run resumes and trains on to the longer
budget; the table's own runs stay untouched. A seed without such a checkpoint trains there from step 0, first to the
table's budget and then on: the data, the initialisation and the evaluation batches are a function of the seed and
of the evaluations made, so it is the same run at twice the cost. An unfinished table run (still training, or
stopped) is refused: finish it first. The run's record lists its legs (the commit that trained the first 50,000
steps and the one that went on). ``make table1`` then shows the section "Longer budget" beside the table.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from . import records, tracking
from .identity import BUDGET
from .tables import asked_configs
from .tables.cli import parse_table_args
from .tasks import paper_tables
from .tasks.base import PaperTable

FROM_ZERO = "from step 0"


class TableRunUnfinished(ValueError):
    """A table run the longer run should go on from is unfinished."""


class Start(NamedTuple):
    """Where a longer run starts, in words, and whether it needs the first leg (to the table's budget) first."""

    text: str
    first_leg: bool = False


def start_from_finished_runs(table: PaperTable, results: Path, seeds: list[int],
                             overrides: list[str] = ()) -> dict[tuple[str, int], Start]:
    """Copy each finished run's checkpoint where its longer run will resume; returns, per (row, seed), where that run
    will start: "from step N (the table's run)", "goes on from its own checkpoint at step N", "finished" or "from
    step 0 ...". Raises TableRunUnfinished, before copying anything, if a table run it would start from is
    unfinished."""
    from .trainer import differences, fingerprint

    longer = table.longer
    asked = asked_configs(table, list(overrides), longer.rows)
    plan, unfinished = {}, []
    for row in longer.rows:
        for seed in seeds:
            source = results / table.name / row / f"seed={seed}"
            target = results / longer.folder(table.name) / row / f"seed={seed}"
            done = records.read_run(target)
            if done.status == "completed" and done.step >= longer.max_steps:
                plan[row, seed] = Start("finished"), None
            elif (target / tracking.CHECKPOINT).exists() or (target / tracking.PREVIOUS_CHECKPOINT).exists():
                first = done.step < longer.from_steps  # stopped in its own first leg
                plan[row, seed] = Start(f"goes on from its own checkpoint at step {done.step:,}"
                                        + (f", first to {longer.from_steps:,}" if first else ""), first), None
            elif (state := _finished_at(source, longer.from_steps)) is None:
                record = records.read_run(source)
                if source.is_dir() and record.status == "unfinished" and record.step < longer.from_steps:
                    unfinished.append(f"{source} (step {record.step:,} of {longer.from_steps:,})")
                plan[row, seed] = Start(FROM_ZERO, True), None
            elif differ := differences(state["fingerprint"], fingerprint({**asked[row], "seed": seed})):
                plan[row, seed] = Start(f"{FROM_ZERO} (the table's run differs in {', '.join(differ)})", True), None
            else:
                plan[row, seed] = Start(f"from step {longer.from_steps:,} (the table's run)"), source / tracking.CHECKPOINT
    if unfinished:
        raise TableRunUnfinished(
            f"these table runs are unfinished; finish them first (make reproduce-{table.name}) or leave their seeds "
            "out with --seeds: " + "; ".join(unfinished))
    for (row, seed), (_, checkpoint) in plan.items():
        if checkpoint is not None:
            _copy(checkpoint, results / longer.folder(table.name) / row / f"seed={seed}" / tracking.CHECKPOINT)
    return {key: start for key, (start, _) in plan.items()}


def _finished_at(run: Path, steps: int) -> dict | None:
    """The checkpoint of a run that finished at exactly ``steps``, or None."""
    import torch

    record = records.read_run(run)
    if record.status != "completed" or record.step != steps or not (run / tracking.CHECKPOINT).exists():
        return None
    try:
        state = torch.load(run / tracking.CHECKPOINT, map_location="cpu", weights_only=False)
    except Exception:  # a damaged checkpoint: the longer run trains from step 0 instead
        return None
    return state if state.get("step") == steps and "fingerprint" in state else None


def _copy(source: Path, target: Path) -> None:
    """Copy a checkpoint so that ``target`` is never half-written, even with two copies at once."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tracking.temp_beside(target, suffix=".copying")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def hydra_quoted(text: str) -> str:
    """``text`` as a double-quoted Hydra override value: only a quote, and backslashes right before a quote or
    the closing quote, are escaped (Hydra keeps other backslashes as they are)."""
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
    return '"' + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + '"'


def sweep_args(table: PaperTable, results: Path, seeds: list[int], overrides: list[str],
               max_steps: int | None = None, rows: tuple[str, ...] | None = None) -> list[str]:
    """The arguments of ``python -m skiprnn.train`` that train the longer runs (of ``rows``, default all) to
    ``max_steps`` (default the longer budget)."""
    longer = table.longer
    return ["-m", f"table={table.name}", f"experiment={','.join(f'{table.name}/{row}' for row in rows or longer.rows)}",
            f"seed={','.join(map(str, seeds))}", f"trainer.max_steps={max_steps or longer.max_steps}",
            f"hydra.sweep.dir={hydra_quoted(str(results / longer.folder(table.name)))}", *overrides]


def sweeps(table: PaperTable, results: Path, seeds: list[int], overrides: list[str],
           starts: dict[tuple[str, int], Start]) -> list[list[str]]:
    """The train sweeps, in order, that take these runs to the longer budget. A run below the table's budget (from
    step 0, or stopped there) first trains to it, in a sweep of its own row and such seeds, so that it evaluates at
    that step and then at the same steps as a run that goes on from the table's checkpoint (evaluations come every
    ``eval_every`` steps and at a leg's last step, and each evaluation's batches follow from how many came before)."""
    longer = table.longer
    first = [sweep_args(table, results, behind, overrides, longer.from_steps, (row,)) for row in longer.rows
             if (behind := [seed for seed in seeds if starts[row, seed].first_leg])]
    return [*first, sweep_args(table, results, seeds, overrides)]


def main(argv: list[str] | None = None) -> int:
    tables = {name: t for name, t in paper_tables().items() if t.longer}
    parser = argparse.ArgumentParser(prog="python -m skiprnn.longer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help=f"one of {', '.join(tables)} (the tables that declare a longer budget)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the paper's four)")
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more Hydra overrides for the runs")
    args, table, seeds = parse_table_args(
        parser, argv, tables, "no longer budget is declared for {name}; the tables with one are " + ", ".join(tables),
        "the longer runs go on from the table's (make reproduce-{table})")
    budget = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+~") in BUDGET]  # the longer budget sets them
    if budget:
        parser.error(f"{', '.join(budget)}: the longer budget sets {' and '.join(BUDGET)} itself "
                     f"({table.longer.from_steps:,} to {table.longer.max_steps:,} steps, in {table.name}'s declaration)")
    try:
        starts = start_from_finished_runs(table, args.results, seeds, args.overrides)
    except TableRunUnfinished as error:
        parser.error(str(error))
    for (row, seed), start in starts.items():
        print(f"{row} seed={seed}: {start.text}", flush=True)
    for sweep in sweeps(table, args.results, seeds, args.overrides, starts):
        print(f"python -m skiprnn.train {' '.join(sweep)}", flush=True)
        if code := subprocess.run([sys.executable, "-m", "skiprnn.train", *sweep]).returncode:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
