"""Modules: `RNNCell` (one Euler step) and `RNNLayer` (a whole sequence through the fused op).

`RNNLayer(input_size, hidden_size, nonlinearity, decay, bias=True)` keeps the published PyTorch port's positional
signature, call (``out, h_T = layer(x, hidden_init)``) and parameter names (``rnncell.weight_ih``,
``rnncell.weight_hh``, ``rnncell.bias``), so the port's code and state_dicts work unchanged.
"""
from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from . import backend
from .ops import check_scan_args, draw_seed, noise_tensor, scan
from .reference import ACTIVATIONS, activation_fn, scan_reference

_MODULE_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Identity: "identity"}


def activation_name(nonlinearity) -> str | None:
    """The op's name for ``nonlinearity`` (a name or an nn.Module), or None for a callable it does not know."""
    if isinstance(nonlinearity, str):
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {ACTIVATIONS} or a module/callable, got {nonlinearity!r}")
        return nonlinearity
    if isinstance(nonlinearity, nn.Softplus):
        return "softplus" if (nonlinearity.beta, nonlinearity.threshold) == (1, 20) else None
    for cls, name in _MODULE_ACTIVATIONS.items():
        if type(nonlinearity) is cls:
            return name
    if not callable(nonlinearity):
        raise TypeError(f"nonlinearity must be a name in {ACTIVATIONS} or a callable, got {nonlinearity!r}")
    return None


class RNNCell(nn.Module):
    """One Euler step ``h' = d*h + (1-d)*f(W_ih x + b + W_hh h)``: the reference cell of the published port.

    Args:
        input_size, hidden_size: I and N.
        nonlinearity: a name in ``rate_rnn.ACTIVATIONS`` or a module/callable (e.g. ``nn.ReLU()``).
        decay: d in [0, 1) (float) or a (N,) tensor.
        bias: learnable bias b (N,).
    Call: ``cell(x (B, I), h (B, N)) -> h' (B, N)``.
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity="relu", decay: float = 0.8,
                 bias: bool = True):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.activation = activation_name(nonlinearity)
        self.nonlinearity = nonlinearity if callable(nonlinearity) else activation_fn(nonlinearity)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.decay = decay
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The port's init (torch defaults): kaiming_uniform(a=sqrt(5)) weights, bias U(+-1/sqrt(input_size))."""
        nn.init.kaiming_uniform_(self.weight_ih, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.weight_hh, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.input_size)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z = x @ self.weight_ih.t() + h @ self.weight_hh.t()
        if self.bias is not None:
            z = z + self.bias
        d = self.decay
        return d * h + (1 - d) * self.nonlinearity(z)


class CellLoopLayer(nn.Module):
    """The published port's layer: ``RNNCell`` stepped in a Python loop, autograd through every step, no noise.

    Same signature and call as ``RNNLayer`` (``out, h_T = layer(x (T, B, I), hidden_init (1, B, N))``, h_T (B, N));
    the baseline the benchmarks time the fused op against.
    """

    def __init__(self, input_size, hidden_size, nonlinearity="relu", decay=0.8, bias=True):
        super().__init__()
        self.rnncell = RNNCell(input_size, hidden_size, nonlinearity, decay, bias)

    def forward(self, x, hidden_init):
        h, states = hidden_init[0], []
        for t in range(x.shape[0]):
            h = self.rnncell(x[t], h)
            states.append(h)
        return torch.stack(states), h


class RNNLayer(nn.Module):
    """A leaky rate-RNN layer over a whole sequence, run by the fused op (reference loop where it cannot run).

    Args (positional, as the published port):
        input_size: I.
        hidden_size: N.
        nonlinearity: a name in ``rate_rnn.ACTIVATIONS`` or a module (nn.ReLU(), nn.Tanh(), nn.Softplus(), ...);
            any other callable runs on the reference path (with a warning).
        decay: d = 1 - dt/tau in [0, 1): a float, or a (N,) tensor (one time constant per unit).
        bias: learnable bias (N,).
    Keyword options beyond the port:
        batch_first: x is (B, T, I) and out (B, T, N).
        sigma_rec: std of recurrent noise added inside f at every step (training and evaluation), 0 = off.
        learn_decay: make ``decay`` a learnable parameter (kept in [0, 1) by the caller's care; checked per call).
        learn_h0: a learnable initial state (N,) used when no hidden_init is given.
        init: 'default' (the port's kaiming_uniform) or 'none' (leave the weights for the caller to set).

    Call: ``out, h_T = layer(x, hidden_init=None, lengths=None, noise=None)``
        x (T, B, I); hidden_init (1, B, N) or (B, N), default zeros (or the learnable h0);
        lengths (B,) ints: row b is frozen after lengths[b] steps; noise (T, B, N): an explicit noise tensor
        added to z (replaces sigma_rec for this call; runs on the reference path).
        out (T, B, N) every state; h_T the final state, shaped like hidden_init ((1, B, N) by default).
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity="relu", decay: float = 0.8,
                 bias: bool = True, *, batch_first: bool = False, sigma_rec: float = 0.0, learn_decay: bool = False,
                 learn_h0: bool = False, init: str = "default"):
        super().__init__()
        self.rnncell = RNNCell(input_size, hidden_size, nonlinearity, 0.0, bias)
        if init not in ("default", "none"):
            raise ValueError(f"init must be 'default' or 'none', got {init!r}")
        if not isinstance(sigma_rec, Real) or sigma_rec < 0:
            raise ValueError(f"sigma_rec must be a float >= 0, got {sigma_rec!r}")
        decay_t = torch.as_tensor(decay, dtype=torch.float32).clone()
        if decay_t.dim() not in (0, 1) or (decay_t.dim() == 1 and decay_t.shape[0] != hidden_size):
            raise ValueError(f"decay must be a float or a ({hidden_size},) tensor, got shape {tuple(decay_t.shape)}")
        if not bool(((decay_t >= 0) & (decay_t < 1)).all()):
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        if learn_decay:
            self.decay = nn.Parameter(decay_t)
        else:  # not persistent: the port's state_dicts hold only the rnncell weights
            self.register_buffer("decay", decay_t, persistent=False)
        self.h0 = nn.Parameter(torch.zeros(hidden_size)) if learn_h0 else None
        self.input_size, self.hidden_size = input_size, hidden_size
        self.batch_first, self.sigma_rec = batch_first, float(sigma_rec)

    @property
    def activation(self) -> str | None:
        return self.rnncell.activation

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """U = x W_ih^T + b for all steps at once (one GEMM). x (T, B, I) -> (T, B, N)."""
        cell = self.rnncell
        if cell.bias is None:
            return x @ cell.weight_ih.t()
        return torch.addmm(cell.bias, x.reshape(-1, x.shape[-1]), cell.weight_ih.t()).view(*x.shape[:-1], -1)

    def forward(self, x: torch.Tensor, hidden_init: torch.Tensor | None = None, lengths=None, noise=None):
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a 3-D tensor ({'B, T' if self.batch_first else 'T, B'}, I), got {shape}")
        if self.batch_first:
            x = x.transpose(0, 1)
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x has {I} input features (shape {tuple(x.shape)}), expected input_size="
                             f"{self.input_size}")
        cell = self.rnncell
        if x.dtype != cell.weight_ih.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the layer's weights are {cell.weight_ih.dtype}")
        N = self.hidden_size
        if hidden_init is None:
            h0 = (self.h0.expand(B, N) if self.h0 is not None else x.new_zeros(B, N))
            out_shape = (1, B, N)
        else:
            if hidden_init.dim() == 3 and hidden_init.shape[0] == 1:
                h0 = hidden_init[0]
            elif hidden_init.dim() == 2:
                h0 = hidden_init
            else:
                raise ValueError(f"hidden_init must have shape (1, {B}, {N}) or ({B}, {N}), "
                                 f"got {tuple(hidden_init.shape)}")
            out_shape = tuple(hidden_init.shape)
            h0 = h0.to(x.device)
        U = self.input_drive(x)
        if self.activation is None or noise is not None:
            if noise is not None and tuple(noise.shape) != (T, B, N):
                raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(T, B, N)}")
            check_scan_args(U, cell.weight_hh, h0, self.decay, self.activation or "identity", lengths, 0.0)
            if self.activation is None:
                backend.resolve(x.device.type, activation_supported=False)  # warns once, or raises for 'fused'
            if noise is None and self.sigma_rec > 0:
                noise = noise_tensor(U.shape, self.sigma_rec, draw_seed(), U.dtype, U.device)
            f = self.activation or cell.nonlinearity
            out, h_T = scan_reference(U, cell.weight_hh, h0, self.decay, f, lengths, noise)
        else:
            out, h_T = scan(U, cell.weight_hh, h0.contiguous(), self.decay, self.activation, lengths,
                            self.sigma_rec)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, h_T.reshape(out_shape)

