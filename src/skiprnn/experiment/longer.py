"""Train a table's rows on past the table's budget (``PaperTable.longer``), each from its finished run.

    python -m skiprnn.longer table1 [--seeds 0,1,2,3] [--results results] [KEY=VALUE ...]

For each row and seed it copies the checkpoint of the finished run ``results/table1/<row>/seed=<k>/`` (at the
table's budget) into ``results/table1_100k/<row>/seed=<k>/``, where the run resumes and trains on to the longer
budget; the table's own runs stay untouched. A seed without such a checkpoint trains there from step 0: the data and
the initialisation are a function of the seed, so it is the same run at twice the cost. The run's record lists both
legs (the commit that trained the first 50,000 steps and the one that went on). ``make table1`` then shows the
section "Longer budget" beside the table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import records, tracking
from .tables import parse_seeds
from .tasks import paper_tables
from .tasks.base import PaperTable


def start_from_finished_runs(table: PaperTable, results: Path, seeds: list[int]) -> dict[tuple[str, int], str]:
    """Copy each finished run's checkpoint where its longer run will resume; returns, per (row, seed), where that run
    will start: "from step N (the table's run)", "goes on from its own checkpoint", "finished" or "from step 0"."""
    longer = table.longer
    out = {}
    for row in longer.rows:
        for seed in seeds:
            source = results / table.name / row / f"seed={seed}"
            target = results / longer.folder(table.name) / row / f"seed={seed}"
            if records.read_run(target).status == "completed":
                out[row, seed] = "finished"
            elif (target / tracking.CHECKPOINT).exists() or (target / tracking.PREVIOUS_CHECKPOINT).exists():
                out[row, seed] = "goes on from its own checkpoint"
            elif _finished_at(source, longer.from_steps):
                target.mkdir(parents=True, exist_ok=True)
                partial = target / f".{tracking.CHECKPOINT}.copying"
                shutil.copyfile(source / tracking.CHECKPOINT, partial)
                os.replace(partial, target / tracking.CHECKPOINT)  # never a half-copied checkpoint to resume from
                out[row, seed] = f"from step {longer.from_steps:,} (the table's run)"
            else:
                out[row, seed] = "from step 0"
    return out


def _finished_at(run: Path, steps: int) -> bool:
    """The run finished at exactly ``steps`` and its checkpoint holds that step."""
    import torch

    record = records.read_run(run)
    if record.status != "completed" or record.step != steps or not (run / tracking.CHECKPOINT).exists():
        return False
    try:
        return torch.load(run / tracking.CHECKPOINT, map_location="cpu", weights_only=False)["step"] == steps
    except Exception:  # a damaged checkpoint: the longer run trains from step 0 instead
        return False


def sweep_args(table: PaperTable, results: Path, seeds: list[int], overrides: list[str]) -> list[str]:
    """The arguments of ``python -m skiprnn.train`` that train the longer runs."""
    longer = table.longer
    folder = str(results / longer.folder(table.name)).replace("\\", "\\\\").replace('"', '\\"')
    return ["-m", f"table={table.name}", f"experiment={','.join(f'{table.name}/{row}' for row in longer.rows)}",
            f"seed={','.join(map(str, seeds))}", f"trainer.max_steps={longer.max_steps}",
            f'hydra.sweep.dir="{folder}"', *overrides]


def main(argv: list[str] | None = None) -> int:
    tables = {name: t for name, t in paper_tables().items() if t.longer}
    parser = argparse.ArgumentParser(prog="python -m skiprnn.longer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help=f"one of {', '.join(tables)} (the tables that declare a longer budget)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the paper's four)")
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more Hydra overrides for the runs")
    args = parser.parse_intermixed_args(argv)
    if args.table not in tables:
        parser.error(f"no longer budget is declared for {args.table!r}; the tables with one are {', '.join(tables)}")
    table = tables[args.table]
    seeds = parse_seeds(parser, args.seeds, table)
    for (row, seed), start in start_from_finished_runs(table, args.results, seeds).items():
        print(f"{row} seed={seed}: {start}", flush=True)
    command = [sys.executable, "-m", "skiprnn.train", *sweep_args(table, args.results, seeds, args.overrides)]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
