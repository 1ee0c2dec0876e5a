"""The eval-mode skipping path (skiprnn.backends.skipping) against the dense masked path (skip_inference=False).

Both must give the same outputs, update patterns and final states, for one sequence (host-side ũ
recursion) and for a batch (row compaction), in every mode, with lengths, random skipping and a state.
"""
import itertools
import os

import pytest
import torch

from skiprnn import SkipRNN
from skiprnn.backends import native, numerics
from skiprnn.backends import skipping as inference
from skiprnn.backends.flags import current as backend_flags
from skiprnn.cells import SkipState

MODES = ("lstm", "gru", "skip_lstm", "skip_gru")
T, H = 40, 8


@pytest.fixture(params=["native", "python"])
def steps(request, monkeypatch):
    """A single layer runs the sequence in one C call (skip_sequence at batch 1, skip_batch above) or in Python:
    test both."""
    if request.param == "native" and native.kernels(torch.float32) is None:
        pytest.skip("the C kernels could not be built here (no C compiler?)")
    monkeypatch.setattr(backend_flags, "native", request.param == "native")
    return request.param


def make(mode, inp=3, layers=1, p_skip=0.0, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    model = SkipRNN(mode, inp, H, num_layers=layers, p_skip=p_skip).to(dtype).eval()
    if model.gated:  # bias near 0, weights of scale ~1: a mix of updates and skips
        with torch.no_grad():
            model.update_gate.weight.normal_(0, 1.0)
            model.update_gate.bias.fill_(-0.3)
    return model


def random_state(mode, layers, batch, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(layers, batch, H, generator=g, dtype=dtype)
    c = torch.randn(layers, batch, H, generator=g, dtype=dtype) if "lstm" in mode else None
    up = 0.3 + 0.7 * torch.rand(batch, generator=g, dtype=dtype)
    cum = 0.4 * torch.rand(batch, generator=g, dtype=dtype)
    return SkipState(h, c, up, cum)


def both_paths(model, x, state=None, lengths=None, seed=7):
    outs = []
    with torch.no_grad():
        for skip in (False, True):
            model.skip_inference = skip
            torch.manual_seed(seed)  # the same random-skip mask on both paths
            outs.append(model(x, state, lengths=lengths))
    return outs


def assert_same(dense, skipping):
    torch.testing.assert_close(skipping.output, dense.output, rtol=0, atol=1e-6)
    torch.testing.assert_close(skipping.updates, dense.updates, rtol=0, atol=0)
    for name in SkipState._fields:
        a, b = getattr(skipping.state, name), getattr(dense.state, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.shape == b.shape, name
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=lambda m, name=name: f"state.{name}: {m}")


# A plain cell with nothing masked has nothing to skip: the skipping backend hands it to the dense one (checked by
# test_a_plain_cell_with_nothing_to_skip_takes_the_dense_path), so comparing the two there would compare a path with
# itself. Those combinations are left out.
CASES = [(mode, batch, with_lengths, p_skip, with_state)
         for mode, batch, with_lengths, p_skip, with_state in itertools.product(
             MODES, [1, 5], [False, True], [0.0, 0.3], [False, True])
         if mode.startswith("skip_") or with_lengths or p_skip]


@pytest.mark.parametrize("mode, batch, with_lengths, p_skip, with_state", CASES)
def test_skipping_path_matches_dense_path(mode, batch, with_lengths, p_skip, with_state, steps):
    model = make(mode, p_skip=p_skip)
    x = torch.randn(T, batch, 3)
    lengths = torch.tensor([T, 23, 1, 31, 9][:batch] if batch > 1 else [23]) if with_lengths else None
    state = random_state(mode, 1, batch, torch.float32) if with_state else None
    dense, skipping = both_paths(model, x, state, lengths)
    if model.gated:
        steps = T * batch if lengths is None else int(lengths.sum())
        assert 0 < dense.updates.sum() < 0.9 * steps  # skips happen
    assert_same(dense, skipping)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", [1, 4])
def test_stacks_wide_inputs_and_float64(mode, batch):
    """Two layers; input wider than the state (the batch-1 path then projects only updated steps); float64."""
    for dtype in (torch.float32, torch.float64):
        model = make(mode, inp=2 * H + 1, layers=2, p_skip=0.2, dtype=dtype)
        x = torch.randn(T, batch, 2 * H + 1, dtype=dtype)
        lengths = torch.tensor([T, 11, 1, 30][:batch])
        dense, skipping = both_paths(model, x, random_state(mode, 2, batch, dtype), lengths)
        assert_same(dense, skipping)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", [1, 3])
def test_one_layer_float64_and_wide_inputs(mode, batch, steps):
    """One layer (the C call, or the Python loop, which at batch 1 projects only updated steps when the input
    is wider than the state), in float32 and float64."""
    for dtype in (torch.float32, torch.float64):
        model = make(mode, inp=2 * H + 1, p_skip=0.2, dtype=dtype)
        x = torch.randn(T, batch, 2 * H + 1, dtype=dtype)
        lengths = torch.tensor([31, T, 5][:batch])
        dense, skipping = both_paths(model, x, random_state(mode, 1, batch, dtype), lengths)
        assert_same(dense, skipping)


@pytest.mark.parametrize("mode", ["skip_lstm", "skip_gru"])
@pytest.mark.parametrize("bias, period", [(2.0, 1), (0.0, 2), (-2.0, 5), (-3.0, 11)])
def test_constant_gate_patterns(mode, bias, period, steps):
    """With a constant Δũ = σ(b) the update pattern is periodic; both paths agree at batch 1 and 3."""
    model = make(mode)
    with torch.no_grad():
        model.update_gate.weight.zero_()
        model.update_gate.bias.fill_(bias)
    for batch in (1, 3):
        dense, skipping = both_paths(model, torch.randn(T, batch, 3))
        expected = torch.tensor([1.0 if t % period == 0 else 0.0 for t in range(T)])
        assert torch.equal(dense.updates, expected[:, None].expand(T, batch))
        assert_same(dense, skipping)


@pytest.mark.parametrize("batch", [1, 4])
def test_skipped_steps_do_not_evaluate_the_cell(batch, monkeypatch):
    """The point of the path: the cell runs only for the rows and steps that update (counted on the
    Python path; the C path for one sequence branches on u_t the same way, see the next test)."""
    monkeypatch.setattr(backend_flags, "native", False)
    model = make("skip_gru")
    with torch.no_grad():
        model.update_gate.weight.zero_()
        model.update_gate.bias.fill_(-2.0)  # one update every 5 steps
    rows, make_updater = [], inference._updater

    def counting_updater(rnn):
        update = make_updater(rnn)
        return lambda xp, *rest: rows.append(xp.shape[0]) or update(xp, *rest)

    monkeypatch.setattr(inference, "_updater", counting_updater)
    dense, skipping = both_paths(model, torch.randn(T, batch, 3))
    assert_same(dense, skipping)
    assert sum(rows) == int(skipping.updates.sum()) == batch * T // 5


@pytest.mark.skipif(native.kernels(torch.float32) is None, reason="the C kernels could not be built here")
@pytest.mark.parametrize("mode, batch", [("skip_lstm", 1), ("gru", 1), ("skip_gru", 6), ("lstm", 6)])
def test_a_sequence_of_one_layer_runs_in_one_c_call(mode, batch, monkeypatch):
    calls = []
    kernels = native.kernels(torch.float32)
    name = "skip_sequence" if batch == 1 else "skip_batch"
    real = getattr(kernels, name)

    class Counting:  # the kernel, counting its calls and the steps each covers
        args = real.args

        def __call__(self, args):
            calls.append(args.T)
            real(args)

        def run(self, **fields):
            calls.append(fields["T"])
            real.run(**fields)

    monkeypatch.setattr(kernels, name, Counting())
    monkeypatch.setattr(inference, "_updater", None)  # the Python loop must not run
    model = make(mode, p_skip=0.3)
    dense, skipping = both_paths(model, torch.randn(T, batch, 3))
    assert_same(dense, skipping)
    assert calls == [T]


@pytest.mark.skipif(os.uname().machine != "x86_64" or not {"avx2", "fma"} <= numerics._cpu_flags(),
                    reason="numerics=reproducible needs an x86-64 CPU with AVX2 and FMA")
@pytest.mark.parametrize("mode", ["skip_lstm", "skip_gru"])
def test_a_skipping_batch_gives_the_dense_bits_in_the_reproducible_mode(mode, monkeypatch):
    """Its matmul sums each element as the dense step's does, whichever rows update with it and whichever thread
    computes it: the same bits, not merely close ones (wide inputs: more than one block of k)."""
    if native.kernels(torch.float32, "reproducible") is None:
        pytest.skip("the C kernels could not be built here")
    monkeypatch.setitem(numerics._STATE, "mode", "reproducible")  # the matmuls' route; ATen's code is shared
    model = make(mode, inp=300)
    batch = 64  # enough work for the kernel's threads, where there are several
    lengths = torch.randint(1, T + 1, (batch,), generator=torch.Generator().manual_seed(3))
    dense, skipping = both_paths(model, torch.randn(T, batch, 300), state=random_state(mode, 1, batch, torch.float32),
                                 lengths=lengths)
    assert 0 < skipping.updates.mean() < 1
    assert torch.equal(skipping.output, dense.output) and torch.equal(skipping.updates, dense.updates)
    for name in SkipState._fields:
        a, b = getattr(skipping.state, name), getattr(dense.state, name)
        assert (a is None and b is None) or torch.equal(a, b), name


def test_continuing_a_stream_step_by_step():
    """Streaming: feeding one step at a time with the returned state gives the whole-sequence result."""
    model = make("skip_lstm")
    x = torch.randn(T, 1, 3)
    with torch.no_grad():
        whole = model(x)
        state, outputs, updates = None, [], []
        for t in range(T):
            step = model(x[t : t + 1], state)
            state = step.state
            outputs.append(step.output)
            updates.append(step.updates)
    torch.testing.assert_close(torch.cat(outputs), whole.output, rtol=0, atol=1e-6)
    assert torch.equal(torch.cat(updates), whole.updates)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_a_plain_cell_with_nothing_to_skip_takes_the_dense_path(mode, monkeypatch):
    from skiprnn.backends import fused

    calls = []
    real = fused.forward
    monkeypatch.setattr(fused, "forward", lambda *a: calls.append(1) or real(*a))
    model = make(mode)
    model.skip_inference = True
    with torch.no_grad():
        model(torch.randn(T, 3, 3))
    assert calls == [1]
