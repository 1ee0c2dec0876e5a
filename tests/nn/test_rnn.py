"""The Skip RNN maths against independent computations: closed-form gate sequences, finite differences,
torch's own LSTM cell and a hand-written TF-style GRU."""
import math

import pytest
import torch

import skiprnn.backends.reference as rnn_module
from skiprnn import SkipRNN, backends, budget_loss

SKIP_MODES = ("skip_lstm", "skip_gru")


def make(mode, input_size=3, hidden=8, layers=1, dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    return SkipRNN(mode, input_size, hidden, num_layers=layers, **kw).to(dtype)


def reference(model):
    """Force the per-step autograd loop (the path every faster path is checked against)."""
    model.fused = False
    return model


def constant_gate(model, bias):
    with torch.no_grad():
        model.update_gate.weight.zero_()
        model.update_gate.bias.fill_(bias)


def closed_form_pattern(delta, steps):
    """Eq. 5 with a constant Δũ: update at t=1, then after each update ũ grows by Δ (capped at 1)
    and u = round(ũ), where round(0.5) = 0 (half to even)."""
    pattern, u_tilde = [], 1.0
    for _ in range(steps):
        u = 1 if u_tilde > 0.5 else 0
        pattern.append(u)
        u_tilde = delta if u else u_tilde + min(delta, 1 - u_tilde)
    return pattern


@pytest.mark.parametrize("mode", SKIP_MODES)
@pytest.mark.parametrize(
    "bias, period",
    [(2.0, 1), (-1.0, 2), (-2.0, 5), (-3.0, 11), (0.0, 2)],  # b = 0: Δ = 0.5 lands exactly on 0.5 -> skip
)
def test_constant_gate_follows_closed_form(mode, bias, period):
    model = make(mode)
    constant_gate(model, bias)
    delta = 1 / (1 + math.exp(-bias))
    # The period, worked by hand: the smallest k with k·Δ > 0.5 (strictly, since round(0.5) = 0).
    assert min(k for k in range(1, 50) if k * delta > 0.5) == period
    expected = [1 if t % period == 0 else 0 for t in range(33)]
    assert closed_form_pattern(delta, 33) == expected
    out = model(torch.randn(33, 4, 3))
    assert out.updates.shape == (33, 4)
    for b in range(4):
        assert out.updates[:, b].tolist() == expected


def test_half_is_rounded_to_even_not_up():
    """Δ = 0.5 gives ũ = 0.5 after an update; tf.round and torch.round give 0 there, so the step is skipped
    (Eq. 6 with ≥ would predict no skip)."""
    model = make("skip_gru")
    constant_gate(model, 0.0)
    out = model(torch.randn(6, 2, 3))
    assert out.updates[:, 0].tolist() == [1, 0, 1, 0, 1, 0]


@pytest.mark.parametrize("mode", SKIP_MODES)
def test_first_step_always_updates_and_skips_copy_every_layer(mode):
    model = make(mode, layers=2, hidden=6)
    with torch.no_grad():
        model.update_gate.weight.normal_(0, 2.0)
        model.update_gate.bias.fill_(-0.5)
    x = torch.randn(25, 5, 3)
    full = model(x)
    assert torch.all(full.updates[0] == 1)
    # Replay one step at a time: a skipped step leaves the output and every layer's state unchanged.
    state, skipped = None, 0
    for t in range(25):
        prev = state
        step = model(x[t : t + 1], state)
        state = step.state
        torch.testing.assert_close(step.output[0], full.output[t], rtol=0, atol=1e-6)
        for b in range(5):
            if step.updates[0, b] == 0:
                skipped += 1
                assert torch.equal(step.output[0, b], prev.h[-1, b])
                assert torch.equal(state.h[:, b], prev.h[:, b])
                if state.c is not None:
                    assert torch.equal(state.c[:, b], prev.c[:, b])
    assert 0 < skipped < 25 * 5  # the test exercised both branches


@pytest.mark.parametrize("mode", SKIP_MODES)
def test_straight_through_gradient_matches_finite_differences(mode, monkeypatch):
    """The STE gradient is the exact derivative of the function in which each u_t = round(ũ_t⁰) + (ũ_t − ũ_t⁰),
    ũ⁰ being the values at the evaluation point. Check the gate's gradient against central differences of that
    relaxed function in float64."""
    model = reference(make(mode, dtype=torch.float64, hidden=5))
    g = torch.Generator().manual_seed(1)  # data independent of how many draws the initialisation took
    with torch.no_grad():
        model.update_gate.weight.copy_(1.5 * torch.randn(1, 5, generator=g, dtype=torch.float64))
        model.update_gate.bias.fill_(-1.0)
    x = torch.randn(12, 3, 3, dtype=torch.float64, generator=g)
    coef = torch.randn(12, 3, dtype=torch.float64, generator=g)

    def loss_of(out):
        return out.output.sum() * 0.1 + (coef * out.updates).sum() + out.state.h.pow(2).sum()

    recorded = []
    monkeypatch.setattr(rnn_module, "round_ste", lambda u: recorded.append(u.detach().clone()) or torch.round(u) + u - u.detach())
    out = model(x)
    assert 0 < out.updates.sum() < out.updates.numel()  # a mix of updates and skips
    loss_of(out).backward()
    analytic = torch.cat([model.update_gate.weight.grad.flatten(), model.update_gate.bias.grad])
    assert analytic.abs().max() > 1e-6  # the gate really receives a gradient

    points = list(recorded)

    def relaxed_loss():
        queue = iter(points)
        with monkeypatch.context() as m:
            m.setattr(rnn_module, "round_ste", lambda u: (lambda u0: torch.round(u0) + (u - u0))(next(queue)))
            with torch.no_grad():
                return loss_of(model(x)).item()

    numeric, eps = [], 1e-6
    for param in (model.update_gate.weight, model.update_gate.bias):
        flat = param.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            up = relaxed_loss()
            flat[i] = old - eps
            down = relaxed_loss()
            flat[i] = old
            numeric.append((up - down) / (2 * eps))
    torch.testing.assert_close(analytic, torch.tensor(numeric, dtype=torch.float64), rtol=1e-5, atol=1e-7)


def test_budget_loss_gradient_reaches_the_gate():
    model = make("skip_lstm")
    out = model(torch.randn(10, 4, 3))
    budget_loss(out.updates, 1e-2).backward()
    assert model.update_gate.weight.grad.abs().sum() > 0
    assert model.update_gate.bias.grad.abs().sum() > 0


def test_plain_lstm_matches_torch_lstm_cell():
    """Map our TF-style weights (i, j, f, o; forget bias +1) onto torch.nn.LSTMCell (i, f, g, o)."""
    model = make("lstm", dtype=torch.float64)
    with torch.no_grad():
        model.cells[0].bias.normal_()
    cell = model.cells[0]
    ref = torch.nn.LSTMCell(3, 8).double()
    with torch.no_grad():
        wi, wj, wf, wo = cell.weight_ih.chunk(4)
        ref.weight_ih.copy_(torch.cat([wi, wf, wj, wo]))
        wi, wj, wf, wo = cell.weight_hh.chunk(4)
        ref.weight_hh.copy_(torch.cat([wi, wf, wj, wo]))
        bi, bj, bf, bo = cell.bias.chunk(4)
        ref.bias_ih.copy_(torch.cat([bi, bf + 1.0, bj, bo]))
        ref.bias_hh.zero_()
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    out = model(x)
    h, c = model.h0[0].expand(2, -1), model.c0[0].expand(2, -1)
    for t in range(7):
        h, c = ref(x[t], (h, c))
        torch.testing.assert_close(out.output[t], h)
    torch.testing.assert_close(out.state.c[0], c)
    assert torch.all(out.updates == 1)


def test_plain_gru_matches_hand_computed_tf_gru():
    """TF's GRU applies the reset gate before the candidate matmul (torch.nn.GRUCell applies it after)."""
    model = make("gru", dtype=torch.float64)
    cell = model.cells[0]
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    out = model(x)
    w_ih, w_hh, b = cell.weight_ih.detach(), cell.weight_hh.detach(), cell.bias.detach()
    h = model.h0[0].detach().expand(2, -1)
    for t in range(6):
        r = torch.sigmoid(x[t] @ w_ih[:8].T + h @ w_hh[:8].T + b[:8])
        z = torch.sigmoid(x[t] @ w_ih[8:16].T + h @ w_hh[8:16].T + b[8:16])
        n = torch.tanh(x[t] @ w_ih[16:].T + (r * h) @ w_hh[16:].T + b[16:])
        h = z * h + (1 - z) * n
        torch.testing.assert_close(out.output[t], h)


def test_initialisation_follows_the_original_code():
    lstm, gru = make("skip_lstm", hidden=20), make("skip_gru", hidden=20)
    assert torch.all(lstm.cells[0].bias == 0)
    assert torch.all(gru.cells[0].bias[:40] == 1) and torch.all(gru.cells[0].bias[40:] == 0)
    assert lstm.update_gate.bias.item() == 1.0 and isinstance(lstm.update_gate, torch.nn.Linear)
    assert lstm.update_gate.in_features == 20 and lstm.update_gate.out_features == 1
    bound = math.sqrt(6 / (3 + 20 + 80))  # Glorot over the concatenated [x, h] kernel
    assert lstm.cells[0].weight_hh.abs().max() <= bound
    assert lstm.h0.shape == (1, 1, 20) and lstm.c0.shape == (1, 1, 20)


def test_stack_gate_comes_from_top_layer_and_upper_layers_read_the_layer_below():
    model = make("skip_gru", layers=2, hidden=5, dtype=torch.float64)
    with torch.no_grad():
        model.update_gate.weight.normal_(0, 3.0)
        model.update_gate.bias.fill_(0.0)
    x = torch.randn(15, 2, 3, dtype=torch.float64)
    out = model(x)
    bottom, top = model.cells
    h = [model.h0[0].expand(2, -1), model.h0[1].expand(2, -1)]
    up, cum = torch.ones(2, 1, dtype=x.dtype), torch.zeros(2, 1, dtype=x.dtype)
    for t in range(15):
        h1, _ = bottom.step(bottom.project_input(x[t]), h[0])
        h2, _ = top.step(top.project_input(h1), h[1])
        u_tilde = cum + torch.minimum(up, 1 - cum)
        u = torch.round(u_tilde)
        assert out.updates[t].tolist() == u[:, 0].tolist()
        h = [torch.where(u > 0, h1, h[0]), torch.where(u > 0, h2, h[1])]
        delta = torch.sigmoid(model.update_gate(h2))
        up = torch.where(u > 0, delta, up)
        cum = (1 - u) * u_tilde
        torch.testing.assert_close(out.output[t], h[1])
    assert 0 < out.updates.sum() < 30


@pytest.mark.parametrize("mode", ["lstm", "skip_lstm", "gru", "skip_gru"])
def test_lengths_match_running_each_sequence_alone(mode):
    model = make(mode, layers=2 if mode.endswith("gru") else 1)
    if model.gated:
        constant_gate(model, -1.0)
    x = torch.randn(9, 3, 3)
    lengths = torch.tensor([9, 4, 1])
    out = model(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[:n, b : b + 1])
        torch.testing.assert_close(out.output[:n, b], alone.output[:, 0], rtol=0, atol=1e-6)
        torch.testing.assert_close(out.state.h[:, b], alone.state.h[:, 0], rtol=0, atol=1e-6)
        torch.testing.assert_close(out.updates[:n, b], alone.updates[:, 0])
        assert torch.all(out.updates[n:, b] == 0)
        assert torch.all(out.output[n:, b] == out.output[n - 1, b])  # padding copies the last state
    per_seq = out.updates.sum(0)
    torch.testing.assert_close(budget_loss(out.updates, 0.5, lengths), 0.5 * per_seq.mean())


def test_budget_loss_is_lambda_times_batch_mean_of_update_counts():
    updates = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # (T=3, B=2)
    assert budget_loss(updates, 0.1).item() == pytest.approx(0.1 * (2 + 3) / 2)
    assert budget_loss(updates, 0.1, lengths=torch.tensor([3, 1])).item() == pytest.approx(0.1 * (2 + 1) / 2)
    assert budget_loss(updates.T, 0.1, batch_first=True).item() == pytest.approx(0.25)


@pytest.mark.parametrize("mode,p", [("lstm", 0.5), ("gru", 0.2), ("gru", 0.02)])
def test_random_skip_rate_draws_every_step(mode, p):
    """Every step, the first included, is skipped with probability p (the paper's 50.0%, not 51.0%, at p = 0.5)."""
    model = make(mode, p_skip=p)
    steps, batch = 200, 200
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(torch.randn(steps, batch, 3))
        n = steps * batch
        assert abs(1 - out.updates.mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
        first = 1 - out.updates[0].mean().item()  # fails with a forced first step (rate 0)
        assert abs(first - p) < 5 * math.sqrt(p * (1 - p) / batch)
        # skipped steps copy the state; before the first kept step it is the learned initial state
        skipped = out.updates[1:] == 0
        assert torch.equal(out.output[1:][skipped], out.output[:-1][skipped])
        h0 = model.h0[-1, 0]
        for b in torch.nonzero(out.updates[0] == 0).flatten().tolist():
            assert torch.equal(out.output[0, b], h0)


def test_random_skip_keep_first_switch_keeps_step_one():
    model = make("lstm", p_skip=0.5, p_skip_keep_first=True)
    with torch.no_grad():
        out = model(torch.randn(100, 400, 3))
    assert torch.all(out.updates[0] == 1)
    p, n = 0.5, 99 * 400
    assert abs(1 - out.updates[1:].mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("hidden", [20, 110])
def test_update_gate_weight_is_glorot_uniform_by_default(hidden):
    """W_p ~ U(±sqrt(6 / (H + 1))), the original code's TF default; torch's would be U(±1/sqrt(H))."""
    bound = math.sqrt(6 / (hidden + 1))
    weights = torch.cat([make("skip_gru", hidden=hidden, seed=s).update_gate.weight.flatten() for s in range(40)])
    assert weights.abs().max() <= bound
    # the spread of a uniform on [-b, b]: b / sqrt(3); torch's default would give 1 / sqrt(3 H)
    std = weights.std().item()
    assert abs(std - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
    assert weights.abs().max() > 0.9 * bound  # the whole range is used, not torch's 2.4x narrower one
    torch_init = make("skip_gru", hidden=hidden, gate_init="torch").update_gate.weight
    assert torch_init.abs().max() <= 1 / math.sqrt(hidden)
    for model in (make("skip_lstm", hidden=hidden), make("skip_lstm", hidden=hidden, gate_init="torch")):
        assert model.update_gate.bias.item() == 1.0


def test_batch_size_independence_and_batch_first():
    model = make("skip_lstm")
    constant_gate(model, -1.5)
    x = torch.randn(20, 8, 3)
    many = model(x)
    one = model(x[:, 5:6])
    torch.testing.assert_close(one.output[:, 0], many.output[:, 5], rtol=0, atol=1e-6)
    model.batch_first = True
    bf = model(x.transpose(0, 1))
    assert bf.output.shape == (8, 20, 8) and bf.updates.shape == (8, 20)
    torch.testing.assert_close(bf.output.transpose(0, 1), many.output)


def test_state_continues_a_sequence():
    model = make("skip_gru")
    with torch.no_grad():
        model.update_gate.weight.normal_(0, 2.0)
        model.update_gate.bias.zero_()
    x = torch.randn(16, 3, 3)
    whole = model(x)
    first = model(x[:7])
    rest = model(x[7:], first.state)
    torch.testing.assert_close(torch.cat([first.output, rest.output]), whole.output, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.cat([first.updates, rest.updates]), whole.updates)


def test_seeded_determinism():
    a, b = make("skip_lstm", seed=3), make("skip_lstm", seed=3)
    torch.manual_seed(1)
    x = torch.randn(10, 2, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(a(x).output, b(x).output)
    assert not torch.equal(make("skip_lstm", seed=4).h0, a.h0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="rnn"), "lstm, gru, skip_lstm, skip_gru"),
        (dict(p_skip=1.0), "p_skip"),
        (dict(p_skip=-0.1), "p_skip"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(num_layers=1.5), "num_layers"),
        (dict(gate_init="xavier"), "gate_init must be one of glorot, torch"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    args = dict(mode="skip_lstm", input_size=3, hidden_size=8) | kwargs
    with pytest.raises(ValueError, match=message):
        SkipRNN(**args)


def test_bad_shapes_raise_clear_errors():
    model = make("skip_lstm")
    with pytest.raises(ValueError, match="input_size=3"):
        model(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match=r"\(T, B, input_size\)"):
        model(torch.randn(5, 3))
    with pytest.raises(ValueError, match="lengths"):
        model(torch.randn(5, 2, 3), lengths=torch.tensor([6, 1]))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(5, 2, 3), state=model.initial_state(3))
    with pytest.raises(ValueError, match=r"got values from 1 to 6"):
        model(torch.randn(5, 2, 3), lengths=torch.tensor([6, 1]))
    state = model.initial_state(2)
    with pytest.raises(ValueError, match=r"state.cum_update_prob must have shape \(2,\)"):
        model(torch.randn(5, 2, 3), state=state._replace(cum_update_prob=torch.zeros(1)))
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        budget_loss(torch.ones(5, 2), 1e-3, lengths=torch.tensor([5, 5, 5]))
    with pytest.raises(ValueError, match=r"state.c has dtype torch.float64, x has torch.float32"):
        model(torch.randn(5, 2, 3), state=state._replace(c=state.c.double()))
    with pytest.raises(ValueError, match=r"x has dtype torch.float64, the model's parameters torch.float32"):
        model(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"got \(1, 3, 8\) and \(1, 3, 8\)"):
        model(torch.randn(5, 2, 3), state=model.initial_state(3))
    with pytest.raises(ValueError, match=r"state.c is None, but skip_lstm keeps a cell state"):
        model(torch.randn(5, 2, 3), state=make("skip_gru").initial_state(2))
    with pytest.raises(ValueError, match=r"floating-point tensor; got torch.int64"):
        model(torch.ones(5, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"no time steps"):
        model(torch.randn(0, 2, 3))
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with pytest.raises(ValueError, match=r"not a PackedSequence: use torch.nn.utils.rnn.pad_packed_sequence"):
        model(packed)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        budget_loss(torch.ones(5, 2), 1e-3, lengths=torch.tensor([6, 5]))


@pytest.mark.parametrize("mode", ["skip_lstm", "skip_gru"])
def test_detached_state_continues_the_sequence_for_truncated_backprop(mode):
    """Two chunks with the state detached between them: the same forward values as one call, and each chunk's
    backward pass reaches only its own steps (the second does not fail on the freed graph of the first)."""
    model = make(mode, dtype=torch.float64)
    constant_gate(model, -1.0)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    whole = model(x)
    first = model(x[:7])
    first.output.sum().backward()
    state = first.state.detach()
    assert all(t is None or not t.requires_grad for t in state)
    second = model(x[7:], state=state)
    second.output.sum().backward()
    torch.testing.assert_close(torch.cat([first.output, second.output]), whole.output, rtol=0, atol=1e-12)
    assert torch.equal(torch.cat([first.updates, second.updates]), whole.updates)


def test_original_stack_bug_switch_feeds_the_network_input_to_upper_candidates():
    model = make("skip_gru", layers=2, hidden=5, dtype=torch.float64, original_stack_bug=True)
    constant_gate(model, 2.0)  # always update: isolates the candidate maths
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    out = model(x)
    bottom, top = model.cells
    h1, h2 = model.h0[0].expand(2, -1), model.h0[1].expand(2, -1)
    w, b, hs = top.weight_hh.detach(), top.bias.detach(), 5
    for t in range(6):
        h1, _ = bottom.step(bottom.project_input(x[t]), h1)
        gates = torch.sigmoid(h1 @ top.weight_ih[: 2 * hs].T + h2 @ w[: 2 * hs].T + b[: 2 * hs])
        r, z = gates[:, :hs], gates[:, hs:]
        n = torch.tanh(x[t] @ model.cells[1].weight_in_raw.T + b[2 * hs :] + (r * h2) @ w[2 * hs :].T)
        h2 = z * h2 + (1 - z) * n
        torch.testing.assert_close(out.output[t], h2)
    with pytest.raises(ValueError, match="skip_gru"):
        SkipRNN("skip_lstm", 3, 5, num_layers=2, original_stack_bug=True)


def test_skip_inference_setting_chooses_the_path(monkeypatch):
    import skiprnn.backends.skipping as inference

    batches, real = [], inference.forward
    monkeypatch.setattr(inference, "forward", lambda rnn, x, *rest: batches.append(x.shape[1]) or real(rnn, x, *rest))
    model, stack = make("skip_gru").eval(), SkipRNN("skip_gru", 3, 8, num_layers=2).eval()
    with torch.no_grad():
        model(torch.randn(5, 1, 3))  # "auto": a single sequence skips for real
        model(torch.randn(5, 4, 3))  # "auto": so does a batch of one layer, in one C call where the kernels build
        stack(torch.randn(5, 3, 3))  # "auto": a stack's batch takes the dense path
        stack.skip_inference = True
        stack(torch.randn(5, 2, 3))
        model.skip_inference = False
        model(torch.randn(5, 1, 3))
    model.train()
    model(torch.randn(5, 1, 3))  # training never skips computation
    one_layer_batch = [4] if backends.fused.kernels_for(torch.ones(1), 8) is not None else []
    assert batches == [1, *one_layer_batch, 2]
    with pytest.raises(ValueError, match="'auto'"):
        SkipRNN("skip_gru", 3, 8, skip_inference="yes")


def test_gate_init_changes_the_update_gate_weight_alone():
    """The switch draws the same random numbers either way: every other initial weight, the read-out's included, is
    the same for one seed, and so is what the generator gives next."""
    from skiprnn.experiment.model import SequenceModel

    params, after = {}, {}
    for scheme in ("glorot", "torch"):
        torch.manual_seed(0)
        params[scheme] = dict(SequenceModel("skip_gru", 2, 1, 16, gate_init=scheme).named_parameters())
        after[scheme] = torch.rand(3)
    glorot, torch_init = params["glorot"], params["torch"]
    assert set(glorot) == set(torch_init)
    assert not torch.equal(glorot["rnn.update_gate.weight"], torch_init["rnn.update_gate.weight"])
    assert torch_init["rnn.update_gate.weight"].abs().max() <= 16**-0.5  # nn.Linear's U(±1/sqrt(H))
    for name in glorot:
        if name != "rnn.update_gate.weight":
            assert torch.equal(glorot[name], torch_init[name]), name
    assert torch.equal(after["glorot"], after["torch"])


def test_budget_loss_takes_the_layout_and_lengths_from_the_output():
    """budget_loss(out, lam) cannot mix up (T, B) and (B, T): the output knows its layout and its lengths."""
    torch.manual_seed(0)
    x = torch.randn(5, 7, 2)  # (B, T, I)
    lengths = torch.tensor([7, 3, 5, 1, 6])
    for batch_first in (True, False):
        rnn = SkipRNN("skip_gru", 2, 8, batch_first=batch_first)
        with torch.no_grad():
            rnn.update_gate.bias.fill_(-0.4)  # Δ ≈ 0.4: updates every other step
        xin = x if batch_first else x.transpose(0, 1)
        out = rnn(xin, lengths=lengths)
        u = out.updates
        output, updates, state = out  # still a 3-tuple
        assert updates is u and state is out.state
        per_seq = (u if batch_first else u.t()).sum(1)  # padding already 0 in updates
        expected = 0.5 * per_seq.mean()
        assert torch.allclose(budget_loss(out, 0.5), expected)
        assert torch.allclose(budget_loss(u, 0.5, lengths=lengths, batch_first=batch_first), expected)
    with pytest.raises(ValueError, match="knows its layout and lengths"):
        budget_loss(out, 0.5, batch_first=True)


@pytest.mark.parametrize("mode, layers, p_skip", [("skip_gru", 1, 0.0), ("skip_lstm", 2, 0.0), ("lstm", 1, 0.5)])
def test_torch_compile_traces_one_graph_without_a_break(mode, layers, p_skip):
    """Under torch.compile the layer takes the reference backend (the fused and skipping paths call C kernels through
    ctypes): one graph, no break, and a compiled model computes what the eager one does."""
    import torch._dynamo as dynamo

    torch.manual_seed(0)
    model = SkipRNN(mode, 2, 16, num_layers=layers, p_skip=p_skip)
    x = torch.randn(12, 4, 2)
    dynamo.reset()
    explained = dynamo.explain(model)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    if not p_skip:  # random skips draw anew on every call
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        eager, traced = model(x), compiled(x)
        torch.testing.assert_close(traced.output, eager.output, rtol=1e-5, atol=1e-5)
        assert torch.equal(traced.updates, eager.updates)
    dynamo.reset()
