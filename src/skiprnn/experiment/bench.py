"""Time SkipRNN training steps and inference against torch's fused nn.LSTM / nn.GRU, and real skipping.

    python -m skiprnn.experiment.bench [--threads 2] [--repeats 7] [--quick] [--out results/]

Writes <out>/bench.md (tables) and <out>/bench_skip_inference.png (time against the update fraction).
Every timing is wall-clock, after warm-up, over several repeats: min / median / max in ms; ratios use
medians. Sizes: the adding task (T=50, B=256, I=2, H=110), sequential MNIST (T=784, B=256, I=1, H=110)
and streaming one sequence (T=784, B=1, I=1, H=110). ``--quick`` shrinks sizes and repeats (smoke test).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the clone: results/ is written there by default
torch = SkipRNN = None  # bound in main()

MODES = ("lstm", "skip_lstm", "gru", "skip_gru")
SIZES = [  # name, T, B, I, H
    ("adding", 50, 256, 2, 110),
    ("sequential MNIST", 784, 256, 1, 110),
    ("streaming", 784, 1, 1, 110),
]
QUICK_SIZES = [("adding", 10, 8, 2, 8), ("sequential MNIST", 24, 8, 1, 8), ("streaming", 24, 1, 1, 8)]
# Update fractions of a constant gate: Δ = σ(b) gives one update every k steps, k the smallest integer
# with k·Δ > 0.5 (round(0.5) = 0). Δ is taken in the middle of its interval (0.5/k, 0.5/(k-1)].
PERIODS = (1, 2, 4, 10, 20)


def timeit(fns: dict, warmup: int, repeats: int) -> dict:
    """min / median / max ms of each closure. The repeats are interleaved (round robin, rotating the
    order), so that a change in the machine's load hits every variant alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (min(ts), statistics.median(ts), max(ts)) for name, ts in times.items()}


def our_model(mode, size, fused=True, skip_inference=True):
    _, _, _, inp, hidden = size
    torch.manual_seed(0)
    return SkipRNN(mode, inp, hidden, fused=fused, skip_inference=skip_inference)


def torch_model(cell, size):
    _, _, _, inp, hidden = size
    torch.manual_seed(0)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](inp, hidden)


def train_step(model, x, ours: bool):
    def step():
        model.zero_grad(set_to_none=True)
        if ours:
            out = model(x)
            loss = out.output[-1].sum() + out.updates.sum()
        else:
            loss = model(x)[0][-1].sum()
        loss.backward()

    return step


def forward_only(model, x):
    """The forward pass of a training step alone (grad enabled, the backward pass's buffers saved)."""
    def step():
        model.zero_grad(set_to_none=True)
        out = model(x)
        return out.output[-1].sum() + out.updates.sum()

    return step


def infer(model, x):
    model.eval()

    def run():
        with torch.no_grad():
            model(x)

    return run


def fmt(stats) -> str:
    return " | ".join(f"{v:.1f}" if v >= 10 else f"{v:.2f}" for v in stats)


def gate_bias(period: int) -> float:
    if period == 1:
        return 2.0  # Δ = 0.88: every step updates
    delta = 0.5 * (0.5 / period + 0.5 / (period - 1))
    return math.log(delta / (1 - delta))


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def busy_cpus(seconds: float = 1.0) -> float | None:
    """How many CPUs other processes keep busy now, from /proc/stat over ``seconds`` (Linux; else None).
    The load average lags by minutes, so it misjudges a machine whose jobs just stopped or started."""
    def sample():
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / max(total1 - total0, 1.0))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.experiment.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per case (default 7)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and repeats: a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="output folder (default results/)")
    parser.add_argument("--omp-wait-policy", choices=("auto", "active", "passive"), default="auto",
                        help="OpenMP threads spin (active) or sleep (passive) between parallel regions; auto: "
                        "passive when other processes already load the CPUs (default auto)")
    args = parser.parse_args(argv)

    # On a loaded machine, spinning OpenMP threads wait for each other's time slices at every barrier
    # (seen here: 100x slower small matmuls with 2 threads). It must be set before torch loads OpenMP.
    load_before = os.getloadavg()
    busy = busy_cpus()
    policy = os.environ.get("OMP_WAIT_POLICY")
    auto_note = ""
    if args.omp_wait_policy != "auto":
        policy = args.omp_wait_policy.upper()
    elif policy is None and (load_before[0] if busy is None else busy) > (os.cpu_count() or 1) - args.threads + 0.5:
        policy = "PASSIVE"
        auto_note = " (set by --omp-wait-policy auto: other processes were already loading the CPUs)"
    auto_note = os.environ.pop("SKIPRNN_BENCH_POLICY_NOTE", auto_note)  # from the start before the one below
    if policy and os.environ.get("OMP_WAIT_POLICY") != policy:
        # OpenMP reads the policy when torch loads it, and `import skiprnn` (this module's package) already has:
        # start again with it in the environment.
        env = dict(os.environ, OMP_WAIT_POLICY=policy, SKIPRNN_BENCH_POLICY_NOTE=auto_note)
        if argv is None:
            sys.stdout.flush()
            os.execve(sys.executable, [sys.executable, "-m", "skiprnn.experiment.bench", *sys.argv[1:]], env)
        auto_note += " (not applied: called in-process, after OpenMP had started; run the command instead)"
    global torch, SkipRNN
    import torch as _torch

    from skiprnn import SkipRNN as _SkipRNN
    from skiprnn.backends import native
    from skiprnn.experiment import bench_numerics
    from skiprnn.experiment.tracking import git_commit

    torch, SkipRNN = _torch, _SkipRNN
    torch.set_num_threads(args.threads)
    sizes = QUICK_SIZES if args.quick else SIZES
    repeats = 2 if args.quick else args.repeats
    warmup = 1 if args.quick else 2
    started = time.perf_counter()
    lines: list[str] = []
    say = lambda s="": (lines.append(s), print(s, flush=True))  # noqa: E731

    say("# SkipRNN benchmark")
    say()
    say(f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"- commit: {git_commit()}; command: `{' '.join(['python -m skiprnn.experiment.bench', *(argv if argv is not None else sys.argv[1:])])}`"
        " (`make bench`)")
    say(f"- machine: {machine()}; Python {platform.python_version()}; torch {torch.__version__}")
    say(f"- threads: torch.get_num_threads() = {torch.get_num_threads()}")
    say(f"- repeats: median of {repeats} after {warmup} warm-up runs (fewer for the slowest cases, as marked)")
    say(f"- load average before the run (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load_before)}"
        + ("" if busy is None else f"; CPUs busy with other work just before: {busy:.2f}"))
    say(f"- OMP_WAIT_POLICY: {policy or 'unset (OpenMP default)'}{auto_note}")
    built = native.kernels(torch.float32) is not None
    say("- fused path steps: " + ("C kernels (`skiprnn.backends.native`, `cc -O3 -march=native`)" if built else
                                  "Python tensor ops (**the C kernels could not be built here**)"))
    if args.quick:
        say("- **--quick: tiny sizes and repeats, a smoke test; these numbers mean nothing**")
    say()
    say("Our rows: `fused` is the default single-layer path (`skiprnn.backends.fused`, hand-written backward pass);")
    say("`reference` is the per-step autograd loop (`fused=False`). Ratios are medians against torch's")
    say("nn.LSTM / nn.GRU of the same cell type (< 1: faster than torch). The skip overhead compares skip_X")
    say("with X on the same path. Models are freshly initialised: b_p = 1, so every step updates.")

    # --------------------------------------------------------------------------------- training step
    summary = {}
    for size in sizes:
        name, steps, batch, inp, hidden = size
        x = torch.randn(steps, batch, inp)
        heavy = steps * batch >= 784 * 256
        reps = max(3, repeats // 2) if heavy else repeats
        warm = 1 if heavy else warmup
        for phase in ("training step (forward + backward)", "inference (eval, no_grad)"):
            training = phase.startswith("training")
            say()
            say(f"## {name}: T={steps}, B={batch}, I={inp}, H={hidden} — {phase}")
            say()
            if heavy:
                say(f"(median of {reps}, after {warm} warm-up run)")
                say()
            say("| model | path | min ms | median ms | max ms | vs torch | skip overhead |")
            say("|---|---|---|---|---|---|---|")
            results = {}
            for cell in ("lstm", "gru"):
                ref_model = torch_model(cell, size)
                fns = {("torch", cell): train_step(ref_model, x, False) if training else infer(ref_model, x)}
                if training:
                    fns[("floor", cell)] = bench_numerics.matmul_floor(cell, size)
                variants = [("fused", True, True), ("reference", False, True)]
                if not training:
                    variants = [("fused dense", True, False), ("reference dense", False, False),
                                ("skipping (skip_inference=True)", True, True)]
                for mode in (cell, "skip_" + cell):
                    for label, fused, skip_inf in variants:
                        model = our_model(mode, size, fused=fused, skip_inference=skip_inf)
                        fns[(label, mode)] = train_step(model, x, True) if training else infer(model, x)
                        if training and fused and size == sizes[0]:
                            fns[("fused forward", mode)] = forward_only(model, x)
                results.update(timeit(fns, warm, reps))
                torch_med = results[("torch", cell)][1]
                for mode in (cell, "skip_" + cell):
                    for label, *_ in variants:
                        stats = results[(label, mode)]
                        overhead = ""
                        if mode.startswith("skip_"):
                            overhead = f"{100 * (stats[1] / results[(label, cell)][1] - 1):+.0f}%"
                        say(f"| {mode} | {label} | {fmt(stats)} | {stats[1] / torch_med:.2f} | {overhead} |")
                say(f"| nn.{cell.upper()} | torch | {fmt(results[('torch', cell)])} | 1.00 | |")
                if training:
                    floor = results[("floor", cell)]
                    say(f"| matmul floor | torch.mm | {fmt(floor)} | {floor[1] / torch_med:.2f} | |")
            summary[(name, training)] = results

    # ------------------------------------------------------------------------------- the matmul floor
    say()
    say("## Distance to the matmul floor: fused training step / its unavoidable matrix products")
    say()
    say("The floor is the step's fp32 matrix products alone, with torch.mm on the same shapes (per step the")
    say("recurrent forward product and the backward's input-gradient product; once, the weight gradient), timed in")
    say("the same round robin. Everything above it is elementwise work, memory traffic, the gate, the head and Python.")
    say()
    say("| size | cell | floor ms | plain / floor | skip / floor | torch / floor |")
    say("|---|---|---|---|---|---|")
    for size in sizes:
        results = summary[(size[0], True)]
        for cell in ("lstm", "gru"):
            floor = results[("floor", cell)][1]
            say(f"| {size[0]} | {cell} | {floor:.2f} | {results[('fused', cell)][1] / floor:.2f} | "
                f"{results[('fused', 'skip_' + cell)][1] / floor:.2f} | {results[('torch', cell)][1] / floor:.2f} |")

    # ----------------------------------------------------------------------- where the overhead goes
    name, steps = sizes[0][:2]
    results = summary[(name, True)]
    say()
    say(f"## Where the skip overhead goes: {name}, T={steps}, fused training step")
    say()
    say("Forward = the forward pass of a training step alone (timed in the same round robin); backward = the")
    say("step's median minus the forward's median.")
    say()
    say("| cell | forward ms: plain | skip | added | backward ms: plain | skip | added |")
    say("|---|---|---|---|---|---|---|")
    for cell in ("lstm", "gru"):
        fwd = [results[("fused forward", m)][1] for m in (cell, "skip_" + cell)]
        bwd = [results[("fused", m)][1] - f for m, f in zip((cell, "skip_" + cell), fwd)]
        say(f"| {cell} | {fwd[0]:.2f} | {fwd[1]:.2f} | {fwd[1] - fwd[0]:+.2f} | {bwd[0]:.2f} | {bwd[1]:.2f} "
            f"| {bwd[1] - bwd[0]:+.2f} |")

    # ----------------------------------------------------------------------------- real skipping
    skip_rows = []
    skip_steps = sizes[1][1]
    say()
    say(f"## Real skipping at inference: T={skip_steps}, constant gate (update_gate.weight = 0, Δ = σ(b))")
    say()
    say("Dense = the masked path (`skip_inference=False`: every step computed, then masked), fused or reference;")
    say("skipping = `skip_inference=True` (one C call for the whole sequence: at batch 1 it runs the cell only where")
    say("u_t = 1, in a batch each step computes only the updating rows). `vs all updating` = the skipping path's")
    say("time with every step updating over its time here: the saving that skipping itself brings.")
    say()
    say("| mode | B | b | Δ | updates | dense fused ms | dense reference ms | skipping min ms | skipping median ms "
        "| skipping max ms | speedup vs fused | vs reference | vs all updating |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for batch in (1, sizes[1][2]):
        size = ("skip", skip_steps, batch, sizes[1][3], sizes[1][4])
        x = torch.randn(skip_steps, batch, size[3])
        heavy = batch > 1 and not args.quick
        reps = max(2, repeats // 2) if heavy else repeats
        warm = 1 if heavy else warmup
        for mode in ("skip_lstm", "skip_gru"):
            for period in PERIODS:
                bias = gate_bias(period)
                fns = {}
                for label, fused, skip_inf in (("dense fused", True, False), ("dense reference", False, False),
                                               ("skipping", True, True)):
                    model = our_model(mode, size, fused=fused, skip_inference=skip_inf).eval()
                    with torch.no_grad():
                        model.update_gate.weight.zero_()
                        model.update_gate.bias.fill_(bias)
                        if label == "skipping":
                            fraction = model(x).updates.mean().item()
                    fns[label] = infer(model, x)
                times = timeit(fns, warm, reps)
                dense, ref, skip = times["dense fused"], times["dense reference"], times["skipping"]
                row = dict(mode=mode, batch=batch, bias=bias, fraction=fraction, dense=dense, ref=ref, skip=skip)
                skip_rows.append(row)
                every_step = next(r for r in skip_rows if r["mode"] == mode and r["batch"] == batch)["skip"]
                say(f"| {mode} | {batch} | {bias:.3f} | {1 / (1 + math.exp(-bias)):.4f} | {100 * fraction:.1f}% "
                    f"| {dense[1]:.2f} | {ref[1]:.2f} | {fmt(skip)} | {dense[1] / skip[1]:.2f}x "
                    f"| {ref[1] / skip[1]:.2f}x | {every_step[1] / skip[1]:.2f}x |")

    # ------------------------------------------------------------------------------------- targets
    say()
    say("## Targets")
    say()
    say("Training step (the batched sizes; streaming, batch 1, is listed for information only):")
    say()
    for (name, training), results in summary.items():
        if not training:
            continue
        batched = next(sz for sz in sizes if sz[0] == name)[2] > 1
        verdict = (lambda ok: "met" if ok else "MISSED") if batched else (lambda ok: "information only")
        for cell in ("lstm", "gru"):
            torch_med = results[("torch", cell)][1]
            med = results[("fused", "skip_" + cell)][1]
            say(f"- {name}: skip_{cell} fused training step {med:.1f} ms vs nn.{cell.upper()} {torch_med:.1f} ms "
                f"(target <=): {verdict(med <= torch_med)}")
            plain = results[("fused", cell)][1]
            over = 100 * (med / plain - 1)
            say(f"- {name}: skip machinery overhead skip_{cell} vs {cell} (fused): {over:+.0f}% "
                f"(target <= +10%): {verdict(over <= 10)}")
            to_floor = med / results[("floor", cell)][1]
            say(f"- {name}: skip_{cell} fused training step / its matmul floor: {to_floor:.2f} "
                f"(target <= 1.40): {verdict(to_floor <= 1.4)}")
    say()
    say(f"Real skipping (T as above), at {args.threads} thread(s):")
    say()
    # (batch 1?, wanted speed-up over the dense fused path, update fraction from, to)
    skip_targets = ((True, 1.7, 0.4, 0.6), (True, 5.0, 0.07, 0.13),
                    (False, 0.9, 0.95, 1.0), (False, 1.3, 0.4, 0.6), (False, 3.0, 0.07, 0.13))
    for row in skip_rows:
        speed = row["dense"][1] / row["skip"][1]
        for single, want, lo, hi in skip_targets:
            if (row["batch"] == 1) == single and lo <= row["fraction"] <= hi:
                every_step = next(r for r in skip_rows if r["mode"] == row["mode"] and r["batch"] == row["batch"])
                say(f"- batch {row['batch']}, {row['mode']}, {100 * row['fraction']:.0f}% updates: skipping "
                    f"{speed:.2f}x the speed of the dense fused path (target >= {want}x): "
                    f"{'met' if speed >= want else 'MISSED'}; {row['ref'][1] / row['skip'][1]:.2f}x vs the dense "
                    f"reference loop, {every_step['skip'][1] / row['skip'][1]:.2f}x vs itself with every step updating")

    # ------------------------------------------------------------------------------ numerics cost
    say()
    measured = bench_numerics.measure((1,) if args.quick else (1, 2), quick=args.quick)
    for line in bench_numerics.table(measured, args.quick):
        say(line)

    # ---------------------------------------------------------------------------------------- plot
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "bench_skip_inference.png"
    plot(skip_rows, png, skip_steps)
    load_after = os.getloadavg()
    say()
    say("## Noise")
    say()
    say(f"Load average after the run: {', '.join(f'{v:.2f}' for v in load_after)}; total run time "
        f"{time.perf_counter() - started:.0f} s.")
    say(f"Wall-clock timings on a shared machine: when the load average exceeds the {os.cpu_count()} CPUs, other")
    say("processes take CPU time from these runs, and torch's multi-threaded kernels (OpenMP) suffer most, so")
    say("max can be far above min, and two runs can differ by tens of percent. Compare medians within one")
    say("table: the repeats of one table's rows (per cell type) are interleaved round robin, so a change of")
    say("load hits them alike. Treat differences below ~10% as noise when the load was high.")
    say()
    say(f"![time against the update fraction]({png.name})")
    md = args.out / "bench.md"
    md.write_text("\n".join(lines) + "\n")
    print(f"wrote {md} and {png}")


def plot(rows, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.2), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        for mode, color in (("skip_lstm", "tab:blue"), ("skip_gru", "tab:orange")):
            sel = sorted((r for r in rows if r["batch"] == batch and r["mode"] == mode), key=lambda r: r["fraction"])
            frac = [100 * r["fraction"] for r in sel]
            for key, style, label in (("skip", "-o", "skipping"), ("dense", "--s", "dense fused"),
                                      ("ref", ":^", "dense reference")):
                ax.plot(frac, [r[key][1] for r in sel], style, color=color, label=f"{mode} {label}")
        ax.set_xlabel("state updates (% of steps)")
        ax.set_ylabel("inference time (ms, median)")
        ax.set_yscale("log")
        ax.set_title(f"T={steps}, batch {batch}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Skip RNN inference: really skipping vs computing every step (torch {torch.__version__}, "
                 f"{torch.get_num_threads()} threads)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
