"""rate_rnn: the leaky (continuous-time, Euler) rate RNN as one fused op with a hand-written backward.

    z_t = U_t + noise_t + h_{t-1} W_hh^T,   h_t = d * h_{t-1} + (1 - d) * f(z_t),   U_t = x_t W_ih^T + b

Public API: `RNNLayer` (drop-in for the published PyTorch port), `RNNCell`, `scan`, `scan_reference`,
`set_backend` / `get_backend` / `backend_info`, `ACTIVATIONS`.
"""
from .backend import backend_info, get_backend, set_backend
from .layers import CellLoopLayer, RNNCell, RNNLayer, activation_name
from .ops import noise_tensor, scan
from .reference import ACTIVATIONS, scan_reference, standard_normal_ref

__all__ = ["ACTIVATIONS", "CellLoopLayer", "RNNCell", "RNNLayer", "activation_name", "backend_info", "get_backend", "noise_tensor",
           "scan", "scan_reference", "set_backend", "standard_normal_ref"]
