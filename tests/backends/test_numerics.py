"""numerics=reproducible: the fixed-order matmul against an independent float64 product, and the same bits for a
short training at 1 and 2 threads and with the C kernels built for two ISA levels (fresh processes: the mode is
chosen before torch's first operation)."""
import os
import subprocess
import sys

import pytest
import torch

from skiprnn.backends import native, numerics

needs_mode = pytest.mark.skipif(
    os.uname().machine != "x86_64" or not {"avx2", "fma"} <= numerics._cpu_flags(), reason="needs an x86-64 CPU with AVX2 and FMA")

# A short Skip GRU / Skip LSTM training; prints a hash of every parameter after it. Run in a fresh process.
TRAIN = """
import hashlib, sys
from skiprnn.backends import numerics
numerics.use(sys.argv[1], int(sys.argv[2]))
import torch
from skiprnn import SkipRNN, budget_loss
torch.manual_seed(0)
digest = hashlib.sha256()
for mode in ("skip_gru", "skip_lstm"):
    rnn = SkipRNN(mode, 2, 24)
    head = torch.nn.Linear(24, 1)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-2)
    for step in range(12):
        x, y = torch.randn(20, 70, 2), torch.randn(70, 1)
        out = rnn(x)
        pred = numerics.linear(out.state.h[-1], head.weight, head.bias)
        loss = torch.nn.functional.mse_loss(pred, y) + budget_loss(out.updates, 1e-2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*rnn.parameters(), *head.parameters()], 1.0)
        opt.step()
    for p in [*rnn.parameters(), *head.parameters()]:
        digest.update(p.detach().numpy().tobytes())
print(numerics.environment()["isa"], digest.hexdigest())
"""


def _train(mode: str, threads: int, arch: str | None = None) -> str:
    env = dict(os.environ)  # the kernels' cache is shared: each build (ISA level, mode) has a file of its own
    env.pop("ATEN_CPU_CAPABILITY", None)  # a fresh process, as a user's
    if arch:
        env["SKIPRNN_REPRODUCIBLE_ARCH"] = arch
    done = subprocess.run([sys.executable, "-c", TRAIN, mode, str(threads)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@needs_mode
@pytest.mark.slow
def test_the_same_bits_at_one_and_two_threads_and_for_two_isa_levels_and_other_bits_when_fast():
    one = _train("reproducible", 1)
    assert "x86-64-v3" in one
    assert _train("reproducible", 2).split()[-1] == one.split()[-1]
    # x86-64-v2 has neither AVX2 nor FMA: plain C loops and software fma instead of the AVX2 micro-kernel
    v2 = _train("reproducible", 1, arch="x86-64-v2")
    assert "x86-64-v2" in v2 and v2.split()[-1] == one.split()[-1]
    # the check can fail: the fast arithmetic gives other bits for the same training
    assert _train("fast", 1).split()[-1] != one.split()[-1]


@needs_mode
@pytest.mark.parametrize("shape", [(256, 113, 440), (7, 5, 3), (13, 300, 33), (40, 600, 17)])
def test_mm_matches_a_float64_product_and_ignores_strides(shape):
    m, k, n = shape
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    exact = a.double() @ b.double()
    got = numerics.mm(a, b)
    # float32 sums of k products: within a few ulps of the largest partial sum
    assert torch.allclose(got.double(), exact, rtol=0, atol=4 * k**0.5 * 6e-8 * (a.abs() @ b.abs()).max().item())
    # the same operands stored transposed give the same bits
    assert torch.equal(numerics.mm(a.t().contiguous().t(), b.t().contiguous().t()), got)
    if k <= 256:  # one block of k: accumulating adds the block's sum to C once
        assert torch.equal(numerics.mm(a, b, out=torch.ones(m, n), accumulate=True), got + 1)


@needs_mode
def test_linear_matches_torch_in_value_and_gradient():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 9, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    before = numerics.mode()
    try:
        numerics._STATE["mode"] = "reproducible"  # linear's route only; float64 needs no pinned CPU code
        y = numerics.linear(x, w, b)
        grads = torch.autograd.grad(y.square().sum(), (x, w, b))
    finally:
        numerics._STATE["mode"] = before
    ref = torch.nn.functional.linear(x, w, b)
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, w, b))
    assert torch.allclose(y, ref, atol=1e-12)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.slow
def test_importing_skiprnn_runs_no_torch_operation():
    """The mode must be choosable after `import skiprnn...`: no module may fix ATen's CPU code at import."""
    code = ("import os, skiprnn, skiprnn.train, skiprnn.verify, skiprnn.experiment.trainer, skiprnn.experiment.tables\n"
            "os.environ['ATEN_CPU_CAPABILITY'] = 'default'\n"
            "import torch; print(torch.backends.cpu.get_cpu_capability())")
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "DEFAULT"


@pytest.mark.slow
def test_a_late_choice_is_refused_with_the_way_out():
    code = ("import torch; torch.ones(4).exp()\n"
            "from skiprnn.backends import numerics\n"
            "if torch.backends.cpu.get_cpu_capability() == 'AVX2': print('same code'); raise SystemExit\n"
            "try: numerics.use('reproducible')\n"
            "except numerics.NumericsError as e: print(e)")
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    out = done.stdout.strip()
    if out == "same code":
        pytest.skip("this CPU's own ATen code is AVX2: a late choice changes nothing here")
    assert "before torch's first operation" in out and "SKIPRNN_NUMERICS=reproducible" in out


def test_unknown_mode_names_the_choices():
    with pytest.raises(numerics.NumericsError, match="fast, reproducible"):
        numerics.use("exact")


def test_the_environment_record_names_mode_cpu_isa_versions_threads_and_flags():
    env = numerics.environment()
    assert env["numerics"] == numerics.mode()
    assert {"cpu", "isa", "torch", "blas", "onednn", "threads", "kernel_flags"} <= set(env)
    assert env["kernel_flags"] == " ".join(native.build_flags(env["numerics"]))
