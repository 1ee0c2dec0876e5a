"""skiprnn.experiment.figures.update_curves: it draws every run it finds, reports each run's last evaluation, and refuses
what it cannot draw with a message that says why."""
import json
from pathlib import Path

import pytest

from skiprnn.experiment.figures import update_curves as plot_update_curves


def _curve(results: Path, row: str, seed: int, updates: list[float]) -> None:
    run = results / "table4" / row / f"seed={seed}"
    run.mkdir(parents=True)
    rows = [{"step": 300 * (i + 1), "val_accuracy": 0.5 if i == 0 else 0.995, "val_solved": i > 0, "val_updates": u}
            for i, u in enumerate(updates)]
    (run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_draws_the_runs_it_finds_and_reports_their_last_evaluation(tmp_path, capsys):
    _curve(tmp_path, "skip_gru_lam1e-5_ts1", 0, [100.0, 60.0, 52.5])
    _curve(tmp_path, "skip_gru_lam1e-5_ts0.5", 0, [200.0, 90.0, 57.25])
    _curve(tmp_path, "skip_gru_lam1e-5_ts0.5", 1, [200.0, 120.0])
    out = tmp_path / "fig.png"
    plot_update_curves.main(["table4", "--results", str(tmp_path), "--seeds", "0,1", "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert printed == [
        "skip_gru_lam1e-5_ts1 seed 0: last evaluation at 900 steps: 52.5 updates, val_accuracy 0.995",
        "skip_gru_lam1e-5_ts0.5 seed 0: last evaluation at 900 steps: 57.2 updates, val_accuracy 0.995",
        "skip_gru_lam1e-5_ts0.5 seed 1: last evaluation at 600 steps: 120.0 updates, val_accuracy 0.995",
        f"wrote {out} and {tmp_path / 'table4_update_paths.md'}",
    ]
    table = (tmp_path / "table4_update_paths.md").read_text().splitlines()
    assert table[4] == "| Row | Seed | Left 100% | 180 | 360 | 540 | 720 | 900 | Last (step) | Lowest (step) | Last five |"
    # the budget's fifths; a run that stopped at 600 steps has no value at 720 and 900
    assert table[8] == "| Skip GRU, λ = 1e-5 (T_s = 0.5 ms) | 1 | – | – | 200.0 | 200.0 | – | – | 120.0 (600) | 120.0 (600) | 160.0 |"


def test_a_percentage_table_draws_its_longer_run_in_place_of_the_table_run(tmp_path, capsys):
    """Table 1 states updates in % of the steps; a run gone on to 100,000 steps (table1_100k/) holds the table run's
    curve and more, so the figure draws it instead."""
    def curve(folder: str, row: str, fractions: list[float]) -> None:
        run = tmp_path / folder / row / "seed=0"
        run.mkdir(parents=True)
        rows = [{"step": 25_000 * (i + 1), "val_mse": 1e-4, "val_solved": True, "val_update_fraction": f,
                 "val_updates": 50 * f} for i, f in enumerate(fractions)]
        (run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    curve("table1", "skip_lstm_lam0", [1.0, 0.9])
    curve("table1", "skip_lstm_lam1e-5", [0.8, 0.6])
    curve("table1_100k", "skip_lstm_lam1e-5", [0.8, 0.6, 0.55, 0.525])
    out = tmp_path / "fig.png"
    plot_update_curves.main(["table1", "--results", str(tmp_path), "--seeds", "0", "--out", str(out)])
    assert capsys.readouterr().out.splitlines()[:2] == [
        "skip_lstm_lam0 seed 0: last evaluation at 50,000 steps: 90.0% updates, val_mse 0.0001",
        "skip_lstm_lam1e-5 seed 0: last evaluation at 100,000 steps: 52.5% updates, val_mse 0.0001",
    ]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = (tmp_path / "table1_update_paths.md").read_text()  # the table's own runs, as the table counts them
    assert "| Skip LSTM, λ = 1e-5 | 0 | 25,000 | – | – | 80.0% | 80.0% | 60.0% | 60.0% (50,000) | 60.0% (50,000) | 70.0% |" in paths
    assert "| Skip LSTM, λ = 0 | 0 | 50,000 | – | – | 100.0% | 100.0% | 90.0% |" in paths


def test_refuses_a_table_without_pairs_and_an_empty_folder(tmp_path):
    with pytest.raises(SystemExit, match="table2 compares no row pairs; tables with pairs: table1, table4"):
        plot_update_curves.main(["table2", "--results", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"no curve.jsonl under .*table4/<row>/seed=<k>/ for seeds 0,1,2,3"):
        plot_update_curves.main(["table4", "--results", str(tmp_path)])
    assert not list(tmp_path.rglob("*.png"))


@pytest.mark.parametrize("seeds", ["0,x", "0,1,2,3,4"])
def test_bad_seeds_name_the_option(seeds, capsys):
    with pytest.raises(SystemExit):
        plot_update_curves.main(["table4", "--seeds", seeds])
    assert "--seeds" in capsys.readouterr().err
