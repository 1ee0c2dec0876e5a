"""What ``numerics=reproducible`` costs: a fused training step (Skip LSTM and Skip GRU, with the linear read-out, the
loss and an Adam step, as the trainer runs it) timed in each mode at 1 and 2 threads, at the adding and the sequential
MNIST sizes, beside the step's matmul floor (its unavoidable fp32 matrix products alone, torch.mm on the same shapes,
timed in the same process).

The mode is fixed for a process at torch's first operation, so each measurement is a fresh process; the processes
alternate between the modes (round robin, rotating the order) so that a change in the machine's load hits both alike.
``make bench`` runs it as a section of results/bench.md; ``python -m skiprnn.experiment.bench_numerics`` alone.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable

MODES = ("fast", "reproducible")
CELLS = ("skip_lstm", "skip_gru")
# name, T, B, I, H; then warm-up steps, timed steps per process, processes per mode and thread count
SIZES = ((("adding", 50, 256, 2, 110), 3, 15, 3), (("sequential MNIST", 784, 256, 1, 110), 1, 5, 2))
QUICK_SIZES = ((("adding (quick)", 10, 8, 2, 8), 1, 2, 1),)


def matmul_floor(cell: str, size, forward_only: bool = False) -> Callable[[], None]:
    """The unavoidable fp32 matrix products of one training step at ``size``, timed alone with torch.mm on the same
    shapes: per time step the recurrent forward product [B, I+1+H] x [I+1+H, G·H] and the backward's input-gradient
    product [B, G·H] x [G·H, H]; once, the weight gradient over all steps [I+1+H, T·B] x [T·B, G·H].
    ``forward_only``: the forward products alone."""
    import torch

    _, steps, batch, inp, hidden = size
    g, k = (4 if cell == "lstm" else 3) * hidden, inp + 1 + hidden
    xh, w, dg, w_hh = torch.randn(batch, k), torch.randn(k, g), torch.randn(batch, g), torch.randn(g, hidden)
    xh_all, dg_all = torch.randn(k, steps * batch), torch.randn(steps * batch, g)

    def run():
        for _ in range(steps):
            torch.mm(xh, w)
            if not forward_only:
                torch.mm(dg, w_hh)
        if not forward_only:
            torch.mm(xh_all, dg_all)

    return run


def _child(mode: str, threads: int, size: tuple, warmup: int, repeats: int) -> dict:
    """In a fresh process: the median ms of a training step per cell."""
    import time

    from ..backends import numerics

    numerics.use(mode, threads)
    import torch

    from ..nn.rnn import budget_loss
    from .model import SequenceModel

    _, steps, batch, inp, hidden = size
    torch.manual_seed(0)
    x, y = torch.randn(steps, batch, inp), torch.randn(batch, 1)
    out = {}
    for cell in CELLS:
        model = SequenceModel(cell, inp, 1, hidden)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def forward(model=model):
            prediction, updates = model(x)
            return torch.nn.functional.mse_loss(prediction, y) + budget_loss(updates, 1e-5)

        def step(model=model, opt=opt, forward=forward):
            loss = forward()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        # the step, its forward pass alone, and the floor of each, alternating
        runs = {cell: step, f"{cell} forward": forward, f"{cell} floor": matmul_floor(cell.removeprefix("skip_"), size),
                f"{cell} floor forward": matmul_floor(cell.removeprefix("skip_"), size, forward_only=True)}
        for _ in range(warmup):
            for run in runs.values():
                run()
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1e3)
        out.update({name: statistics.median(ms) for name, ms in times.items()})
    return out


def measure(threads_list=(1, 2), quick: bool = False) -> dict:
    """{(size name, mode, threads, cell): [median ms of each process]}."""
    results: dict = {}
    for size, warmup, repeats, rounds in QUICK_SIZES if quick else SIZES:
        for threads in threads_list:
            for r in range(rounds):
                for mode in MODES[r % 2:] + MODES[: r % 2]:
                    args = json.dumps({"mode": mode, "threads": threads, "size": size, "warmup": warmup,
                                       "repeats": repeats})
                    done = subprocess.run([sys.executable, "-m", "skiprnn.experiment.bench_numerics", "--child", args],
                                          capture_output=True, text=True, timeout=900)
                    if done.returncode != 0:
                        raise RuntimeError(f"the {mode} measurement failed: {done.stderr.strip().splitlines()[-1:]}")
                    for cell, ms in json.loads(done.stdout.strip().splitlines()[-1]).items():
                        results.setdefault((size[0], mode, threads, cell), []).append(ms)
    return results


def _rows(results: dict, quick: bool):
    """Per size, thread count and cell: its label and {(mode, part): median ms over the processes}."""
    for (name, steps, batch, inp, hidden), *_ in QUICK_SIZES if quick else SIZES:
        for threads in sorted({t for _, _, t, _ in results}):
            for cell in CELLS:
                med = {(mode, part): statistics.median(results[(name, mode, threads, cell + part)])
                       for mode in MODES for part in ("", " forward", " floor", " floor forward")}
                yield f"{name} (T={steps}, B={batch}, I={inp}, H={hidden}) | {cell} | {threads}", med


def table(results: dict, quick: bool = False) -> list[str]:
    """The section's markdown lines."""
    counts = ", ".join(f"{size[0]}: {rounds} per mode and thread count, {repeats} steps each"
                       for size, _, repeats, rounds in (QUICK_SIZES if quick else SIZES))
    lines = ["## The cost of numerics=reproducible and the distance to the matmul floor: training step", "",
             "A step as the trainer runs it (forward, linear read-out, loss with the budget term, backward, clipping, "
             "Adam). Each cell: the median over fresh processes (one per mode, alternating) of each process's median "
             f"step (processes: {counts}); `cost` = reproducible / fast − 1. The floor is the step's fp32 matrix "
             "products alone with torch.mm at the same threads, interleaved with the fast step in its process; both "
             "modes are divided by it (in a reproducible process torch runs on one thread, so its own torch.mm is "
             "no floor at 2 threads). The target: within 1.4x of the floor.",
             "", "| size | cell | threads | fast ms | reproducible ms | cost | floor ms | fast / floor | "
             "reproducible / floor |", "|---|---|---|---|---|---|---|---|---|"]
    for label, med in _rows(results, quick):
        fast, repro, floor = med[("fast", "")], med[("reproducible", "")], med[("fast", " floor")]
        lines.append(f"| {label} | {fast:.1f} | {repro:.1f} | {100 * (repro / fast - 1):+.0f}% | {floor:.1f} | "
                     f"{fast / floor:.2f} | {repro / floor:.2f} |")
    lines += ["", "## Where a fused training step goes: numerics=fast", "",
              "Medians as above. Forward = the forward pass with the loss, timed alone; backward = the step's rest "
              "(backward, clipping, Adam). Matmuls = the floor's products of that pass (forward: the per-step "
              "recurrent product; backward: the input-gradient products and the weight gradient); rest = the pass "
              "minus its matmuls: the elementwise cell and gate work, memory traffic, the read-out, Adam and Python.",
              "", "| size | cell | threads | step ms | forward: matmuls | forward: rest | backward: matmuls | "
              "backward: rest |", "|---|---|---|---|---|---|---|---|"]
    for label, med in _rows(results, quick):
        step, fwd = med[("fast", "")], med[("fast", " forward")]
        mm_f, mm_b = med[("fast", " floor forward")], med[("fast", " floor")] - med[("fast", " floor forward")]
        lines.append(f"| {label} | {step:.1f} | {mm_f:.1f} | {fwd - mm_f:.1f} | {mm_b:.1f} | {step - fwd - mm_b:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.experiment.bench_numerics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(_child(spec["mode"], spec["threads"], tuple(spec["size"]), spec["warmup"], spec["repeats"])))
        return 0
    print("\n".join(table(measure(quick=args.quick), args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
