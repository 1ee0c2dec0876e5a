"""Aggregate run directories into a results table beside the paper's numbers.

    python -m skiprnn.tables table1 [--seeds 0,1,2,3] [--results results]

reads results/table1/<row>/seed=<k>/{metrics.json, failed.json, curve.jsonl} and writes results/table1.md
and results/table1.csv. Missing, failed and unfinished runs of the seeds asked for are listed as such, never
dropped; finished runs of other seeds are counted in the header (and on stderr) as left out.
``--note "..."`` adds a sentence to the table's header and keeps it in results/table1_note.md, so later
rebuilds (``make table1``) carry it; edit that file to change it, or pass ``--note ""`` to remove it.

The package, by concern: ``load`` (which runs, each as the table shows it), ``columns`` (each column's formula),
``sections`` (pairs, every run, the longer budget, the header's summaries), ``render`` (the page, the CSV, safe
writes) and ``cli``.
"""
from .cli import main, parse_seeds
from .columns import COLUMNS, UpdateMeasure, paper_updates, update_measure
from .load import asked_configs, check_against, load_run
from .render import TableShrinks, build, paper_points, write, write_report

__all__ = ["COLUMNS", "TableShrinks", "UpdateMeasure", "asked_configs", "build", "check_against", "load_run", "main",
           "paper_points", "paper_updates", "parse_seeds", "update_measure", "write", "write_report"]
