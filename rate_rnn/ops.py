"""The leaky rate-RNN scan as a torch.library op: argument checks, fake (meta) kernels, autograd, and `scan`.

The op's contract is written once, in ``csrc/rate_rnn.h``; this module adds the Python side of it.
"""
from __future__ import annotations

import math
from numbers import Real

import torch

from . import _extension, backend
from .reference import ACTIVATIONS, scan_reference, standard_normal_ref

_SUPPORTED_DTYPES = (torch.float32, torch.float64)
_registered: dict = {}


def _register_python_side() -> bool:
    """Fake kernels and autograd for the compiled op; runs once, after the library is loaded."""
    if "done" in _registered:
        return _registered["done"]
    loaded, _ = _extension.load()
    _registered["done"] = loaded
    if not loaded:
        return False

    @torch.library.register_fake("rate_rnn::forward")
    def _forward_fake(U, W_hh, h0, decay, activation, lengths, noise_std, seed):
        return torch.empty_like(U), torch.empty_like(U)

    @torch.library.register_fake("rate_rnn::backward")
    def _backward_fake(grad_H, H, R, h0, W_hh, decay, activation, lengths, need_ddecay):
        return torch.empty_like(grad_H), torch.empty_like(W_hh), torch.empty_like(h0), torch.empty_like(decay)

    def _setup_context(ctx, inputs, output):
        U, W_hh, h0, decay, activation, lengths, noise_std, seed = inputs
        H, R = output
        ctx.activation = activation
        ctx.mark_non_differentiable(R)
        ctx.set_materialize_grads(False)  # no (T, B, N) zeros for R's gradient
        ctx.save_for_backward(H, R, h0, W_hh, decay, lengths)

    def _backward(ctx, grad_H, grad_R):
        H, R, h0, W_hh, decay, lengths = ctx.saved_tensors
        if grad_H is None:
            grad_H = torch.zeros_like(H)
        dU, dW, dh0, ddecay = torch.ops.rate_rnn.backward(
            grad_H.contiguous(), H, R, h0, W_hh, decay, ctx.activation, lengths, bool(ctx.needs_input_grad[3]))
        needs = ctx.needs_input_grad
        return (dU if needs[0] else None, dW if needs[1] else None, dh0 if needs[2] else None,
                ddecay if needs[3] else None, None, None, None, None)

    torch.library.register_autograd("rate_rnn::forward", _backward, setup_context=_setup_context)
    return True


def _shape(t) -> str:
    return str(tuple(t.shape))


def _values_checkable() -> bool:
    """Value checks (ranges, NaN) read tensor data: skipped while torch.compile traces, where the C++ op checks."""
    return not torch.compiler.is_compiling()


def check_scan_args(U, W_hh, h0, decay, activation, lengths, noise_std):
    """Validate ``scan``'s arguments; raise TypeError/ValueError naming the argument, its shape and the expected."""
    if not isinstance(U, torch.Tensor):
        raise TypeError(f"U must be a torch.Tensor of shape (T, B, N), got {type(U).__name__}")
    if U.dim() != 3:
        raise ValueError(f"U must have shape (T, B, N), got shape {_shape(U)}")
    T, B, N = U.shape
    if min(T, B, N) < 1:
        raise ValueError(f"U must have T, B, N >= 1, got shape {_shape(U)}")
    if U.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"U must be float32 or float64, got {U.dtype} (cast half/bfloat16 inputs to float32)")
    for name, t, shape in (("W_hh", W_hh, (N, N)), ("h0", h0, (B, N))):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {_shape(t)}, expected {shape} (U has shape {_shape(U)})")
        if t.dtype != U.dtype:
            raise TypeError(f"{name} has dtype {t.dtype}, expected {U.dtype} (the dtype of U)")
        if t.device != U.device:
            raise ValueError(f"{name} is on {t.device}, expected {U.device} (the device of U)")
    if isinstance(decay, torch.Tensor):
        if decay.dim() not in (0, 1) or (decay.dim() == 1 and decay.shape[0] != N):
            raise ValueError(f"decay has shape {_shape(decay)}, expected () or ({N},)")
        if not decay.is_floating_point():
            raise TypeError(f"decay must be a floating tensor, got {decay.dtype}")
        if decay.device != U.device:
            raise ValueError(f"decay is on {decay.device}, expected {U.device} (the device of U)")
        d = decay.detach()
        if _values_checkable() and not bool(((d >= 0) & (d < 1)).all()):
            raise ValueError(f"decay must lie in [0, 1), got values in [{d.min().item()}, {d.max().item()}]")
    elif isinstance(decay, Real):
        if not 0 <= float(decay) < 1:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
    else:
        raise TypeError(f"decay must be a float or a tensor of shape () or ({N},), got {type(decay).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or lengths.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"lengths must be an integer tensor of shape ({B},)")
        if tuple(lengths.shape) != (B,):
            raise ValueError(f"lengths has shape {_shape(lengths)}, expected ({B},)")
        if _values_checkable() and (int(lengths.min()) < 0 or int(lengths.max()) > T):
            raise ValueError(f"lengths must lie in [0, T={T}], got values in "
                             f"[{int(lengths.min())}, {int(lengths.max())}]")
    if not isinstance(noise_std, Real) or not math.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be a finite float >= 0, got {noise_std!r}")
    if _values_checkable() and not bool(torch.isfinite(W_hh.detach()).all()):
        raise ValueError("W_hh contains NaN or infinite values")


def draw_seed() -> int:
    """A noise-stream seed from torch's default generator, so ``torch.manual_seed`` makes runs reproducible."""
    return int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())


def add_normal_(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """In place ``x += std * xi`` with xi the noise stream ``seed`` over x viewed as (numel/x.shape[-1], x.shape[-1])
    (float32/float64, contiguous); the compiled generator, or its pure-PyTorch twin without the extension."""
    if not x.is_contiguous():
        raise ValueError("add_normal_: x must be contiguous")
    if _register_python_side() and _extension.kernels().get(x.device.type, False):
        torch.ops.rate_rnn.add_normal_(x, float(std), int(seed))
    else:
        x += (std * standard_normal_ref(seed, x.shape, device=x.device)).to(x.dtype)
    return x


class PendingNoise:
    """Noise being added in the background by ``add_normal_start``; ``wait()`` returns once every element is done
    (it also computes the chunks nobody has taken yet). Waits on deletion too, so no writer outlives it."""

    def __init__(self, handle):
        self._handle = handle

    def wait(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            torch.ops.rate_rnn.add_normal_end(handle)

    def __del__(self):
        try:
            self.wait()
        except Exception:  # interpreter shutdown: the extension may already be gone
            pass


def add_normal_start(x: torch.Tensor, std: float, seed: int, *, overwrite: bool = False) -> PendingNoise:
    """Start ``add_normal_(x.view(-1), std, seed)`` in the background and return at once (a helper thread and, at
    ``wait()``, the caller share the work); ``overwrite=True`` writes ``x = std * xi`` instead, as if x were zero.
    ``x``: float32, contiguous, on the CPU; do not touch it until ``wait()`` on the returned object. Without the
    compiled op, runs synchronously with the twin."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.device.type != "cpu" \
            or not x.is_contiguous():
        raise ValueError("add_normal_start: x must be a contiguous float32 CPU tensor, got "
                         f"{getattr(x, 'dtype', type(x))} on {getattr(x, 'device', '?')}")
    if _register_python_side() and _extension.kernels().get("cpu", False):
        return PendingNoise(torch.ops.rate_rnn.add_normal_begin(x, float(std), int(seed), bool(overwrite)))
    if overwrite:
        x.zero_()
    add_normal_(x.view(-1), std, seed)
    return PendingNoise(None)


def noise_tensor(shape, std: float, seed: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``std`` times the noise stream ``seed`` laid out in ``shape``: exactly what the fused op adds to z."""
    return add_normal_(torch.zeros(tuple(shape), dtype=dtype, device=device), std, seed)


def scan(U, W_hh, h0, decay, activation: str = "relu", lengths=None, noise_std: float = 0.0, seed=None,
         validate: bool = True):
    """Run the leaky rate RNN over a whole sequence.

    For t = 1..T: ``z_t = U_t + noise_std*xi_t + h_{t-1} W_hh^T``, ``h_t = d*h_{t-1} + (1-d)*f(z_t)``.

    Args:
        U: (T, B, N) input drive ``x_t W_ih^T + b`` (time-major).
        W_hh: (N, N) recurrent weights, ``W_hh[i, j]`` from unit j to unit i.
        h0: (B, N) initial state.
        decay: d in [0, 1), a float or a tensor of shape () or (N,); may require grad.
        activation: one of ``rate_rnn.ACTIVATIONS``.
        lengths: optional (B,) integer tensor; row b stops updating after ``lengths[b]`` steps (h frozen).
        noise_std: std of the Gaussian noise added to z_t (inside f), drawn inside the op.
        seed: noise stream; None draws one from torch's default generator.
        validate: check arguments in Python first (the C++ op checks again).

    Returns:
        (H, h_T): H (T, B, N) all states; h_T (B, N) the final state.
    """
    if validate:
        check_scan_args(U, W_hh, h0, decay, activation, lengths, noise_std)
    if not isinstance(decay, torch.Tensor):
        decay = torch.tensor(float(decay), dtype=U.dtype, device=U.device)
    elif decay.dtype != U.dtype:
        decay = decay.to(U.dtype)
    if lengths is not None:
        lengths = lengths.to(device=U.device, dtype=torch.int64)
    if noise_std > 0 and seed is None:
        seed = draw_seed()
    path = backend.resolve(U.device.type)
    if path == "fused" and _register_python_side():
        H, _ = torch.ops.rate_rnn.forward(U.contiguous(), W_hh.contiguous(), h0.contiguous(), decay.contiguous(),
                                          ACTIVATIONS.index(activation), lengths, float(noise_std),
                                          int(seed or 0))
        return H, H[-1]
    noise = None
    if noise_std > 0:
        noise = noise_tensor(U.shape, noise_std, seed, dtype=U.dtype, device=U.device)
    return scan_reference(U, W_hh, h0, decay, activation, lengths, noise)
