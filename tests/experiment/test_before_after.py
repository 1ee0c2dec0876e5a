"""figures.before_after: the printed update fractions at each mark, from hand-written curves, and the figure."""
import json

import pytest

from skiprnn.experiment.figures import before_after


def _curve(folder, row, fractions):
    run = folder / "table1" / row / "seed=0"
    run.mkdir(parents=True)
    (run / "curve.jsonl").write_text("".join(json.dumps({"step": 300 * (i + 1), "val_update_fraction": f}) + "\n"
                                             for i, f in enumerate(fractions)))


def test_marks_take_the_last_evaluation_at_or_before_them():
    curve = [{"step": s, "val_update_fraction": s / 3000} for s in range(300, 3301, 300)]
    assert before_after.at_steps(curve, 1000) == {1000: 0.3, 2000: 0.6, 3000: 1.0, 3300: 1.1}


def test_prints_both_runs_per_row_and_draws_the_figure(tmp_path, capsys):
    _curve(tmp_path / "old", "skip_lstm_lam0", [1.0] * 10)
    _curve(tmp_path / "new", "skip_lstm_lam0", [1.0, 0.9, 0.8, 0.8])
    out = tmp_path / "fig.png"
    assert before_after.main([str(tmp_path / "old" / "table1"), str(tmp_path / "new" / "table1"),
                              "--rows", "skip_lstm_lam0", "--every", "900", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| row | run | 900 | 1,200 | 1,800 | 2,700 | 3,000 |"
    assert lines[2] == "| skip_lstm_lam0 | before | 100.0% | – | 100.0% | 100.0% | 100.0% |"
    assert lines[3] == "| skip_lstm_lam0 | after | 80.0% | 80.0% | – | – | – |"
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert before_after.paper_fraction("table1", "skip_lstm_lam0") == pytest.approx(0.811)
