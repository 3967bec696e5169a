"""The fused rate-RNN op against the float64 pure-PyTorch reference: outputs, every gradient, contract, bad input."""
import math
import os
import warnings

import pytest
import torch
from torch import nn

import rate_rnn
from rate_rnn import ACTIVATIONS, RNNLayer, scan, scan_reference
from rate_rnn import _extension, backend


@pytest.fixture(autouse=True)
def fused_backend():
    """Every test here runs the compiled op unless it says otherwise; a missing build is a failure, not a skip."""
    backend.set_backend("fused")
    yield
    backend.set_backend(None)


def make_inputs(T, B, N, dtype=torch.float64, per_unit=False, seed=0, scale=0.9, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    U = 0.5 * torch.randn(T, B, N, generator=g, dtype=dtype)
    W = scale * torch.randn(N, N, generator=g, dtype=dtype) / math.sqrt(N)
    h0 = 0.3 * torch.rand(B, N, generator=g, dtype=dtype)
    decay = (0.5 + 0.45 * torch.rand(N, generator=g, dtype=dtype)) if per_unit else torch.tensor(0.8, dtype=dtype)
    tensors = [U, W, h0, decay]
    if requires_grad:
        for t in tensors:
            t.requires_grad_(True)
    return tensors


def run_with_grads(fn, U, W, h0, decay, activation, lengths=None, seed=1):
    """Outputs and gradients of a fixed random functional of (H, h_T) with respect to U, W, h0, decay."""
    H, hT = fn(U, W, h0, decay, activation, lengths)
    g = torch.Generator().manual_seed(seed)
    gH = torch.randn(H.shape, generator=g, dtype=torch.float64).to(H.dtype)
    gT = torch.randn(hT.shape, generator=g, dtype=torch.float64).to(H.dtype)
    loss = (H * gH).sum() + (hT * gT).sum()
    grads = torch.autograd.grad(loss, [U, W, h0, decay])
    return [H, hT, *grads]


def fused(U, W, h0, decay, activation, lengths=None):
    return scan(U, W, h0, decay, activation, lengths)


def reference(U, W, h0, decay, activation, lengths=None):
    return scan_reference(U, W, h0, decay, activation, lengths)


def cast(tensors, dtype):
    return [t.detach().to(dtype).requires_grad_(True) for t in tensors]


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


NAMES = ["H", "h_T", "dU", "dW_hh", "dh0", "ddecay"]


def test_extension_is_compiled():
    info = rate_rnn.backend_info()
    assert info["extension_loaded"], info["extension"]
    assert info["cpu"]["path"] == "fused"
    if os.environ.get("RATE_RNN_BACKEND") == "fused":  # CI: the compiled op, never a silent fallback
        assert backend.get_backend() == "fused"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("per_unit", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("gemm", ["default", "aten"])
def test_fp32_matches_float64_reference(activation, per_unit, with_lengths, gemm, monkeypatch):
    """fp32 fused error ≤ 2× the fp32 reference's own error (plus a tiny floor), for every output and gradient,
    with the per-step GEMMs on W_hh packed once (the default where MKL's packed GEMM exists) and as ATen GEMMs."""
    if gemm == "aten":
        monkeypatch.setenv("RATE_RNN_CPU_GEMM", "aten")
    T, B, N = 40, 5, 24
    base = [t.float().double() for t in make_inputs(T, B, N, per_unit=per_unit, seed=3)]  # exact fp32 inputs
    lengths = torch.tensor([T, 0, 7, T - 1, 23]) if with_lengths else None
    exact = run_with_grads(reference, *cast(base, torch.float64), activation, lengths)
    ref32 = run_with_grads(reference, *cast(base, torch.float32), activation, lengths)
    got = run_with_grads(fused, *cast(base, torch.float32), activation, lengths)
    for name, e, r, f in zip(NAMES, exact, ref32, got):
        assert f.dtype == torch.float32 and f.shape == e.shape, name
        bound = 2 * (r.double() - e).abs().max().item() + 1e-6 * e.abs().max().item() + 1e-7
        err = (f.double() - e).abs().max().item()
        assert err <= bound, f"{activation} {name}: fused error {err:.3g} > bound {bound:.3g}"


@pytest.mark.parametrize("threads", [2, 3])
def test_fp32_uneven_shards_match_reference(threads):
    """B=37 float32 rows over 2-3 threads: shards of different sizes each pack W_hh for their own row count."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        base = [t.float().double() for t in make_inputs(30, 37, 64, seed=5)]
        exact = run_with_grads(reference, *cast(base, torch.float64), "tanh")
        got = run_with_grads(fused, *cast(base, torch.float32), "tanh")
        for name, e, f in zip(NAMES, exact, got):
            assert rel_err(f, e) < 1e-5, name
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_shards_across_threads_match_reference(threads):
    """B=37 rows split over threads (uneven shards), per-unit learnable decay, lengths, float64: exact to 1e-12."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        T, B, N = 30, 37, 16
        base = make_inputs(T, B, N, per_unit=True, seed=11)
        lengths = torch.randint(0, T + 1, (B,), generator=torch.Generator().manual_seed(2))
        exact = run_with_grads(reference, *cast(base, torch.float64), "softplus", lengths)
        got = run_with_grads(fused, *cast(base, torch.float64), "softplus", lengths)
        for name, e, f in zip(NAMES, exact, got):
            assert rel_err(f, e) < 1e-12, name
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("activation", ["relu", "softplus", "tanh"])
def test_long_sequence_relative_error(activation):
    """T = 1000: fp32 fused output and gradients within 1e-5 relative of the float64 reference."""
    T, B, N = 1000, 4, 32
    base = [t.float().double() for t in make_inputs(T, B, N, per_unit=True, seed=5, scale=0.7)]
    exact = run_with_grads(reference, *cast(base, torch.float64), activation)
    got = run_with_grads(fused, *cast(base, torch.float32), activation)
    for name, e, f in zip(NAMES, exact, got):
        assert rel_err(f, e) <= 1e-5, f"{name}: relative error {rel_err(f, e):.3g}"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("per_unit", [False, True])
def test_gradcheck_float64(activation, per_unit):
    T, B, N = 6, 3, 5
    U, W, h0, decay = make_inputs(T, B, N, per_unit=per_unit, seed=7, requires_grad=True)
    if activation in ("relu", "retanh", "power"):  # keep z away from the kink at 0 for finite differences
        U.data += 0.3 * torch.sign(U.data)
    lengths = torch.tensor([6, 2, 0])

    def fn(U, W, h0, decay):
        H, hT = scan(U, W, h0, decay, activation, lengths)
        return H, hT

    assert torch.autograd.gradcheck(fn, (U, W, h0, decay), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradients_respect_lengths():
    """Frozen rows keep h, get zero dU after their length, and pass the adjoint to h0 unchanged when length 0."""
    T, B, N = 8, 3, 4
    U, W, h0, decay = make_inputs(T, B, N, requires_grad=True)
    lengths = torch.tensor([8, 3, 0])
    H, hT = scan(U, W, h0, decay, "tanh", lengths)
    assert torch.equal(H[3:, 1], H[2, 1].expand(5, N))
    assert torch.equal(hT[2], h0[2]) and torch.equal(H[:, 2], h0[2].expand(T, N))
    hT.sum().backward()
    assert torch.all(U.grad[3:, 1] == 0) and torch.all(U.grad[:, 2] == 0)
    assert torch.equal(h0.grad[2], torch.ones(N, dtype=h0.dtype))


def test_hand_computed_two_steps():
    """One unit, relu, d = 0.5: h1 = 0.5*1 + 0.5*relu(2 + 3*1) = 3; h2 = 0.5*3 + 0.5*relu(-1 + 3*3) = 5.5."""
    U = torch.tensor([[[2.0]], [[-1.0]]])
    H, hT = scan(U, torch.tensor([[3.0]]), torch.tensor([[1.0]]), 0.5, "relu")
    assert H.flatten().tolist() == [3.0, 5.5] and hT.item() == 5.5


def test_opcheck():
    U, W, h0, decay = make_inputs(5, 3, 4, dtype=torch.float32, requires_grad=True)
    lengths = torch.tensor([5, 1, 3])
    for args in [(U, W, h0, decay, 1, None, 0.0, 0), (U, W, h0, decay, 3, lengths, 0.1, 42)]:
        torch.library.opcheck(torch.ops.rate_rnn.forward.default, args)


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    layer = RNNLayer(6, 16, "softplus", 0.8)
    x = torch.randn(12, 4, 6)
    compiled = torch.compile(layer, fullgraph=True)
    out_c, _ = compiled(x)
    out_c.square().sum().backward()
    grads_c = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    out_e, _ = layer(x)
    out_e.square().sum().backward()
    torch.testing.assert_close(out_c, out_e)
    for gc, p in zip(grads_c, layer.parameters()):
        torch.testing.assert_close(gc, p.grad)


def test_noise_stream_matches_independent_twin():
    """The C++ noise stream equals its integer-op/float64 re-implementation (polynomial log/cos vs libm)."""
    assert _extension.kernels()["cpu"], "the compiled op is not loaded"
    shape = (3, 7, 4001)  # odd row length: the last column's pair is half used
    out = torch.zeros(shape)
    torch.ops.rate_rnn.add_normal_(out, 1.0, 12345)
    twin = rate_rnn.standard_normal_ref(12345, shape)
    assert (out.double() - twin).abs().max().item() < 2e-5


def test_noise_moments_and_independence():
    n = 1_000_000
    x = rate_rnn.noise_tensor((1000, 1000), 1.0, 99).double().flatten()
    assert abs(x.mean().item()) < 4 / math.sqrt(n)
    assert abs(x.std().item() - 1) < 0.005
    kurt = ((x - x.mean()) ** 4).mean().item() / x.var().item() ** 2
    assert abs(kurt - 3) < 0.05
    assert abs(torch.corrcoef(torch.stack([x[:-1], x[1:]]))[0, 1].item()) < 0.005  # Box-Muller pairs
    assert abs((x > 1.959964).double().mean().item() - 0.025) < 0.001
    y = rate_rnn.noise_tensor((1000, 1000), 1.0, 100).double().flatten()
    assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1].item()) < 0.005


def test_fused_noise_equals_reference_with_same_stream():
    T, B, N = 20, 3, 8
    U, W, h0, decay = cast(make_inputs(T, B, N), torch.float64)
    H, _ = scan(U, W, h0, decay, "softplus", noise_std=0.3, seed=77)
    noise = rate_rnn.noise_tensor((T, B, N), 0.3, 77, dtype=torch.float64)
    Hr, _ = scan_reference(U, W, h0, decay, "softplus", noise=noise)
    torch.testing.assert_close(H, Hr, rtol=1e-12, atol=1e-12)
    H2, _ = scan(U, W, h0, decay, "softplus", noise_std=0.3, seed=77)
    assert torch.equal(H, H2)
    H3, _ = scan(U, W, h0, decay, "softplus", noise_std=0.3, seed=78)
    assert not torch.allclose(H, H3)


def test_noise_seed_follows_torch_manual_seed():
    layer = RNNLayer(3, 8, "relu", 0.8, sigma_rec=0.1)
    x = torch.randn(5, 2, 3)
    torch.manual_seed(4)
    a, _ = layer(x)
    torch.manual_seed(4)
    b, _ = layer(x)
    assert torch.equal(a, b)


def test_learnable_decay_and_h0_in_layer():
    layer = RNNLayer(3, 5, nn.Tanh(), torch.full((5,), 0.7), learn_decay=True, learn_h0=True)
    out, hT = layer(torch.randn(4, 2, 3, dtype=torch.float32))
    out.sum().backward()
    assert layer.decay.grad is not None and layer.decay.grad.shape == (5,)
    assert layer.h0.grad is not None and hT.shape == (1, 2, 5)


def test_batch_first_equals_time_major():
    layer = RNNLayer(3, 5, "relu", 0.8, batch_first=True)
    x = torch.randn(2, 7, 3)
    out, _ = layer(x)
    ref, _ = scan_reference(layer.input_drive(x.transpose(0, 1)), layer.rnncell.weight_hh, torch.zeros(2, 5), 0.8)
    torch.testing.assert_close(out, ref.transpose(0, 1))


class PortStyleCell(nn.Module):
    """Independent stand-in for the published port's module layout (rnncell.weight_ih/weight_hh/bias)."""

    def __init__(self, n_in, n_rnn):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.randn(n_rnn, n_in))
        self.weight_hh = nn.Parameter(torch.randn(n_rnn, n_rnn) / n_rnn)
        self.bias = nn.Parameter(torch.randn(n_rnn))


def test_port_state_dict_loads_and_runs_identically():
    port = nn.Module()
    port.rnncell = PortStyleCell(4, 6)
    layer = RNNLayer(4, 6, nn.ReLU(), 0.9, True)
    layer.load_state_dict(port.state_dict())  # strict: same keys, nothing missing or unexpected
    x = torch.randn(10, 3, 4)
    out, hT = layer(x, torch.zeros(1, 3, 6))
    h, states = torch.zeros(3, 6), []
    c = port.rnncell
    for t in range(10):  # the port's Euler step, written out
        h = 0.9 * h + 0.1 * torch.relu(x[t] @ c.weight_ih.T + h @ c.weight_hh.T + c.bias)
        states.append(h)
    torch.testing.assert_close(out, torch.stack(states), rtol=1e-5, atol=1e-6)
    assert hT.shape == (1, 3, 6)


def test_port_readme_sample():
    from RNN_rate_dynamics import RNNLayer as PortLayer

    T, batch = 1000, 100
    n_input, n_rnn = 10, 500
    rnn = PortLayer(n_input, n_rnn, torch.nn.ReLU(), 0.9, True)  # input_size, hidden_size, nonlinearity, decay, bias
    with torch.no_grad():
        out, hT = rnn(torch.randn(T, batch, n_input), torch.zeros(1, batch, n_rnn))
    assert out.shape == (T, batch, n_rnn) and hT.shape == (1, batch, n_rnn)
    assert torch.isfinite(out).all()


def test_unknown_callable_takes_reference_path_with_warning():
    backend.set_backend("auto")
    layer = RNNLayer(3, 4, nn.ELU(), 0.8)
    x = torch.randn(5, 2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, _ = layer(x)
    ref, _ = scan_reference(layer.input_drive(x), layer.rnncell.weight_hh, torch.zeros(2, 4), 0.8, nn.functional.elu)
    torch.testing.assert_close(out, ref)
    backend.set_backend("fused")
    with pytest.raises(RuntimeError, match="fused"):
        layer(x)


def test_fused_without_extension_is_an_error(monkeypatch):
    monkeypatch.setattr(_extension, "_state", {"loaded": False, "how": "not built (simulated)"})
    with pytest.raises(RuntimeError, match="not built"):
        scan(*make_inputs(3, 2, 4), "relu")
    backend.set_backend("auto")
    backend._warned.clear()
    with pytest.warns(RuntimeWarning, match="not built"):
        scan(*make_inputs(3, 2, 4), "relu")


def test_backend_env_var_is_validated(monkeypatch):
    backend.set_backend(None)
    monkeypatch.setenv("RATE_RNN_BACKEND", "fastest")
    with pytest.raises(ValueError, match="RATE_RNN_BACKEND"):
        backend.get_backend()
    with pytest.raises(ValueError, match="backend"):
        rate_rnn.set_backend("gpu")


def good():
    return make_inputs(4, 3, 5, dtype=torch.float32)


@pytest.mark.parametrize("mutate, exc, match", [
    (lambda a: a.__setitem__(0, torch.randn(4, 3)), ValueError, r"U must have shape \(T, B, N\)"),
    (lambda a: a.__setitem__(0, torch.randn(0, 3, 5)), ValueError, "T, B, N >= 1"),
    (lambda a: a.__setitem__(0, a[0].half()), TypeError, "float32 or float64"),
    (lambda a: a.__setitem__(1, torch.randn(5, 4)), ValueError, r"W_hh has shape \(5, 4\), expected \(5, 5\)"),
    (lambda a: a.__setitem__(2, torch.randn(2, 5)), ValueError, r"h0 has shape \(2, 5\), expected \(3, 5\)"),
    (lambda a: a.__setitem__(1, a[1].double()), TypeError, "W_hh has dtype"),
    (lambda a: a.__setitem__(3, torch.tensor(1.0)), ValueError, r"decay must lie in \[0, 1\)"),
    (lambda a: a.__setitem__(3, -0.1), ValueError, r"decay must lie in \[0, 1\)"),
    (lambda a: a.__setitem__(3, torch.full((4,), 0.5)), ValueError, r"decay has shape \(4,\)"),
    (lambda a: a.__setitem__(3, "0.5"), TypeError, "decay must be a float"),
    (lambda a: a[1].__setitem__((0, 0), float("nan")), ValueError, "W_hh contains NaN"),
])
def test_bad_input_python(mutate, exc, match):
    args = good()
    mutate(args)
    with pytest.raises(exc, match=match):
        scan(*args, "relu")


def test_bad_activation_lengths_noise():
    U, W, h0, d = good()
    with pytest.raises(ValueError, match="activation must be one of"):
        scan(U, W, h0, d, "elu")
    with pytest.raises(ValueError, match=r"lengths has shape \(2,\), expected \(3,\)"):
        scan(U, W, h0, d, "relu", torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=4\]"):
        scan(U, W, h0, d, "relu", torch.tensor([1, 2, 5]))
    with pytest.raises(ValueError, match="noise_std"):
        scan(U, W, h0, d, "relu", noise_std=-1.0)


def test_bad_input_reaches_cpp_checks():
    """The same checks hold in C++ (TORCH_CHECK) for callers that bypass the Python layer."""
    U, W, h0, d = good()
    op = torch.ops.rate_rnn.forward
    with pytest.raises(ValueError, match=r"W_hh has shape \[5, 4\], expected \[5, 5\]"):
        op(U, W[:, :4].contiguous(), h0, d, 1, None, 0.0, 0)
    with pytest.raises(ValueError, match="decay has shape"):
        op(U, W, h0, torch.full((2,), 0.5), 1, None, 0.0, 0)
    with pytest.raises(TypeError, match="must share one dtype"):
        op(U, W.double(), h0, d, 1, None, 0.0, 0)
    with pytest.raises(ValueError, match="activation code 9"):
        op(U, W, h0, d, 9, None, 0.0, 0)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=4\]"):
        op(U, W, h0, d, 1, torch.tensor([0, 9, 1]), 0.0, 0)
    with pytest.raises(RuntimeError, match="contiguous"):
        op(U.transpose(0, 1), W, h0, d, 1, None, 0.0, 0)


def test_layer_bad_input():
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        RNNLayer(3, 4, "sigmoidal", 0.8)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        RNNLayer(3, 0, "relu", 0.8)
    with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\)"):
        RNNLayer(3, 4, "relu", 1.2)
    layer = RNNLayer(3, 4, "relu", 0.8)
    with pytest.raises(ValueError, match="expected input_size=3"):
        layer(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match="hidden_init must have shape"):
        layer(torch.randn(5, 2, 3), torch.zeros(2, 2, 4))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.randn(5, 2, 3, dtype=torch.float64))


@pytest.mark.parametrize("n_cols", [1, 2, 15, 16, 17, 31, 32, 33, 85, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_stream_every_row_length(n_cols, dtype):
    """Every row length (the vector path's full blocks, half blocks and tails) and both dtypes draw the twin's
    stream, adding to what the tensor already holds."""
    assert _extension.kernels()["cpu"], "the compiled op is not loaded"
    base = torch.arange(5 * n_cols, dtype=dtype).reshape(5, n_cols) / 7
    out = base.clone()
    torch.ops.rate_rnn.add_normal_(out, 0.5, 2**40 + 3)
    twin = base.double() + 0.5 * rate_rnn.standard_normal_ref(2**40 + 3, (5, n_cols))
    assert (out.double() - twin).abs().max().item() < 2e-5


def test_add_normal_start_is_add_normal_on_the_flat_view():
    """The background add equals add_normal_ on x.view(-1) bit for bit and the twin to float rounding, for
    several additions in flight at once, waited in any order, and on deletion without wait()."""
    from rate_rnn.ops import add_normal_, add_normal_start

    assert _extension.kernels()["cpu"], "the compiled op is not loaded"
    xs = [torch.randn(n).reshape(-1, 7) for n in (7 * 1, 7 * 3001, 7 * 40000)]
    expected = []
    for i, x in enumerate(xs):
        e = x.clone()
        add_normal_(e.view(-1), 0.3, 1000 + i)
        expected.append(e)
        twin = x.double() + 0.3 * rate_rnn.standard_normal_ref(1000 + i, (x.numel(),)).reshape(x.shape)
        assert (e.double() - twin).abs().max().item() < 2e-5
    pending = [add_normal_start(x, 0.3, 1000 + i) for i, x in enumerate(xs)]
    for p in reversed(pending[1:]):
        p.wait()
        p.wait()  # idempotent
    del pending  # the first is waited for on deletion
    for x, e in zip(xs, expected):
        assert torch.equal(x, e)
    # overwrite=True: what add_normal_ adds to zeros, whatever x held
    x, zero = torch.randn(5, 3001), torch.zeros(5 * 3001)
    add_normal_(zero, 0.3, 77)
    add_normal_start(x, 0.3, 77, overwrite=True).wait()
    assert torch.equal(x.view(-1), zero)


def test_add_normal_start_bad_inputs():
    from rate_rnn.ops import add_normal_start

    with pytest.raises(ValueError, match="float32"):
        add_normal_start(torch.zeros(10, dtype=torch.float64), 1.0, 0)
    with pytest.raises(ValueError, match="contiguous"):
        add_normal_start(torch.zeros(10, 10).t(), 1.0, 0)
    with pytest.raises(ValueError, match="handle"):
        torch.ops.rate_rnn.add_normal_end(-5)


def test_add_normal_start_without_the_compiled_op(monkeypatch):
    """Without the extension the same stream is added synchronously by the twin (float rounding apart)."""
    from rate_rnn.ops import add_normal_start

    x = torch.randn(4, 1001)
    noise = 0.3 * rate_rnn.standard_normal_ref(5, (x.numel(),)).reshape(x.shape)
    expected = x.double() + noise
    monkeypatch.setattr(_extension, "kernels", lambda: {"cpu": False, "cuda": False})
    add_normal_start(x, 0.3, 5).wait()
    assert (x.double() - expected).abs().max().item() < 1e-6
    add_normal_start(x, 0.3, 5, overwrite=True).wait()
    assert (x.double() - noise).abs().max().item() < 1e-6


def test_reused_output_blocks_never_alias_live_tensors():
    """The op's large outputs reuse blocks freed by earlier calls: a live output is never handed out again, and
    a reused block gives the same results as a fresh one (sizes of one rounding class, >= 1 MB)."""
    torch.manual_seed(0)
    W = torch.randn(128, 128) / 12
    h0 = torch.zeros(64, 128)
    U1, U2 = torch.randn(40, 64, 128), torch.randn(41, 64, 128)
    H1, _ = scan(U1, W, h0, 0.8, "tanh")
    kept = H1.clone()
    for _ in range(3):  # each call frees its block, the next takes it
        H2, _ = scan(U2, W, h0, 0.8, "tanh")
        assert H2.data_ptr() != H1.data_ptr()
        exact, _ = scan_reference(U2.double(), W.double(), h0.double(), 0.8, "tanh")
        assert rel_err(H2, exact) < 1e-5
        del H2
    assert torch.equal(H1, kept)
