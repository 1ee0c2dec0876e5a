"""The C step kernels of the fused path (skiprnn.backends.native): built on first use, used by default, equal to the
Python steps, and a clean fallback when they cannot be built."""
import pytest
import torch

from skiprnn import SkipRNN
from skiprnn.backends import native
from skiprnn.backends.flags import current as backend_flags

MODES = ("lstm", "gru", "skip_lstm", "skip_gru")
needs_kernels = pytest.mark.skipif(
    native.kernels(torch.float32) is None, reason="the C step kernels could not be built here (no C compiler?)"
)


def train_step(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out.output.square().sum() + out.updates.sum() + out.state.h.sum()).backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def gated_model(mode, inp, hidden, seed=0):
    torch.manual_seed(seed)
    model = SkipRNN(mode, inp, hidden)
    if model.gated:  # a mix of updates and skips
        with torch.no_grad():
            model.update_gate.weight.normal_(0, 0.3)
            model.update_gate.bias.fill_(-0.3)
    return model


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@needs_kernels
@pytest.mark.parametrize("mode", MODES)
def test_float32_kernels_match_python_steps(mode, monkeypatch, two_threads):
    """At B = 128, which the kernels split over two threads, in float32: the same updates, and values
    and gradients equal to float rounding (the float64 comparison with the reference loop is in test_fused)."""
    model = gated_model(mode, 3, 128)
    x = torch.randn(12, 128, 3)
    results = []
    for use in (True, False):
        monkeypatch.setattr(backend_flags, "native", use)
        results.append(train_step(model, x))
    (a, grads_a), (b, grads_b) = results
    assert torch.equal(a.updates, b.updates)
    if model.gated:
        assert 0 < a.updates.sum() < a.updates.numel()
    torch.testing.assert_close(a.output, b.output, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:  # float32 sums over 128 rows and 12 steps: to 1e-5 of each gradient's scale
        scale = grads_b[name].abs().max().item()
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=0, atol=1e-5 * scale, msg=name)


@needs_kernels
def test_kernels_are_the_default_and_backward_follows_its_forward(monkeypatch):
    """The forward pass picks the kernels; switching them off before backward() must not mix the two
    implementations (they keep different tensors for the backward pass)."""
    calls = []
    real = native.kernels
    monkeypatch.setattr(native, "kernels", lambda dtype, numerics="fast": calls.append(dtype) or real(dtype))
    model = gated_model("skip_lstm", 2, 8)
    x = torch.randn(12, 4, 2)
    ref_out, ref_grads = train_step(model, x)
    assert calls == [torch.float32]
    model.zero_grad(set_to_none=True)
    out = model(x)
    monkeypatch.setattr(backend_flags, "native", False)
    (out.output.square().sum() + out.updates.sum() + out.state.h.sum()).backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, ref_grads[name], rtol=0, atol=0, msg=name)


def test_large_states_take_the_python_steps(monkeypatch):
    calls = []
    monkeypatch.setattr(native, "kernels", lambda dtype, numerics="fast": calls.append(dtype))
    monkeypatch.setattr(native, "MAX_HIDDEN", 7)
    train_step(gated_model("skip_lstm", 2, 8), torch.randn(5, 3, 2))
    assert calls == []
    train_step(gated_model("skip_lstm", 2, 7), torch.randn(5, 3, 2))
    assert calls == [torch.float32]


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """A new cache folder and nothing loaded yet, as in a fresh process."""
    monkeypatch.setenv("SKIPRNN_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_LOADED", {})
    monkeypatch.setattr(native, "_BY_DTYPE", {})
    return tmp_path


@needs_kernels
def test_builds_into_the_cache_folder(fresh_build):
    assert native.kernels(torch.float64) is not None
    assert [p.name for p in fresh_build.iterdir()] == [native._library_path(native.build_flags("fast")).name]
    assert native.kernels(torch.float16) is None  # other dtypes take the Python steps


def test_without_a_compiler_the_python_steps_run(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "/bin/false")
    with pytest.warns(UserWarning, match="C step kernels are unavailable"):
        assert native.kernels(torch.float32) is None
    assert not list(fresh_build.glob("*.so"))  # nothing half-built left behind
    model = gated_model("skip_gru", 2, 8)
    out, grads = train_step(model, torch.randn(6, 3, 2))  # still trains
    assert grads["update_gate.weight"].abs().sum() > 0


def test_switched_off_by_environment(fresh_build, monkeypatch):
    monkeypatch.setenv("SKIPRNN_NATIVE", "0")
    assert native.kernels(torch.float32) is None
    assert not list(fresh_build.iterdir())


@needs_kernels
@pytest.mark.parametrize("mode", MODES)
def test_saturated_gates_stay_finite(mode, monkeypatch):
    """Pre-activations far beyond exp's float32 range (σ(−1000) = 0): the kernels, built with -ffast-math,
    must still give the finite values of the Python steps, with finite gradients."""
    model = gated_model(mode, 3, 16)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(300.0)
    x = 50.0 * torch.randn(10, 64, 3)
    results = []
    for use in (True, False):
        monkeypatch.setattr(backend_flags, "native", use)
        results.append(train_step(model, x))
    (a, grads_a), (b, grads_b) = results
    assert torch.isfinite(a.output).all() and all(torch.isfinite(g).all() for g in grads_a.values())
    assert torch.equal(a.updates, b.updates)
    # Pre-activations here reach ~1e4, where float32's spacing is ~1e-3: a gate whose pre-activation lands within
    # rounding of 0 may differ by that much between the two summation orders. What matters is finiteness.
    torch.testing.assert_close(a.output, b.output, rtol=1e-5, atol=1e-2)


# ------------------------------------------------------------------------------ the typed boundary
def _declared_fields(macro: str) -> list[str]:
    """The field names of one X-macro list in csrc/args.h, read from the header's text (comments dropped)."""
    import re
    from pathlib import Path

    text = (Path(native.__file__).with_name("csrc") / "args.h").read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S).replace("\\\n", " ")
    body = re.search(rf"#define {macro}\(X\)(.*?)(?:\n#define|\Z)", text, flags=re.S).group(1)
    return re.findall(r"X\([^,]+,\s*(\w+)\)", body)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_struct_has_the_fields_the_header_declares(dtype):
    k = native.kernels(dtype)
    structs = {"lstm_forward": "LSTM_FWD", "lstm_backward": "LSTM_BWD", "gru_forward": "GRU_FWD", "gru_backward": "GRU_BWD",
               "skip_sequence": "SKIP_SEQUENCE", "skip_batch": "SKIP_BATCH", "gemm": "GEMM"}
    assert set(structs) == set(native.KERNELS)
    for kernel, macro in structs.items():
        assert [f for f, _ in getattr(k, kernel).struct._fields_] == _declared_fields(f"{macro}_FIELDS"), kernel
    for struct, macro in ((k.gate_fwd, "GATE_FWD"), (k.gate_bwd, "GATE_BWD")):
        assert [f for f, _ in struct._fields_] == _declared_fields(f"{macro}_FIELDS")


@needs_kernels
def test_a_wrong_field_or_struct_fails_loudly():
    import ctypes

    def blank(kernel):  # every field: NULL pointers and zeros
        return {f: None if ty is ctypes.c_void_p else 0 for f, ty in kernel.struct._fields_}

    k = native.kernels(torch.float32)
    fields = blank(k.gru_backward)
    args = k.gru_backward.args(**fields)
    with pytest.raises(AttributeError):
        args.dhh = 0  # misspelt: raises instead of setting nothing the kernel reads
    with pytest.raises(TypeError, match=r"missing fields \['dh'\], unknown fields \['dhh'\]"):
        k.gru_backward.args(**{("dhh" if f == "dh" else f): v for f, v in fields.items()})
    with pytest.raises(TypeError, match=r"gru_bwd_args.dh takes a CPU torch.float32 tensor .* not a torch.float64"):
        k.gru_backward.args(**{**fields, "dh": torch.zeros(2, 3, dtype=torch.float64)})
    with pytest.raises(TypeError, match=r"gru_bwd_args.dh takes .* not a torch.float32 tensor on cpu, strides \(1, 2\)"):
        k.gru_backward.args(**{**fields, "dh": torch.zeros(3, 2).t()})  # rows not contiguous
    with pytest.raises(TypeError, match=r"gru_bwd_args.B takes an int, not a torch.int64 tensor"):
        k.gru_backward.args(**{**fields, "B": torch.tensor(4)})
    lstm_args = k.lstm_backward.args(**blank(k.lstm_backward))
    with pytest.raises(ctypes.ArgumentError):
        k.gru_backward(lstm_args)  # another kernel's struct
