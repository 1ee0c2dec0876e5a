"""The tables' reading of the paper's printed numbers."""
import json
from pathlib import Path

import pytest

from skiprnn.experiment import tables, tracking
from skiprnn.experiment.records import RunResult, Status
from skiprnn.experiment.tables import render
from skiprnn.experiment.tables.sections import pairs_section, still_falling
from skiprnn.experiment.tasks.adding import TABLE1
from skiprnn.experiment.tasks.frequency import TABLE4
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
    assert render._results_option(tmp_path / "results") == ""  # the default folder, named from anywhere
    assert render._results_option(Path("runs/with space")) == " --results 'runs/with space'"


def test_the_pairs_section_compares_seeds_finished_in_both_rows_in_the_tables_measure():
    """Table 1 prints updates as a percentage of the steps and Table 4 as a count: each pair is stated in its table's
    measure, beside the paper's, and only over the seeds finished in both rows of the pair."""
    def run(seed: int, fraction: float, length: int, status: str = "completed") -> RunResult:
        final = {"val_update_fraction": fraction, "stable_update_fraction": fraction + 0.01,
                 "val_updates": length * fraction, "stable_updates": length * (fraction + 0.01)}
        return RunResult(Path(f"seed={seed}"), status=Status(status), seed=seed, step=50_000, max_steps=50_000,
                         final=final)

    grid = {row.row: [] for row in TABLE1.rows}
    grid["skip_lstm_lam0"] = [run(0, 0.9, 50), run(1, 1.0, 50)]
    grid["skip_lstm_lam1e-5"] = [run(0, 0.54, 50), run(1, 0.5, 50, "unfinished")]  # seed 1 is not compared
    lines = pairs_section(TABLE1, grid)
    assert lines[:4] == [
        "## State updates without and with the budget (λ = 0 → 1e-5)", "",
        "| Model | Updates (ours, %) | Last 5 evals (ours) | Ratio per seed (ours) | Updates (paper) | Steps (ours) |",
        "|---|---|---|---|---|---|"]
    assert lines[4] == "| Skip LSTM | 90.0 → 54.0 (×0.60) | 91.0 → 55.0 (×0.60) | 0: ×0.60 | 81.1 → 53.9 (×0.66) | 50,000 |"
    assert lines[5] == "| Skip GRU | – | – | – | 97.9 → 50.7 (×0.52) | – |"

    grid = {row.row: [] for row in TABLE4.rows}
    grid["skip_lstm_lam0_ts1"] = [run(0, 0.5, 100)]
    grid["skip_lstm_lam0_ts0.5"] = [run(0, 0.5, 200)]
    lines = pairs_section(TABLE4, grid)
    assert lines[2].startswith("| Model | Updates (ours) |")
    assert lines[4] == "| Skip LSTM, λ = 0 | 50.0 → 100.0 (×2.00) | 51.0 → 102.0 (×2.00) | 0: ×2.00 | 55.5 → 147.9 (×2.66) | 50,000 |"


def test_a_run_lowest_at_its_end_because_it_collapsed_is_not_counted_as_still_falling():
    """The longer budget's "still falling" counts runs lowest in their last 10% of steps that still solve the task;
    one whose updates fell because the task was lost (the budget won) is named apart."""
    def run(seed: int, fractions: list[float], solved: bool) -> RunResult:
        curve = [{"step": 10 * (i + 1), "val_update_fraction": f} for i, f in enumerate(fractions)]
        return RunResult(Path(f"seed={seed}"), status=Status.COMPLETED, seed=seed, step=100, max_steps=100,
                         final={"val_solved": solved}, curve=curve)

    falling = run(0, [0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4], solved=True)  # lowest at step 100
    settled = run(1, [0.9, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], solved=True)  # lowest at step 20
    collapsed = run(2, [0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.02], solved=False)
    assert still_falling([falling, settled], tail=90) == "1 of 2 runs"
    assert still_falling([falling, settled, collapsed], tail=90) == "1 of 3 runs; 1 more lowest there but unsolved"
    assert still_falling([], tail=90) == "–"


def test_a_table_is_never_replaced_by_an_empty_one_nor_rewritten_for_its_time_stamp(tmp_path, capsys):
    from skiprnn.experiment.tables import main

    (tmp_path / "table1").mkdir()
    assert main(["table1", "--seeds", "7", "--results", str(tmp_path), "--no-report"]) == 0  # nothing there yet
    table = tmp_path / "table1.md"
    first = table.read_text()
    assert "Finished runs: 0 of 10" in first
    stamp = table.stat().st_mtime_ns
    assert main(["table1", "--seeds", "7", "--results", str(tmp_path), "--no-report"]) == 0
    assert table.stat().st_mtime_ns == stamp and "up to date" in capsys.readouterr().out
    kept = first.replace("Finished runs: 0 of 10", "Finished runs: 3 of 10")  # as a committed table with runs
    table.write_text(kept)
    assert main(["table1", "--seeds", "7", "--results", str(tmp_path), "--no-report"]) == 1
    assert table.read_text() == kept
    assert "no finished runs for seed(s) 7" in capsys.readouterr().err
    assert main(["table1", "--seeds", "7", "--results", str(tmp_path), "--no-report", "--force"]) == 0  # asked for
    assert "Finished runs: 0 of 10" in table.read_text()


def test_every_run_names_its_numerics_and_machine_per_leg(tmp_path):
    """The mode and machine of each leg reach the table through the run's record (records keeps each leg's
    environment), and a record made before the modes existed reads as fast on an unrecorded machine."""
    import json

    from skiprnn.experiment import records
    env = {"numerics": "reproducible", "cpu": "Some CPU", "threads": {"kernels": 1, "torch": 1}}
    legs = [{"commit": "a", "from_step": 0, "environment": env},
            {"commit": "b", "from_step": 300, "environment": {**env, "threads": {"kernels": 2, "torch": 1}}}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "step": 600, "legs": legs, "final": {},
                                                  "config": {"seed": 0}}))
    assert records.read_run(run).legs[1]["environment"]["threads"]["kernels"] == 2
    record = records.read_run(run)
    assert (record.numerics, record.where) == ("reproducible", "reproducible, Some CPU, 1 thread(s) → "
                                                               "reproducible, Some CPU, 2 thread(s)")
    old = records.RunResult(run, legs=[{"commit": "x", "from_step": 0}])
    assert (old.numerics, old.where) == ("fast", "fast, machine not recorded")
