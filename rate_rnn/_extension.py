"""Finding the compiled op: the modules built by setup.py (rate_rnn._C, and rate_rnn._C_cuda where a GPU is usable),
else cached JIT builds from the source tree."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from ._build_config import CPU_SOURCES, CXX_FLAGS, LINK_FLAGS, NVCC_FLAGS, SHARED_SOURCES, cuda_link

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
    if loaded:
        _state["cuda_how"] = _load_cuda()
    return loaded, how


# ---- CUDA kernels (rate_rnn._C_cuda: TORCH_LIBRARY_IMPL(rate_rnn, CUDA) for the op that _C defines) ----------


def _jit_build_cuda() -> None:
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None or shutil.which("nvcc") is None:
        raise ImportError("no CUDA compiler (nvcc) to build the CUDA kernels with")
    cuda_sources = sorted(str(p) for p in (_ROOT / "csrc" / "cuda").glob("*.cu"))
    if not cuda_sources:
        raise ImportError("no CUDA sources (csrc/cuda/*.cu) to build the CUDA kernels from")
    sources = cuda_sources + [str(_ROOT / s) for s in SHARED_SOURCES]
    name = "rate_rnn_jit_C_cuda"
    include, lib_dirs, link = cuda_link()
    # load() links a plain -lcudart (and we -lcublas): give the pip wheels' lib<name>.so.N those names in a folder
    # of the build directory, seen by the linker only.
    links = Path(cpp_extension._get_build_directory(name, verbose=False)) / "link"
    links.mkdir(parents=True, exist_ok=True)
    for lib, how in link.items():  # how: "<name>" (the toolkit's) or ":lib<name>.so.N" (a wheel's, in lib_dirs)
        alias = links / f"lib{lib}.so"
        if how.startswith(":") and not alias.exists():
            alias.symlink_to(next(Path(d) / how[1:] for d in lib_dirs if (Path(d) / how[1:]).exists()))
    print("rate_rnn: building the CUDA kernels (first use only; a few minutes)...", file=sys.stderr)
    cpp_extension.load(
        name=name,
        sources=sources,
        extra_cflags=CXX_FLAGS,
        extra_cuda_cflags=NVCC_FLAGS,
        extra_include_paths=include,
        extra_ldflags=[f"-L{links}", *(f"-L{d}" for d in lib_dirs), "-lcublas", *LINK_FLAGS],
        with_cuda=True,
        is_python_module=False,
        verbose=False,
    )


def _load_cuda() -> str:
    """Register the CUDA kernels where a GPU is usable: the module built by setup.py, else a JIT build (which
    needs nvcc and ninja). Returns how they were loaded, or why not (cuda_status says which)."""
    if not torch.cuda.is_available():
        _state["cuda_loaded"] = False
        return "no CUDA device (torch.cuda.is_available() is False)"
    _state["cuda_loaded"] = True
    try:
        from . import _C_cuda  # noqa: F401  (importing registers the CUDA kernels)

        return f"compiled extension {Path(_C_cuda.__file__).name}"
    except ImportError as first:
        if os.environ.get("RATE_RNN_NO_JIT", "0") == "1":
            why = f"rate_rnn._C_cuda is not built ({first}) and RATE_RNN_NO_JIT=1 forbids a JIT build"
        else:
            try:
                _jit_build_cuda()
                return "JIT-built CUDA extension (torch.utils.cpp_extension.load)"
            except Exception as err:  # nvcc, ninja or cuBLAS missing, compile error, ...
                why = f"rate_rnn._C_cuda is not built ({first}) and the JIT build failed: {err}"
    _state["cuda_loaded"] = False
    return why


def cuda_status() -> tuple[bool, str]:
    """(whether the CUDA kernels are loaded, how or why not); loads the library first."""
    loaded, how = load()
    if not loaded:
        return False, how
    return _state["cuda_loaded"], _state["cuda_how"]


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
