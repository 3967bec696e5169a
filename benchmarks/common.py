"""Shared by the benchmarks: timing (medians of repeats), machine description, tables and JSON results."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(fn, repeats: int = 7, warmup: int = 2, inner: int = 1) -> float:
    """Median over ``repeats`` runs of the mean wall time (ms) of ``inner`` calls of ``fn``."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(runs)


def interleaved_ms(fns: dict, repeats: int = 7, warmup: int = 2) -> dict:
    """{name: [ms of each repeat]} for callables timed in turn within every repeat (A B C A B C ...), so that a
    machine whose speed drifts (shared cores) slows every path alike and per-repeat ratios stay meaningful."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def machine() -> dict:
    import numpy
    import torch

    cpu, family, model, flags = platform.processor() or platform.machine(), None, None, set()
    try:
        with open("/proc/cpuinfo") as f:
            first_cpu = f.read().split("\n\n", 1)[0].splitlines()
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first_cpu if ":" in line)}
        cpu, family, model = info.get("model name", cpu), info.get("cpu family"), info.get("model")
        flags = set(info.get("flags", "").split())
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        # two machines of one model name can differ a lot (the same 'AMD EPYC' with and without AVX-512)
        "cpu_family_model": f"{family}/{model}" if family else None,
        "vector_isa": vector_isa(flags),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def vector_isa(flags: set) -> str:
    """The widest x86 vector extension in a /proc/cpuinfo flag set ('avx512', 'avx2', 'sse2'), else 'other'."""
    for isa, needs in (("avx512", {"avx512f"}), ("avx2", {"avx2", "fma"}), ("sse2", {"sse2"})):
        if needs <= flags:
            return isa
    return "other"


def result_name(base: str, tag: str | None) -> str:
    """``base`` or ``base_<tag>``: results of another machine go beside, not over, the committed ones."""
    if tag is not None and not tag.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"--tag must be letters, digits, '-' or '_', got {tag!r}")
    return f"{base}_{tag}" if tag else base


def gemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's measured fp32 GEMM rate (GFLOP/s) at n x n x n: the roofline the op is compared with."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = median_ms(lambda: a @ b, repeats=repeats)
    return 2 * n**3 / (ms * 1e-3) / 1e9


def write_result(name: str, payload: dict, out_dir=None) -> Path:
    """Atomically write ``payload`` (with the machine description) to <out_dir or results>/<name>.json."""
    out = Path(out_dir) if out_dir else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    data = {"machine": machine(), **payload}
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
    return path


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table; columns are (key, header, format)."""
    head = "  ".join(f"{h:>{max(len(h), 9)}}" for _, h, _ in columns)
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = []
        for key, h, fmt in columns:
            v = row.get(key)
            cells.append(f"{(format(v, fmt) if v is not None else '-'):>{max(len(h), 9)}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
