"""Offline, interactive HTML report of training runs (plotly; no server, no network).

    python -m skiprnn.experiment.report results/table4 -o table4.html [--paper paper.json] [--js directory]

or from Python::

    from skiprnn.experiment.report import build_report
    build_report(["results/table4"], "table4.html", paper={"gru_ts1": {"metric": 1.0, "updates": 1.0}})

Reads run directories through skiprnn.experiment.records, as the tables do.
"""
from ..records import RunResult, read_run
from .page import build_report, make_report
from .runs import Collection, Group, collect, find_runs
from .series import load_paper

__all__ = ["build_report", "make_report", "load_paper", "collect", "find_runs", "read_run", "Collection", "Group",
           "RunResult"]
