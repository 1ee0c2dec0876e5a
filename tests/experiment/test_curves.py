"""skiprnn.experiment.figures.curves: the evaluations it picks and the markdown it prints, on a hand-written curve."""
import json

import pytest

from skiprnn.experiment.figures import curves


def test_picks_the_first_the_multiples_and_the_last():
    curve = [{"step": s} for s in range(300, 3301, 300)]
    assert [r["step"] for r in curves.pick(curve, 1500)] == [300, 1500, 3000, 3300]
    assert [r["step"] for r in curves.pick(curve, 1000)] == [300, 1200, 2100, 3000, 3300]
    assert curves.pick([], 1000) == []


def test_prints_one_table_per_row(tmp_path, capsys):
    for row, acc in (("lstm_ts1", 0.5), ("skip_gru_lam0_ts1", 0.75)):
        run = tmp_path / row / "seed=0"
        run.mkdir(parents=True)
        lines = [{"step": s, "val_accuracy": acc, "val_updates": 100.0 - s / 100} for s in (300, 600, 900)]
        (run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    curves.main([str(tmp_path), "--every", "600"])
    out = capsys.readouterr().out
    assert "**lstm_ts1**" in out and "**skip_gru_lam0_ts1**" in out
    assert "| step | 300 | 600 | 900 |" in out
    assert "| val accuracy | 0.750 | 0.750 | 0.750 |" in out and "| val updates | 97.0 | 94.0 | 91.0 |" in out
    curves.main([str(tmp_path), "--rows", "skip_*"])
    out = capsys.readouterr().out
    assert "**skip_gru_lam0_ts1**" in out and "lstm_ts1" not in out
    with pytest.raises(SystemExit, match=r"for rows 'gru_\*'"):
        curves.main([str(tmp_path), "--rows", "gru_*"])
