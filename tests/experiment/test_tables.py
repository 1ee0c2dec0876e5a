"""The tables' reading of the paper's printed numbers."""
import json
from pathlib import Path

import pytest

from skiprnn.experiment import tables, tracking
from skiprnn.experiment.tasks.adding import TABLE1
from skiprnn.experiment.tasks.mnist import TABLE2


def test_the_reports_paper_points_read_printed_percentages_and_counts(tmp_path):
    """Table 1 prints update percentages ("81.1% ± 3.6%") and no MSE; Table 2 prints update counts and accuracies,
    which become fractions by the length of the row's sequences, read from one of its runs."""
    points = tables.paper_points(TABLE1, tmp_path)
    assert set(points) == {row.row for row in TABLE1.rows}
    assert points["skip_lstm_lam0"] == {"metric": None, "updates": pytest.approx(0.811)}
    assert points["gru_pskip0.02"]["updates"] == pytest.approx(0.98)
    assert points["lstm"]["updates"] == pytest.approx(1.0)

    assert tables.paper_points(TABLE2, tmp_path) == {}  # no run yet says how long a sequence is
    run = tmp_path / "table2" / "lstm_pskip0.5" / "seed=0"
    run.mkdir(parents=True)
    tracking.write_json(run / tracking.METRICS, {"final": {"val_updates": 392.0, "val_update_fraction": 0.5}})
    point = tables.paper_points(TABLE2, tmp_path)["lstm_pskip0.5"]
    assert point == {"metric": pytest.approx(0.893), "updates": pytest.approx(392.03 / 784)}
    assert json.dumps(point)  # the HTML report embeds it


def test_the_rebuild_command_in_a_tables_header_names_its_results_folder(tmp_path, monkeypatch):
    """A table built from another folder must say so in its rebuild command, or rerunning the command as printed
    would rebuild results/ instead."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "pre-fixes" / "table1").mkdir(parents=True)
    other, _ = tables.build(TABLE1, Path("results/pre-fixes"), [0], overrides=["model.gate_init=torch"])
    assert "`python -m skiprnn.tables table1 --seeds 0 --results results/pre-fixes model.gate_init=torch`" in other
    assert tables._results_option(tmp_path / "results") == ""  # the default folder, named from anywhere
    assert tables._results_option(Path("runs/with space")) == " --results 'runs/with space'"
