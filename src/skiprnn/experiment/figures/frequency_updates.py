#!/usr/bin/env python
"""Where in a sine wave a trained frequency-discrimination model updates its state (the paper's Figure 6).

    python -m skiprnn.experiment.figures.frequency_updates results/table4/skip_lstm_lam1e-4_ts1/seed=0 \
        results/table4/skip_lstm_lam1e-4_ts0.5/seed=0 [--sequences 2048] [--out results/figure6_frequency_updates.png]

For each run directory (``.hydra/config.yaml`` and ``checkpoint.pt``, as the trainer writes them) it runs the
model in evaluation mode on ``--sequences`` fresh test sequences (half of each class, seed 0) and draws one row:
two example inputs with the sampled points where the state is updated in red, and the fraction of sequences
updating at each time (in ms, so that runs at different sampling periods share an axis). It prints the mean
number of updates (overall and for each class) and the share of them in the first 10 ms. The paper's Figure 6
shows a Skip LSTM (λ = 1e-4, T_s = 0.5 ms) using mostly the first samples of each sequence; Table 4's point is
that the number of updates barely changes when the sampling period halves.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..trainer import load_trained  # noqa: E402


def update_profile(model, task, sequences: int, chunk: int = 512):
    """(examples: input (T, 2) of one target and one distractor sequence, their updates (T, 2);
    rate (T,): the fraction of sequences updating at each step; mean updates per sequence;
    (mean updates per target sequence, mean per distractor sequence))."""
    generator = torch.Generator().manual_seed(0)
    updates, labels, first = [], [], None
    with torch.no_grad():
        for start in range(0, sequences, chunk):
            batch = task.sample(min(chunk, sequences - start), generator)
            _, used = model(batch.x)
            updates.append(used)
            labels.append(batch.y)
            if first is None:
                pick = [0, batch.x.shape[1] - 1]  # the first target and the last distractor
                first = (batch.x[:, pick, 0], used[:, pick])
    updates, labels = torch.cat(updates, 1), torch.cat(labels)
    per_sequence = updates.sum(0)
    by_class = tuple(per_sequence[labels == k].mean().item() for k in (0, 1))
    return first, updates.mean(1), per_sequence.mean().item(), by_class


def plot(run_dirs: list[Path], out: Path, sequences: int) -> list[dict]:
    fig, axes = plt.subplots(len(run_dirs), 2, figsize=(11, 2.6 * len(run_dirs) + 0.4), squeeze=False)
    summary = []
    for (ax_x, ax_rate), run_dir in zip(axes, run_dirs):
        try:
            cfg, model, task, step = load_trained(run_dir)
        except FileNotFoundError as err:
            raise SystemExit(str(err)) from None
        if cfg["task"]["name"] != "frequency":
            raise SystemExit(f"{run_dir} is a {cfg['task']['name']!r} run, not a frequency-discrimination one")
        torch.manual_seed(0)  # the p_skip baselines draw their random skips from the global generator
        (x, used), rate, mean, (target, distractor) = update_profile(model, task, sequences)
        t = task.t.float()
        early = rate[t < 10.0].sum().item() / max(rate.sum().item(), 1e-12)
        label = f"{cfg['row']} (seed {cfg['seed']}, λ = {cfg.get('lam', 0.0):g}, step {step})"
        for col, (name, offset) in enumerate((("target", 0.0), ("distractor", 2.6))):
            ax_x.plot(t, x[:, col] + offset, color="0.6", lw=0.8)
            mask = used[:, col] > 0.5
            ax_x.plot(t[mask], x[mask, col] + offset, "o", color="red", ms=3,
                      label="state updated" if col == 0 else None)
            ax_x.text(t[-1] + 1, offset, f"{name}\n{int(mask.sum())} updates", fontsize=8, va="center")
        ax_x.set_yticks([])
        ax_x.set_xlim(0, task.duration * 1.15)
        ax_x.set_title(label, fontsize=9)
        ax_x.legend(loc="upper left", fontsize=8, frameon=False)
        ax_rate.bar(t.numpy(), rate.numpy(), width=task.sampling_period, color="tab:red")  # arrays: matplotlib + tensors warn
        ax_rate.set_ylim(0, 1.02)
        ax_rate.set_ylabel("fraction updating")
        ax_rate.set_title(f"T_s = {task.sampling_period:g} ms: {mean:.1f} of {task.seq_len} updates, "
                          f"{early:.0%} of them in the first 10 ms", fontsize=9)
        summary.append({"run": str(run_dir), "sampling_period": task.sampling_period, "length": task.seq_len,
                        "updates": mean, "target_updates": target, "distractor_updates": distractor,
                        "first_10ms": early})
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    fig.suptitle(f"Frequency discrimination: where the state is updated ({sequences} fresh test sequences per run)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))  # a fixed strip for the title, however many rows
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.experiment.figures.frequency_updates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="run directories, e.g. results/table4/<row>/seed=0")
    parser.add_argument("--sequences", type=int, default=2048, help="test sequences per run (default 2048)")
    parser.add_argument("--out", type=Path, default=Path("results/figure6_frequency_updates.png"))
    args = parser.parse_args(argv)
    if args.sequences < 2:
        parser.error("--sequences must be at least 2")
    for row in plot(args.run_dirs, args.out, args.sequences):
        print(f"{row['run']}: T_s = {row['sampling_period']:g} ms, {row['updates']:.1f} of {row['length']} updates "
              f"(target class {row['target_updates']:.1f}, distractors {row['distractor_updates']:.1f}), "
              f"{row['first_10ms']:.0%} in the first 10 ms")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
