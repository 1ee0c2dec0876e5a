"""The fused single-layer path (skiprnn.backends.fused) against the per-step autograd loop (fused=False).

Values and gradients must agree to 1e-10 in float64 in every mode, with lengths, random skipping and a
state passed in, both with the C step kernels (skiprnn.backends.native) and with the Python steps; a gradcheck
verifies the hand-written backward pass on its own.
"""
import itertools
import math
from types import SimpleNamespace

import pytest
import torch

import skiprnn.backends.fused as fused_module
from skiprnn import SkipRNN
from skiprnn.backends import native
from skiprnn.backends.flags import current as backend_flags
from skiprnn.backends.fused import FusedSkipRNN, common, gate, pool
from skiprnn.cells import SkipState

MODES = ("lstm", "gru", "skip_lstm", "skip_gru")
DT = torch.float64
T, B, I, H = 11, 5, 3, 4


def make(mode, seed=0, p_skip=0.0, hidden=H, inp=I, **kw):
    torch.manual_seed(seed)
    model = SkipRNN(mode, inp, hidden, p_skip=p_skip, **kw).to(DT)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.7)
        if model.gated:  # bias near 0, weights of scale ~1: a mix of updates and skips
            model.update_gate.weight.normal_(0, 1.0)
            model.update_gate.bias.fill_(-0.3)
    return model


def random_state(mode, batch=B, hidden=H, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(1, batch, hidden, generator=g, dtype=DT).requires_grad_()
    c = torch.randn(1, batch, hidden, generator=g, dtype=DT).requires_grad_() if "lstm" in mode else None
    up = (0.3 + 0.7 * torch.rand(batch, generator=g, dtype=DT)).requires_grad_()
    cum = (0.4 * torch.rand(batch, generator=g, dtype=DT)).requires_grad_()
    return SkipState(h, c, up, cum)


def run(model, x, fused, lengths=None, state=None, seed=5):
    """Forward + backward of a loss mixing every output with random coefficients; returns values and grads."""
    model.fused = fused
    model.zero_grad(set_to_none=True)
    if state is not None:
        for s in state:
            if s is not None:
                s.grad = None
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # the same random-skip mask on both paths
    out = model(x, state, lengths=lengths)
    g = torch.Generator().manual_seed(99)
    parts = [out.output, out.updates, *[s for s in out.state if s is not None]]
    loss = sum((torch.randn(p.shape, generator=g, dtype=DT) * p).sum() for p in parts)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads["x"] = x.grad
    if state is not None:
        grads.update({f"state.{k}": s.grad for k, s in state._asdict().items() if s is not None})
    return out, {k: (None if v is None else v.clone()) for k, v in grads.items()}


@pytest.fixture(params=["native", "python"])
def steps(request, monkeypatch):
    """Runs a test with each implementation of the fused path's steps: C kernels and tensor ops."""
    if request.param == "native" and native.kernels(DT) is None:
        pytest.skip("the C step kernels could not be built here (no C compiler?)")
    monkeypatch.setattr(backend_flags, "native", request.param == "native")
    return request.param


def assert_close(a, b, what):
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "with_lengths, p_skip, with_state", list(itertools.product([False, True], [0.0, 0.3], [False, True]))
)
def test_fused_matches_reference(mode, with_lengths, p_skip, with_state, steps):
    model = make(mode, p_skip=p_skip)
    x = torch.randn(T, B, I, dtype=DT)
    lengths = torch.tensor([T, 7, 1, 10, T]) if with_lengths else None
    state = random_state(mode) if with_state else None
    ref, ref_grads = run(model, x, False, lengths, state)
    out, grads = run(model, x, True, lengths, state)
    if model.gated:
        assert 0 < ref.updates.sum() < ref.updates.numel() - 1  # updates and skips both happen
    assert_close(out.output, ref.output, "output")
    assert_close(out.updates, ref.updates, "updates")
    for name in SkipState._fields:
        a, b = getattr(out.state, name), getattr(ref.state, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape
            assert_close(a, b, f"state.{name}")
    assert ref_grads.keys() == grads.keys()
    for name, g_ref in ref_grads.items():
        assert (grads[name] is None) == (g_ref is None), name
        if g_ref is not None:
            assert grads[name].shape == g_ref.shape, name
            assert_close(grads[name], g_ref, f"grad {name}")


@pytest.mark.parametrize("mode", MODES)
def test_no_grad_forward_matches_reference(mode, steps):
    """Without autograd (the dense eval path) the fused forward keeps less but computes the same."""
    model = make(mode, p_skip=0.2).eval()
    model.skip_inference = False
    x = torch.randn(T, B, I, dtype=DT)
    lengths = torch.tensor([T, 3, 1, 8, T])
    with torch.no_grad():
        outs = []
        for fused in (False, True):
            model.fused = fused
            torch.manual_seed(2)
            outs.append(model(x, random_state(mode), lengths=lengths))
    ref, out = outs
    assert_close(out.output, ref.output, "output")
    assert_close(out.updates, ref.updates, "updates")
    for a, b in zip(out.state, ref.state):
        if a is not None:
            assert_close(a, b, "state")


def test_fused_is_the_default_for_one_layer_only(monkeypatch):
    calls = []

    def fake_apply(*args):
        calls.append(1)
        raise RuntimeError("fused")

    monkeypatch.setattr(FusedSkipRNN, "apply", fake_apply)
    with pytest.raises(RuntimeError, match="fused"):
        SkipRNN("skip_gru", 2, 3)(torch.randn(4, 2, 2))
    SkipRNN("skip_gru", 2, 3, num_layers=2)(torch.randn(4, 2, 2))  # stacks take the reference loop
    SkipRNN("skip_gru", 2, 3, fused=False)(torch.randn(4, 2, 2))
    assert calls == [1]


def test_batch_first_and_expanded_initial_state(steps):
    model = make("skip_lstm")
    x = torch.randn(B, T, I, dtype=DT)
    model.batch_first = True
    ref, ref_grads = run(model, x, False)
    out, grads = run(model, x, True)
    assert out.output.shape == (B, T, H) and out.updates.shape == (B, T)
    assert_close(out.output, ref.output, "output")
    for name in ("h0", "c0", "update_gate.weight"):  # h0, c0 are (1, 1, H) parameters broadcast over B
        assert grads[name].shape == model.get_parameter(name).shape
        assert_close(grads[name], ref_grads[name], name)


def test_strided_initial_cell_state(steps):
    """A state whose rows are not contiguous (here a transposed buffer) gives the per-step loop's result."""
    model = make("skip_lstm")
    x = torch.randn(T, B, I, dtype=DT)
    state = random_state("skip_lstm")
    c = state.c.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()  # strides (B·H, 1, B)
    assert c.stride(2) != 1
    ref, ref_grads = run(model, x, False, state=state)  # the reference backend, contiguous state
    out, grads = run(model, x, True, state=state._replace(c=c))
    assert_close(out.output, ref.output, "output")
    assert grads.keys() == ref_grads.keys()
    for name, g_ref in ref_grads.items():
        assert_close(grads[name], g_ref, f"grad {name}")


@pytest.mark.parametrize("mode", ["skip_lstm", "skip_gru"])
def test_reused_buffers_never_clobber_live_tensors(mode, monkeypatch, steps):
    """Buffers are pooled across calls: a second forward must not overwrite tensors the first still uses
    (its outputs, or what its backward pass needs)."""
    monkeypatch.setattr(pool, "_POOL_MIN_BYTES", 0)  # pool every buffer, even these tiny ones
    fused_module.empty_cache()
    model = make(mode)
    x1, x2 = torch.randn(2, T, B, I, dtype=DT)
    first = model(x1)
    kept = first.output.detach().clone()
    loss1 = first.output.pow(2).sum() + first.updates.sum()
    second = model(x2)
    (second.output.sum()).backward()
    assert torch.equal(first.output.detach(), kept)
    model.zero_grad()
    loss1.backward(retain_graph=True)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x2)  # a third forward while the first graph is still retained
    loss1.backward()
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
    # and without the pool's buffers the result is the same
    model.zero_grad()
    fused_module.empty_cache()
    again = model(x1)
    (again.output.pow(2).sum() + again.updates.sum()).backward()
    for p, g in zip(model.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-12)
    assert pool._POOL  # the pool was used
    fused_module.empty_cache()


# --------------------------------------------------------------------------------------------- gradcheck
def _function_inputs(mode, seed):
    g = torch.Generator().manual_seed(seed)
    steps, batch, inp, hs = 6, 2, 2, 3
    gates = (4 if "lstm" in mode else 3) * hs
    rnd = lambda *s, scale=0.6: (scale * torch.randn(*s, generator=g, dtype=DT)).requires_grad_()  # noqa: E731
    x, w_ih, bias, w_hh = rnd(steps, batch, inp, scale=1.0), rnd(gates, inp), rnd(gates), rnd(gates, hs)
    h0 = rnd(batch, hs, scale=1.0)
    c0 = rnd(batch, hs, scale=1.0) if "lstm" in mode else None
    # Δũ + cum != 1: no tie in min(Δũ, 1 − cum), where the function has a kink
    up0 = torch.tensor([0.45, 0.8], dtype=DT, requires_grad=True)
    cum0 = torch.tensor([0.2, 0.05], dtype=DT, requires_grad=True)
    gate_w, gate_b = rnd(1, hs, scale=1.5), torch.tensor([-0.3], dtype=DT, requires_grad=True)
    keep = (torch.rand(steps, batch, 1, generator=g) > 0.25).to(DT)
    keep[0] = 1.0
    valid = torch.ones(steps, batch, 1, dtype=DT)
    valid[4:, 1] = 0.0
    return [x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, keep * valid, valid]


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode, monkeypatch):
    """torch.autograd.gradcheck of FusedSkipRNN on a tiny problem, with masks (keep and lengths).

    The STE's gradient is not the derivative of round(), which is 0 almost everywhere. For the gated modes
    the rounding is therefore replaced by its relaxation at the evaluation point, u = round(ũ⁰) + (ũ − ũ⁰):
    the same values there, and a smooth function whose exact derivative is the STE's (as in
    tests/nn/test_rnn.py). The problem is chosen away from the min(Δũ, 1 − cum) kink. A substituted rounding
    runs the Python steps; the C kernels are held to them by test_fused_matches_reference."""
    cell, gated = mode.removeprefix("skip_"), mode.startswith("skip_")
    inputs = _function_inputs(mode, seed=3)
    run_fn = lambda *a: FusedSkipRNN.apply(*a, cell, gated, True)  # noqa: E731
    monkeypatch.setattr(backend_flags, "native", False)  # the C kernels round on their own: Python steps only
    if gated:
        with torch.no_grad():
            recorded = []
            monkeypatch.setattr(
                gate, "_round", lambda u, out, t: recorded.append(u.clone()) or torch.round(u, out=out)
            )
            run_fn(*inputs)
        steps = len(recorded)
        u0 = torch.stack(recorded)
        assert (u0 - 0.5).abs().min() > 1e-3 and (u0 - 1.5).abs().min() > 1e-3
        monkeypatch.setattr(
            gate, "_round", lambda u, out, t: torch.add(u, torch.round(u0[t % steps]) - u0[t % steps], out=out)
        )
    assert torch.autograd.gradcheck(run_fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    if gated:  # the check exercised both updates and skips
        updates = run_fn(*inputs)[-3]
        assert 0 < updates.round().sum() < updates.numel()


@pytest.mark.parametrize("broken", ["missing", "new signature", "wrong result"])
def test_a_changed_onednn_op_falls_back_to_torch_mm(broken, monkeypatch):
    """The oneDNN op is private: a torch release that drops it, changes its arguments or its meaning is detected
    when skiprnn is imported, not in the middle of a training run."""
    class Ops:  # stands in for torch.ops.mkldnn
        def __getattr__(self, name):
            raise AttributeError(name)

    fakes = {"missing": Ops(),
             "new signature": SimpleNamespace(_linear_pointwise=lambda a, w, b, attr: a @ w.t()),
             "wrong result": SimpleNamespace(_linear_pointwise=lambda a, w, *rest: a @ w.t() + 1)}
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops, "mkldnn", fakes[broken])
    assert common._probe_onednn() is None
    monkeypatch.setattr(torch.ops, "mkldnn", SimpleNamespace(_linear_pointwise=lambda a, w, b, attr, s, alg: a @ w.t()))
    assert common._probe_onednn() is not None  # the same probe accepts an op that behaves as expected


@pytest.mark.skipif(common._onednn() is None, reason="this torch build has no oneDNN")
@pytest.mark.parametrize("mode", MODES)
def test_onednn_matmuls_agree_with_torch_mm(mode, monkeypatch):
    """The Python steps (the C kernels compute their own products) take oneDNN's matmul in float32 on CPU with >= 32
    rows; it must agree with torch.mm to float rounding."""
    monkeypatch.setattr(backend_flags, "native", False)
    torch.manual_seed(0)
    model = SkipRNN(mode, 3, 16)
    if model.gated:  # a constant Δũ = 0.375 (update every other step): no ũ near a rounding tie
        with torch.no_grad():
            model.update_gate.weight.zero_()
            model.update_gate.bias.fill_(math.log(0.375 / 0.625))
    x = torch.randn(9, 40, 3)
    calls, onednn = [], common._onednn()
    monkeypatch.setattr(common, "_onednn", lambda: lambda *args: calls.append(1) or onednn(*args))
    results = []
    for use in (True, False):
        calls.clear()
        monkeypatch.setattr(backend_flags, "onednn", use)
        model.zero_grad(set_to_none=True)
        out = model(x)
        (out.output.square().sum() + out.updates.sum()).backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        assert bool(calls) == use
    (a, grads_a), (b, grads_b) = results
    assert torch.equal(a.updates, b.updates)
    torch.testing.assert_close(a.output, b.output, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-5, msg=name)


def test_flags_switch_backends_inside_a_block_and_restore_them():
    from skiprnn import backends

    before = (backend_flags.native, backend_flags.onednn)
    calls = []
    real = common.native.kernels
    with backends.flags(native=False, onednn=False) as now:
        assert (now.native, now.onednn) == (False, False)
        common.native.kernels = lambda dtype, numerics="fast": calls.append(dtype) or real(dtype)
        try:
            model = make("skip_gru")
            model(torch.randn(4, 2, I, dtype=DT))
        finally:
            common.native.kernels = real
        with backends.flags(onednn=True):  # None leaves native as it is
            assert (backend_flags.native, backend_flags.onednn) == (False, True)
        assert backend_flags.onednn is False
    assert calls == []  # native=False: the kernels were never asked for
    assert (backend_flags.native, backend_flags.onednn) == before
    with pytest.raises(TypeError, match="native"):
        with backends.flags(native="no"):
            pass
    assert (backend_flags.native, backend_flags.onednn) == before
