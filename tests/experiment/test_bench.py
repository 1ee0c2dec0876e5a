"""Smoke test of skiprnn.experiment.bench: a --quick run writes the markdown report and the plot."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # the real command: bench sets torch's thread count for the whole process
def test_bench_quick_writes_report_and_plot(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "skiprnn.experiment.bench", "--quick", "--threads", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = (tmp_path / "bench.md").read_text()
    for heading in ("training step", "inference (eval, no_grad)", "Where the skip overhead goes",
                    "Real skipping at inference", "Targets", "Noise", "Distance to the matmul floor"):
        assert heading in report
    for row in ("| skip_lstm | fused |", "| skip_gru | reference |", "| nn.LSTM | torch |", "| nn.GRU | torch |",
                "| matmul floor | torch.mm |"):
        assert row in report
    assert "torch.get_num_threads() = 1" in report
    assert "- commit: " in report and "command: `python -m skiprnn.experiment.bench --quick --threads 1 --out" in report
    png = tmp_path / "bench_skip_inference.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
