"""Compiler flags for the C++/CUDA extension: one home, read by setup.py and by the JIT build (no imports of
the package, so setup.py can load this file before anything is built)."""
import platform


def _cpu_has(*flags: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return False
    return all(flag in words for flag in flags)


CPU_SOURCES = ["csrc/rate_rnn.cpp", "csrc/rate_rnn_cpu.cpp"]
# -fno-math-errno and -fno-trapping-math let sqrt and the branch-free selects vectorise; AVX2/FMA where the building CPU has them (a source build targets its host),
# since the elementwise and noise loops are 8-wide there and 4-wide (SSE2) otherwise.
CXX_FLAGS = ["-O3", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
if platform.machine() in ("x86_64", "AMD64") and _cpu_has("avx2", "fma"):
    CXX_FLAGS += ["-mavx2", "-mfma"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "-std=c++17", "-lineinfo", "-Xptxas", "-v",
              "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
