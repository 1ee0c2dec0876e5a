"""python -m skiprnn.verify: the committed reference run retrains bit for bit here (CI runs on changing machines, so
this is a check across CPUs), an altered curve is caught at its first differing evaluation, and bad input gets one
line."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from skiprnn.experiment.verify import first_difference, main

from ..conftest import ROOT

REFERENCE = ROOT / "results" / "reference" / "table1_skip_gru_lam1e-5_seed1_600steps"


def _verify(run_dir, *args):
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}  # a fresh process, as a user's
    return subprocess.run([sys.executable, "-m", "skiprnn.verify", str(run_dir), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_committed_reference_run_retrains_bit_for_bit_up_to_an_altered_evaluation(tmp_path):
    """One retraining checks both: step 100 must match the committed record bit for bit, and step 200, altered in a
    copy by one part in 2^20, must be reported as the first difference."""
    record = json.loads((REFERENCE / "metrics.json").read_text())
    assert record["config"]["numerics"] == "reproducible" and record["environment"]["numerics"] == "reproducible"
    run = tmp_path / "run"
    shutil.copytree(REFERENCE, run, ignore=shutil.ignore_patterns("checkpoint*"))
    rows = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows[:2]] == [100, 200]
    recorded = rows[1]["val_mse"]
    rows[1]["val_mse"] = recorded * (1 + 2**-20)
    (run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = _verify(run, "--steps", "200")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"differs at step 200: val_mse recorded {rows[1]['val_mse']!r}, retrained {recorded!r}" in done.stdout
    assert "numerics=reproducible" in done.stdout
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in REFERENCE.iterdir() if "checkpoint" not in p.name)


def test_bad_input_gets_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "holds no record of its config" in capsys.readouterr().err
    shutil.copytree(REFERENCE, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint*"))
    assert main([str(tmp_path / "run"), "--steps", "50"]) == 2
    assert "ends before the run's first evaluation (step 100)" in capsys.readouterr().err


def test_first_difference_skips_timings_and_names_the_key():
    a = [{"step": 100, "val_mse": 0.5, "seconds_per_step": 0.1}, {"step": 200, "val_mse": 0.25, "train_loss": 1.0}]
    b = [{"step": 100, "val_mse": 0.5, "seconds_per_step": 0.2}, {"step": 200, "val_mse": 0.25, "train_loss": 1.5}]
    assert first_difference(a, a) is None
    assert first_difference(a, b) == (200, "train_loss", 1.0, 1.5)
    assert first_difference(a, b[:1]) == (200, "(the evaluation itself)", "present", "missing")
