"""Finding the compiled op: the module built by setup.py, else a cached JIT build from the source tree."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ._build_config import CPU_SOURCES, CXX_FLAGS, LINK_FLAGS

_ROOT = Path(__file__).resolve().parent.parent

_state: dict = {}


def _jit_build() -> None:
    from torch.utils import cpp_extension

    sources = [str(_ROOT / s) for s in CPU_SOURCES]
    missing = [s for s in sources if not os.path.exists(s)]
    if missing:
        raise ImportError(f"no compiled rate_rnn._C and no sources to build it from (missing {missing})")
    print("rate_rnn: building the C++ extension (first use only; about a minute)...", file=sys.stderr)
    cpp_extension.load(
        name="rate_rnn_jit_C",
        sources=sources,
        extra_cflags=CXX_FLAGS,
        extra_ldflags=LINK_FLAGS,
        is_python_module=False,
        verbose=False,
    )


def load() -> tuple[bool, str]:
    """Load the op library once. Returns (loaded, how or why not)."""
    if "loaded" in _state:
        return _state["loaded"], _state["how"]
    try:
        from . import _C  # noqa: F401  (built by setup.py; importing registers the op)

        how = f"compiled extension {Path(_C.__file__).name}"
        loaded = True
    except ImportError as first:
        if os.environ.get("RATE_RNN_NO_JIT", "0") == "1":
            loaded, how = False, f"rate_rnn._C is not built ({first}) and RATE_RNN_NO_JIT=1 forbids a JIT build"
        else:
            try:
                _jit_build()
                loaded, how = True, "JIT-built extension (torch.utils.cpp_extension.load)"
            except Exception as err:  # compiler missing, headers missing, ...
                loaded, how = False, f"rate_rnn._C is not built ({first}) and the JIT build failed: {err}"
    _state.update(loaded=loaded, how=how)
    return loaded, how


def kernels() -> dict:
    """{device type: whether rate_rnn::forward has a kernel for it}, read once after loading (plain data, so
    torch.compile can trace the backend choice)."""
    if "kernels" not in _state:
        loaded, _ = load()
        _state["kernels"] = {
            device: loaded and torch._C._dispatch_has_kernel_for_dispatch_key("rate_rnn::forward", key)
            for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
        }
    return _state["kernels"]
