"""Pure-PyTorch twins of the compiled op: the oracle for tests and the fallback where no kernel exists.

Everything here is plain autograd over a Python loop, exactly the published port's computation, plus the
counter-based noise stream of ``csrc/noise.h`` re-implemented with integer tensor ops (float64 log/cos instead
of the kernel's polynomials), so that the fused op's in-kernel noise can be checked against an independent code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Activation names in the order of the C++ ``Activation`` codes.
ACTIVATIONS = ("identity", "relu", "tanh", "softplus", "retanh", "power")


def activation_fn(name: str):
    """The elementwise function ``f`` for an activation name (see ``ACTIVATIONS``)."""
    table = {
        "identity": lambda z: z,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "softplus": F.softplus,  # beta 1, threshold 20
        "retanh": lambda z: torch.tanh(torch.relu(z)),
        "power": lambda z: torch.relu(z) ** 2,
    }
    if name not in table:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return table[name]


_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def standard_normal_ref(seed: int, shape, device=None) -> torch.Tensor:
    """The noise stream ``seed`` laid out in ``shape`` (float64), as ``noise::standard_normal`` defines it:
    the tensor viewed as (numel / shape[-1], shape[-1]) rows and columns."""
    shape = tuple(shape)
    seed &= (1 << 64) - 1
    cols = shape[-1] if shape else 1
    rows = math.prod(shape) // cols if cols else 0
    row = torch.arange(rows, dtype=torch.int64, device=device).unsqueeze(1)
    col = torch.arange(cols, dtype=torch.int64, device=device).unsqueeze(0)
    a = _mix32((((row & _M32) * 0x9E3779B9) & _M32) ^ (seed & _M32))
    b = _mix32(a ^ (((row >> 32) + (seed >> 32) * 0x85EBCA6B) & _M32))
    k0, k1 = b, _mix32(b ^ 0x68E31DA4)
    h = _mix32((((col >> 1) * 0x9E3779B9) & _M32) ^ k0)
    h2 = _mix32(h ^ k1)
    # The kernel rounds u1 to float32 before its log; do the same so both draw the same radius.
    u1 = (((h >> 1).double() + 0.5) / 2.0**31).float().double()
    u2 = (h2 >> 8).double() / 2.0**24
    angle = 2 * math.pi * u2
    half = torch.where((col & 1).bool(), torch.sin(angle), torch.cos(angle))  # odd columns: the sine half
    return (torch.sqrt(-2.0 * torch.log(u1)) * half).reshape(shape)


def scan_reference(U, W_hh, h0, decay, activation="relu", lengths=None, noise=None):
    """Reference leaky scan. Shapes as ``rate_rnn.scan``; ``noise`` (T, B, N) is added to z_t (already scaled);
    ``activation`` is a name in ``ACTIVATIONS`` or any elementwise callable.

    Returns ``(H, h_T)``: H (T, B, N) every state, h_T (B, N) the final one.
    """
    f = activation if callable(activation) else activation_fn(activation)
    decay = torch.as_tensor(decay, dtype=U.dtype, device=U.device)
    h = h0
    states = []
    for t in range(U.shape[0]):
        z = U[t] + h @ W_hh.t()
        if noise is not None:
            z = z + noise[t]
        h_new = decay * h + (1 - decay) * f(z)
        if lengths is not None:
            h_new = torch.where((t < lengths.to(U.device)).unsqueeze(1), h_new, h)
        states.append(h_new)
        h = h_new
    return torch.stack(states), h
