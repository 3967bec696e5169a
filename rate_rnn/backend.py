"""Choosing between the compiled op ('fused') and the pure-PyTorch loop ('reference').

``RATE_RNN_BACKEND`` (environment) or :func:`set_backend` selects:

* ``auto`` (default): the compiled op where a kernel exists for the tensors' device, else the reference loop,
  with ONE warning per reason saying why;
* ``fused``: the compiled op, and an error where it is not available (never a silent fallback);
* ``reference``: always the Python loop.
"""
from __future__ import annotations

import os
import warnings

from . import _extension

BACKENDS = ("auto", "fused", "reference")
_choice: dict = {"name": None}
_warned: set = set()


def _validate(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"rate_rnn backend must be one of {BACKENDS}, got {name!r}")
    return name


def get_backend() -> str:
    """The requested backend: set_backend's value, else $RATE_RNN_BACKEND, else 'auto'."""
    if _choice["name"] is not None:
        return _choice["name"]
    env = os.environ.get("RATE_RNN_BACKEND", "auto").strip().lower() or "auto"
    if env not in BACKENDS:
        raise ValueError(f"RATE_RNN_BACKEND must be one of {BACKENDS}, got {env!r}")
    return env


def set_backend(name: str | None) -> None:
    """Select 'auto', 'fused' or 'reference' for this process (None: back to $RATE_RNN_BACKEND)."""
    _choice["name"] = None if name is None else _validate(name)


def fused_unavailable_reason(device_type: str) -> str | None:
    """Why the compiled op cannot run on ``device_type`` ('cpu', 'cuda'), or None when it can."""
    loaded, how = _extension.load()
    if not loaded:
        return how
    if not _extension.kernels().get(device_type, False):
        if device_type == "cuda" and not _extension.cuda_status()[0]:
            return f"the compiled op has no cuda kernel: {_extension.cuda_status()[1]}"
        return f"the compiled op has no {device_type} kernel in this build"
    return None


def resolve(device_type: str, activation_supported: bool = True) -> str:
    """'fused' or 'reference' for a call on ``device_type``; raises where 'fused' was demanded but cannot run."""
    requested = get_backend()
    if requested == "reference":
        return "reference"
    reason = fused_unavailable_reason(device_type)
    if reason is None and not activation_supported:
        reason = "the nonlinearity is a callable the compiled op does not know"
    if reason is None:
        return "fused"
    if requested == "fused":
        raise RuntimeError(f"RATE_RNN_BACKEND=fused but the fused op cannot run: {reason}")
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"rate_rnn: using the reference (Python loop) backend: {reason}", RuntimeWarning,
                      stacklevel=3)
    return "reference"


def backend_info() -> dict:
    """What is in use and why: requested backend, extension status, and the path per device type."""
    loaded, how = _extension.load()
    info = {"requested": get_backend(), "extension_loaded": loaded, "extension": how}
    for device_type in ("cpu", "cuda"):
        reason = fused_unavailable_reason(device_type)
        path = "reference" if info["requested"] == "reference" or reason else "fused"
        info[device_type] = {"path": path, "why": reason or ("requested" if path == "reference" else how)}
    return info
