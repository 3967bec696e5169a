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


def cublas_link():
    """(include dirs, library dirs, libraries) for cuBLAS. Prefers the pip CUDA wheels that a CUDA build of torch
    loads (nvidia/cu*/ or nvidia/cublas/): they ship only libcublas.so.N, so it is linked by exact name
    (-l:libcublas.so.N); else plain -lcublas from the CUDA toolkit."""
    include, lib_dirs, libs = [], [], ["cublas"]
    try:
        import nvidia
    except ImportError:
        return include, lib_dirs, libs
    roots = [p for base in nvidia.__path__ for p in sorted(glob.glob(os.path.join(base, "cu*")))]
    include = [os.path.join(r, "include") for r in roots if os.path.isdir(os.path.join(r, "include"))]
    for root in roots:
        lib = os.path.join(root, "lib")
        if os.path.exists(os.path.join(lib, "libcublas.so")):
            return include, [lib], ["cublas"]
        versioned = sorted(glob.glob(os.path.join(lib, "libcublas.so.[0-9]*")))
        if versioned:
            return include, [lib], [":" + os.path.basename(versioned[0])]
    return include, lib_dirs, libs
