#!/usr/bin/env python
"""Figure 3 of the paper: which pixels a trained model on sequential MNIST updates its state on.

    python -m skiprnn.experiment.figures.mnist_pixels results/table2/skip_lstm_lam1e-4/seed=0 [--n 8] \
        [--out results/figure3_mnist_pixels.png] [--data-root /path/holding/MNIST]

Reads the run directory the trainer wrote (``.hydra/config.yaml`` and ``checkpoint.pt``), runs the model
on the first ``--n`` test digits in evaluation mode (the same deterministic u_t = round(ũ_t) as the test
metrics) and saves a grid: each digit in grey with the pixels whose step updated the state (u_t = 1) in
red, titled with the label, the prediction and the number of updates out of 784. It also measures, over the
first ``--stats`` test digits, how often the state is updated on ink (pixel >= 128), on blank pixels (0) and on
the 4-pixel border around the 20x20 box MNIST centres its digits in: the paper's Figure 3 shows a trained
Skip LSTM reading the strokes and skipping the empty border.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..tasks.mnist import SIDE, STEPS, to_sequence  # noqa: E402
from ..trainer import load_trained  # noqa: E402


def load(run_dir: Path, data_root: str | None):
    """The run's resolved config, its model (from checkpoint.pt) and its MNIST task."""
    try:
        cfg, model, task, step = load_trained(run_dir, **({} if data_root is None else {"data_root": data_root}))
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    if cfg["task"]["name"] != "mnist":
        raise SystemExit(f"{run_dir} is a {cfg['task']['name']!r} run, not an MNIST one")
    return cfg, model, task, step


BORDER = 4  # MNIST digits lie in the central 20x20 box; the frame around it is almost always blank


def update_rates(model, images: torch.Tensor, chunk: int = 500) -> dict:
    """Fraction of ink pixels (>= 128), of blank pixels (0) and of border pixels on which the state is updated."""
    used = []
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            _, updates = model(to_sequence(images[start : start + chunk]))
            used.append(updates.t().reshape(-1, SIDE, SIDE) > 0.5)
    used = torch.cat(used)
    ink, blank = images >= 128, images == 0
    border = torch.ones(SIDE, SIDE, dtype=torch.bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    return {"ink": used[ink].float().mean().item(), "blank": used[blank].float().mean().item(),
            "border": used[:, border].float().mean().item(), "digits": len(images)}


def plot(run_dir: Path, out: Path, n: int, data_root: str | None, stats: int = 1000) -> tuple[Path, dict]:
    cfg, model, task, step = load(run_dir, data_root)
    images, labels = task.splits["test"]
    torch.manual_seed(0)  # the p_skip baselines draw their random skips from the global generator
    rates = update_rates(model, images[:stats])
    images, labels = images[:n], labels[:n]
    with torch.no_grad():
        prediction, updates = model(to_sequence(images))
    used = updates.t().reshape(-1, SIDE, SIDE).numpy() > 0.5  # (n, 28, 28): step 28·r + c is pixel (r, c)
    predicted = prediction.argmax(-1)

    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows + 0.6), squeeze=False)
    red = np.zeros((SIDE, SIDE, 4))
    red[..., 0] = 1.0
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        ax.imshow(images[i].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        overlay = red.copy()
        overlay[..., 3] = 0.6 * used[i]
        ax.imshow(overlay, interpolation="nearest")
        count = int(used[i].sum())
        ax.set_title(f"label {int(labels[i])}, pred {int(predicted[i])}\n{count}/{STEPS} updates ({count / STEPS:.0%})",
                     fontsize=9)
    lam = cfg.get("lam", 0.0)
    fig.suptitle(f"{cfg['row']} (seed {cfg['seed']}, λ = {lam:g}, step {step}): red: pixels where the state "
                 f"is updated (u_t = 1); unmarked: skipped\nover the first {rates['digits']} test digits the state "
                 f"is updated on {rates['ink']:.0%} of ink pixels (>= 128), {rates['blank']:.0%} of blank ones and "
                 f"{rates['border']:.0%} of the {BORDER}-pixel border",
                 fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out, rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.experiment.figures.mnist_pixels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory, e.g. results/table2/skip_lstm_lam1e-4/seed=0")
    parser.add_argument("--n", type=int, default=8, help="number of test digits (default 8)")
    parser.add_argument("--out", type=Path, default=Path("results/figure3_mnist_pixels.png"))
    parser.add_argument("--stats", type=int, default=1000,
                        help="test digits over which the ink/blank update rates are measured (default 1000)")
    parser.add_argument("--data-root", default=None,
                        help="directory holding MNIST/raw (default: the run's task.data_root)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.stats < 1:
        parser.error("--stats must be at least 1")
    out, rates = plot(args.run_dir, args.out, args.n, args.data_root, args.stats)
    print(f"wrote {out}; updates on {rates['ink']:.1%} of ink pixels, {rates['blank']:.1%} of blank pixels and "
          f"{rates['border']:.1%} of the {BORDER}-pixel border (first {rates['digits']} test digits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
