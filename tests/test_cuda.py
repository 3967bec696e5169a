"""The CUDA op on both paths (RATE_RNN_CUDA_PATH=gemm|persistent) against the float64 pure-PyTorch reference.

Error bound (flash-attention idiom): max|fused - ref64| <= 2 * max|ref32 - ref64| + 1e-5 * max(1, max|ref64|), with
ref32 the same reference run in float32 on the GPU. Outputs are poisoned before every fused call: the caching
allocator is handed NaN-filled blocks of the outputs' sizes first, so a value the kernels fail to write shows up.

Gradients end to end (autograd through rate_rnn.scan against autograd through scan_reference) use activations
that are C^1 (identity, tanh, softplus, power): with relu/retanh, an fp32 z within rounding of 0 takes the other
side of the kink in one of the runs, and at the larger sizes that happens somewhere almost surely. For those two
the forward is compared to the reference and the backward op to a float64 adjoint recursion fed the same saved R
(so both take the same side of every kink).
"""
import math

import pytest
import torch

import rate_rnn
from rate_rnn import ACTIVATIONS, backend, scan, scan_reference
from rate_rnn.reference import activation_fn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

PATHS = ["gemm", "persistent"]
SMOOTH = ["tanh", "softplus", "identity", "power"]  # C^1: end-to-end gradients are well conditioned
KINKED = ["relu", "retanh"]
PERSISTENT_MAX_N = 256
DEV = "cuda"


@pytest.fixture(autouse=True)
def fused_cuda(monkeypatch):
    """The compiled op on every test (a missing CUDA build is a failure, not a skip); IEEE fp32 matmuls."""
    backend.set_backend("fused")
    monkeypatch.delenv("RATE_RNN_CUDA_PATH", raising=False)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved
    backend.set_backend(None)


def use_path(monkeypatch, path):
    monkeypatch.setenv("RATE_RNN_CUDA_PATH", path)


def fits_persistent(N, dtype=torch.float32):
    return dtype == torch.float32 and N <= PERSISTENT_MAX_N


# ---- inputs, poison, references --------------------------------------------------------------------------------


def make_case(T, B, N, activation, per_unit=False, with_lengths=False, seed=0):
    """float64 inputs on the GPU (drawn on the CPU: reproducible), upstream gradients and lengths."""
    g = torch.Generator().manual_seed(seed)
    U = 0.5 * torch.randn(T, B, N, generator=g, dtype=torch.float64)
    gain = 0.6 if activation == "power" else 0.9  # relu(z)^2 grows fast: keep the recurrence contracting
    W = gain * torch.randn(N, N, generator=g, dtype=torch.float64) / math.sqrt(N)
    h0 = 0.3 * torch.rand(B, N, generator=g, dtype=torch.float64)
    if per_unit:
        decay = 0.5 + 0.45 * torch.rand(N, generator=g, dtype=torch.float64)
    else:
        decay = torch.tensor(0.8, dtype=torch.float64)
    gH = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    gT = torch.randn(B, N, generator=g, dtype=torch.float64)
    lengths = None
    if with_lengths:  # full, empty, and random rows
        lengths = torch.randint(0, T + 1, (B,), generator=g)
        lengths[0] = T
        if B > 1:
            lengths[1] = 0
        lengths = lengths.to(DEV)
    # Values exactly representable in float32: the float64 reference then solves the very problem the fp32 runs
    # get, and the bound measures their arithmetic only (d(decay) is ~600x as sensitive to decay as to the sums).
    to = lambda t: t.float().double().to(DEV)  # noqa: E731
    return dict(U=to(U), W=to(W), h0=to(h0), decay=to(decay), gH=to(gH), gT=to(gT), lengths=lengths)


def gpu_noise(shape, std, seed):
    """std * xi exactly as the kernels add it (float32 product, device code), from the op's own stream."""
    out = torch.zeros(shape, dtype=torch.float32, device=DEV)
    torch.ops.rate_rnn.add_normal_(out, float(std), int(seed))
    return out


def poison_allocator(T, B, N, dtype):
    """Hand the caching allocator NaN-filled blocks of every size the op allocates, so unwritten output shows."""
    shapes = [(T, B, N)] * 4 + [(B, N)] * 4 + [(N, N)] * 2 + [(N,)] * 2 + [()] * 2
    blocks = [torch.full(s, float("nan"), dtype=dtype, device=DEV) for s in shapes]
    blocks += [torch.full((max(1, B), N), float("nan"), dtype=torch.float64, device=DEV) for _ in range(2)]
    del blocks


def fused_forward(case, dtype, activation, noise_std=0.0, seed=0):
    """(H, R) from the op itself."""
    T, B, N = case["U"].shape
    poison_allocator(T, B, N, dtype)
    c = lambda t: t.to(dtype).contiguous()  # noqa: E731
    return torch.ops.rate_rnn.forward(c(case["U"]), c(case["W"]), c(case["h0"]), c(case["decay"]),
                                      ACTIVATIONS.index(activation), case["lengths"], float(noise_std), int(seed))


def run_scan(fn, case, dtype, activation, noise_std=0.0, seed=0, grads=True):
    """[H, h_T, dU, dW_hh, dh0, ddecay] through autograd ([H, h_T] without grads); fn: 'fused' or the reference."""
    T, B, N = case["U"].shape
    leaves = [case[k].detach().to(dtype).requires_grad_(True) for k in ("U", "W", "h0", "decay")]
    if fn == "fused":
        poison_allocator(T, B, N, dtype)
        H, hT = scan(*leaves, activation, case["lengths"], noise_std, seed)
    else:
        noise = gpu_noise((T, B, N), noise_std, seed).to(dtype) if noise_std > 0 else None
        H, hT = scan_reference(*leaves, activation, case["lengths"], noise)
    if not grads:
        return [H.detach(), hT.detach()]
    loss = (H * case["gH"].to(dtype)).sum() + (hT * case["gT"].to(dtype)).sum()
    return [H.detach(), hT.detach(), *torch.autograd.grad(loss, leaves)]


def reference_rates(case, H, activation, dtype, noise_std=0.0, seed=0):
    """R implied by the reference states H: f(U_t + noise + h_{t-1} W^T) where a row runs, 0 where frozen."""
    T, B, N = case["U"].shape
    U, W, h0 = (case[k].to(dtype) for k in ("U", "W", "h0"))
    H_prev = torch.cat([h0.unsqueeze(0), H[:-1]])
    z = U + H_prev @ W.t()
    if noise_std > 0:
        z = z + gpu_noise((T, B, N), noise_std, seed).to(dtype)
    r = activation_fn(activation)(z)
    if case["lengths"] is not None:
        running = torch.arange(T, device=DEV).unsqueeze(1) < case["lengths"].unsqueeze(0)
        r = torch.where(running.unsqueeze(2), r, torch.zeros_like(r))
    return r


def adjoint_reference(grad_H, H, R, h0, W, decay, activation, lengths):
    """The backward recursion written out (float64 or float32, the dtype of the inputs), f' read from the given R:
    Delta_t = Lambda_t (1-d) f'(r_t); Lambda_{t-1} = G_{t-1} + d Lambda_t + Delta_t W (frozen rows: carry)."""
    T, B, N = grad_H.shape
    fprime = {
        "identity": lambda r: torch.ones_like(r), "relu": lambda r: (r > 0).to(r.dtype),
        "tanh": lambda r: 1 - r * r, "softplus": lambda r: -torch.expm1(-r),
        "retanh": lambda r: (r > 0).to(r.dtype) * (1 - r * r), "power": lambda r: 2 * torch.sqrt(r),
    }[activation]
    lam = grad_H[T - 1].clone()
    dU = torch.empty_like(grad_H)
    dd = torch.zeros(N, dtype=torch.float64, device=grad_H.device)
    for t in range(T - 1, -1, -1):
        hp = H[t - 1] if t > 0 else h0
        run = torch.ones(B, 1, dtype=torch.bool, device=grad_H.device)
        if lengths is not None:
            run = (t < lengths).unsqueeze(1)
        delta = torch.where(run, lam * (1 - decay) * fprime(R[t]), torch.zeros_like(lam))
        dd += torch.where(run, lam * (hp - R[t]), torch.zeros_like(lam)).double().sum(0)
        g = grad_H[t - 1] if t > 0 else torch.zeros_like(lam)
        lam = g + torch.where(run, decay * lam, lam) + delta @ W
        dU[t] = delta
    dW = torch.einsum("tbi,tbj->ij", dU, torch.cat([h0.unsqueeze(0), H[:-1]]))
    ddecay = dd.to(grad_H.dtype) if decay.dim() == 1 else dd.sum().to(grad_H.dtype)
    return [dU, dW, lam, ddecay]


def check(name, fused, ref64, ref32):
    f, e, r = fused.double(), ref64.double(), ref32.double()
    assert f.shape == e.shape, f"{name}: shape {tuple(f.shape)} != {tuple(e.shape)}"
    assert torch.isfinite(f).all(), f"{name}: non-finite values (unwritten output?)"
    err = (f - e).abs().max().item()
    bound = 2 * (r - e).abs().max().item() + 1e-5 * max(1.0, e.abs().max().item())
    assert err <= bound, f"{name}: fused error {err:.3g} > bound {bound:.3g} (ref32 error {(r - e).abs().max():.3g})"


NAMES = ["H", "h_T", "dU", "dW_hh", "dh0", "ddecay"]


def compare_end_to_end(case, activation, noise_std=0.0, seed=0):
    """Forward outputs (H, R) and every gradient of scan against the reference (C^1 activations)."""
    got = run_scan("fused", case, torch.float32, activation, noise_std, seed)
    exact = run_scan("ref", case, torch.float64, activation, noise_std, seed)
    ref32 = run_scan("ref", case, torch.float32, activation, noise_std, seed)
    for name, f, e, r in zip(NAMES, got, exact, ref32):
        check(f"{activation} {name}", f, e, r)
    H, R = fused_forward(case, torch.float32, activation, noise_std, seed)
    check(f"{activation} R", R, reference_rates(case, exact[0], activation, torch.float64, noise_std, seed),
          reference_rates(case, ref32[0], activation, torch.float32, noise_std, seed))
    assert torch.equal(H, got[0]), "op and scan disagree on H"


def compare_forward_and_backward_op(case, activation, noise_std=0.0, seed=0, need_ddecay=True):
    """Forward (H, R) against the reference; the backward op against the adjoint recursion on the same R."""
    H, R = fused_forward(case, torch.float32, activation, noise_std, seed)
    exact = run_scan("ref", case, torch.float64, activation, noise_std, seed, grads=False)[0]
    ref32 = run_scan("ref", case, torch.float32, activation, noise_std, seed, grads=False)[0]
    check(f"{activation} H", H, exact, ref32)
    check(f"{activation} R", R, reference_rates(case, exact, activation, torch.float64, noise_std, seed),
          reference_rates(case, ref32, activation, torch.float32, noise_std, seed))
    T, B, N = H.shape
    G = case["gH"].clone()
    G[-1] += case["gT"]
    args = [G, H.double(), R.double(), case["h0"], case["W"], case["decay"]]
    exact_b = adjoint_reference(*args, activation, case["lengths"])
    ref32_b = adjoint_reference(*[a.float() for a in args], activation, case["lengths"])
    poison_allocator(T, B, N, torch.float32)
    got_b = torch.ops.rate_rnn.backward(G.float(), H, R, case["h0"].float(), case["W"].float(),
                                        case["decay"].float(), ACTIVATIONS.index(activation), case["lengths"],
                                        need_ddecay)
    for name, f, e, r in zip(["dU", "dW_hh", "dh0", "ddecay"], got_b, exact_b, ref32_b):
        if name == "ddecay" and not need_ddecay:
            assert torch.equal(f, torch.zeros_like(f)), "ddecay must be zeros when not needed"
            continue
        check(f"{activation} backward-op {name}", f, e, r)


# ---- tests -----------------------------------------------------------------------------------------------------


def test_cuda_kernels_loaded():
    assert backend.fused_unavailable_reason("cuda") is None, backend.fused_unavailable_reason("cuda")
    assert rate_rnn.backend_info()["cuda"]["path"] == "fused"


GRID = [(N, B) for N in (32, 64, 100, 128, 256, 512, 1024) for B in (1, 7, 64, 256)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("N, B", GRID)
def test_grid_against_reference(monkeypatch, path, N, B):
    """T = 50 over the whole N x B grid; activation and options rotate so every combination class is covered."""
    use_path(monkeypatch, path)
    T = 50
    if path == "persistent" and not fits_persistent(N):
        case = make_case(T, B, N, "tanh", seed=1)
        with pytest.raises(RuntimeError, match="RATE_RNN_CUDA_PATH=persistent"):
            fused_forward(case, torch.float32, "tanh")
        return
    i = GRID.index((N, B))
    smooth, kinked = SMOOTH[i % len(SMOOTH)], KINKED[i % len(KINKED)]
    per_unit, with_lengths, noisy = bool(i % 2), bool((i // 2) % 2), bool((i // 4) % 2)
    noise = (0.2, 1000 + i) if noisy else (0.0, 0)
    case = make_case(T, B, N, smooth, per_unit, with_lengths, seed=i)
    compare_end_to_end(case, smooth, *noise)
    case = make_case(T, B, N, kinked, per_unit, with_lengths, seed=100 + i)
    compare_forward_and_backward_op(case, kinked, *noise, need_ddecay=bool(i % 3))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("per_unit, with_lengths, noisy", [(False, False, False), (True, False, True),
                                                           (False, True, True), (True, True, False)])
def test_every_activation_and_option(monkeypatch, path, activation, per_unit, with_lengths, noisy):
    use_path(monkeypatch, path)
    T, B, N = 50, 7, 64
    noise = (0.3, 77) if noisy else (0.0, 0)
    case = make_case(T, B, N, activation, per_unit, with_lengths, seed=ACTIVATIONS.index(activation))
    if activation in SMOOTH:
        compare_end_to_end(case, activation, *noise)
    compare_forward_and_backward_op(case, activation, *noise)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T", [1, 50, 200, 1000])
def test_sequence_length_sweep(monkeypatch, path, T):
    """N = 256 (the persistent path's largest W_hh, shared memory plus registers), B = 64, T up to 1000."""
    use_path(monkeypatch, path)
    N, B = 256, 64
    case = make_case(T, B, N, "tanh", per_unit=True, with_lengths=T > 1, seed=T)
    compare_end_to_end(case, "tanh", 0.1, 5)
    case = make_case(T, B, N, "relu", seed=T + 1)
    compare_forward_and_backward_op(case, "relu")


@pytest.mark.parametrize("B", [300, 1100])
def test_large_batch_row_tiles(monkeypatch, B):
    """Batches that need 4 and 8 rows per CTA on the persistent path (more CTAs than SMs, a partial last CTA)."""
    use_path(monkeypatch, "persistent")
    case = make_case(20, B, 100, "softplus", per_unit=True, with_lengths=True, seed=B)
    compare_end_to_end(case, "softplus")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float64_gemm_path(activation):
    """float64 runs on the gemm path (auto) and matches the float64 reference to rounding; noise included."""
    T, B, N = 30, 5, 48
    case = make_case(T, B, N, activation, per_unit=True, with_lengths=True, seed=7)
    got = run_scan("fused", case, torch.float64, activation, 0.2, 3)
    exact = run_scan("ref", case, torch.float64, activation, 0.2, 3)
    for name, f, e in zip(NAMES, got, exact):
        err = (f - e).abs().max().item()
        assert err <= 1e-10 * max(1.0, e.abs().max().item()), f"{activation} {name}: error {err:.3g}"


def test_persistent_refusals_name_the_reason(monkeypatch):
    use_path(monkeypatch, "persistent")
    case = make_case(4, 3, 8, "relu")
    with pytest.raises(RuntimeError, match="float32 only"):
        fused_forward(case, torch.float64, "relu")
    case = make_case(4, 3, PERSISTENT_MAX_N + 1, "relu")
    with pytest.raises(RuntimeError, match=r"N <= 256.*rate_rnn::forward"):
        fused_forward(case, torch.float32, "relu")
    monkeypatch.setenv("RATE_RNN_CUDA_PATH", "fastest")
    with pytest.raises(ValueError, match="RATE_RNN_CUDA_PATH"):
        fused_forward(case, torch.float32, "relu")


@pytest.mark.parametrize("path", PATHS)
def test_deterministic_run_to_run(monkeypatch, path):
    """Two runs are bitwise equal: no atomics, fixed reduction orders (d(decay) included)."""
    use_path(monkeypatch, path)
    case = make_case(60, 70, 128, "softplus", per_unit=True, with_lengths=True, seed=3)
    a = run_scan("fused", case, torch.float32, "softplus", 0.2, 9)
    b = run_scan("fused", case, torch.float32, "softplus", 0.2, 9)
    for name, x, y in zip(NAMES, a, b):
        assert torch.equal(x, y), f"{name} differs between two identical runs"


@pytest.mark.parametrize("path", PATHS)
def test_runs_on_the_current_stream(monkeypatch, path):
    """Launched on a side stream (and captured in a CUDA graph), the op gives the default stream's result."""
    use_path(monkeypatch, path)
    case = make_case(10, 6, 64, "tanh", seed=4)
    want = fused_forward(case, torch.float32, "tanh")
    args = [case[k].float().contiguous() for k in ("U", "W", "h0", "decay")]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = torch.ops.rate_rnn.forward(*args, 2, None, 0.0, 0)
    torch.cuda.current_stream().wait_stream(side)
    for w, g in zip(want, got):
        assert torch.equal(w, g)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # capture fails on any host sync or legacy-stream work inside the op
        captured = torch.ops.rate_rnn.forward(*args, 2, None, 0.0, 0)
    graph.replay()
    torch.cuda.synchronize()
    for w, g in zip(want, captured):
        assert torch.equal(w, g)


def test_lengths_outside_range_act_as_clamped(monkeypatch):
    """No device sync checks lengths on CUDA: values past the ends behave as 0 and T (and stay memory-safe)."""
    case = make_case(6, 4, 32, "tanh", with_lengths=True, seed=2)
    for path in PATHS:
        use_path(monkeypatch, path)
        case["lengths"] = torch.tensor([6, 0, 3, 6], device=DEV)
        want = fused_forward(case, torch.float32, "tanh")
        case["lengths"] = torch.tensor([99, -5, 3, 6], device=DEV)
        got = fused_forward(case, torch.float32, "tanh")
        for w, g in zip(want, got):
            assert torch.equal(w, g)


@pytest.mark.parametrize("path", PATHS)
def test_opcheck(monkeypatch, path):
    use_path(monkeypatch, path)
    case = make_case(5, 3, 16, "softplus", per_unit=True, with_lengths=True, seed=8)
    U, W, h0, d = (case[k].float().requires_grad_(True) for k in ("U", "W", "h0", "decay"))
    for args in [(U, W, h0, d, 1, None, 0.0, 0), (U, W, h0, d, 3, case["lengths"], 0.1, 42)]:
        torch.library.opcheck(torch.ops.rate_rnn.forward.default, args)
    H, R = torch.ops.rate_rnn.forward(U.detach(), W.detach(), h0.detach(), d.detach(), 3, case["lengths"], 0.0, 0)
    G = torch.randn_like(H)
    torch.library.opcheck(torch.ops.rate_rnn.backward.default,
                          (G, H, R, h0.detach(), W.detach(), d.detach(), 3, case["lengths"], True))


def test_noise_stream_matches_cpu_and_twin():
    """The device draws the CPU's stream (equal up to float rounding: the compilers contract mul+add
    differently) and its independent float64 twin."""
    shape = (3, 7, 4001)
    gpu = torch.zeros(shape, device=DEV)
    torch.ops.rate_rnn.add_normal_(gpu, 1.0, 12345)
    cpu = torch.zeros(shape)
    torch.ops.rate_rnn.add_normal_(cpu, 1.0, 12345)
    assert (gpu.cpu() - cpu).abs().max().item() < 2e-6
    twin = rate_rnn.standard_normal_ref(12345, shape)
    assert (gpu.cpu().double() - twin).abs().max().item() < 2e-5
    gpu64 = torch.zeros(shape, device=DEV, dtype=torch.float64)
    torch.ops.rate_rnn.add_normal_(gpu64, 1.0, 12345)
    assert torch.equal(gpu64.float(), gpu), "float64 self gets the float32 draw, as on the CPU"


def test_layer_on_cuda_matches_cpu():
    """RNNLayer end to end on the GPU (input GEMM + op) equals the CPU op's result to fp32 rounding."""
    torch.manual_seed(0)
    layer = rate_rnn.RNNLayer(10, 64, "tanh", 0.9)
    x = torch.randn(40, 8, 10)
    out_cpu, _ = layer(x)
    out_cpu.square().sum().backward()
    g_cpu = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer.cuda()
    out_gpu, _ = layer(x.cuda())
    out_gpu.square().sum().backward()
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-4, atol=1e-5)
    for gc, p in zip(g_cpu, layer.parameters()):
        torch.testing.assert_close(p.grad.cpu(), gc, rtol=1e-3, atol=1e-4)

