"""Compiler flags for the C++/CUDA extension: one home, read by setup.py and by the JIT build (no imports of
the package, so setup.py can load this file before anything is built)."""
import glob
import os
import platform


def _cpu_has(*flags: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return False
    return all(flag in words for flag in flags)


# rate_rnn_checks.cpp (the argument checks) is compiled into both modules: one definition, two libraries.
SHARED_SOURCES = ["csrc/rate_rnn_checks.cpp"]
CPU_SOURCES = ["csrc/rate_rnn.cpp", "csrc/rate_rnn_cpu.cpp", *SHARED_SOURCES]
# -fno-math-errno and -fno-trapping-math let sqrt and the branch-free selects vectorise; AVX2/FMA where the building CPU has them (a source build targets its host),
# since the elementwise and noise loops are 8-wide there and 4-wide (SSE2) otherwise.
# No -std: torch's build helpers add the standard its headers need (C++20 from torch 2.14 on; C++17 fails there).
CXX_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
if platform.machine() in ("x86_64", "AMD64") and _cpu_has("avx2", "fma"):
    CXX_FLAGS += ["-mavx2", "-mfma"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "-lineinfo", "-Xptxas", "-v",
              "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]


def cuda_link():
    """How to link the CUDA libraries the extension calls: (include dirs, library dirs, {name: link name}) for
    cublas and cudart. Prefers the pip CUDA wheels that a CUDA build of torch loads (nvidia/cu*/lib, or
    nvidia/cublas/lib and nvidia/cuda_runtime/lib for CUDA 12): they ship only lib<name>.so.N, linked by exact name
    (-l:lib<name>.so.N). A library not found there is left to the CUDA toolkit (-l<name>)."""
    include, lib_dirs, link = [], [], {"cublas": "cublas", "cudart": "cudart"}
    try:
        import nvidia
    except ImportError:
        return include, lib_dirs, link
    roots = [p for base in nvidia.__path__ for p in sorted(glob.glob(os.path.join(base, "cu*")))]
    include = [os.path.join(r, "include") for r in roots if os.path.isdir(os.path.join(r, "include"))]
    for name in link:
        for root in roots:
            lib = os.path.join(root, "lib")
            versioned = sorted(glob.glob(os.path.join(lib, f"lib{name}.so.[0-9]*")), key=len)
            if os.path.exists(os.path.join(lib, f"lib{name}.so")) or versioned:
                link[name] = name if os.path.exists(os.path.join(lib, f"lib{name}.so")) else \
                    ":" + os.path.basename(versioned[0])
                lib_dirs += [lib] if lib not in lib_dirs else []
                break
    return include, lib_dirs, link
