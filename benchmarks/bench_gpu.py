"""GPU timings of the leaky rate RNN, forward and forward+backward, against the baselines.

Usage:
    python benchmarks/bench_gpu.py [--out DIR] [--reps 7] [--warmup 3] [--budget-s 180] [--quick]

Methods, each from x (T, B, I) to all states (T, B, N), parameters requiring grad (x does not):
  cell loop           rate_rnn.RNNCell stepped in a Python loop (the published port's computation)
  cell loop compiled  the same loop with the cell under torch.compile (one compiled step, called T times)
  op gemm             U = x W_ih^T + b (one GEMM), then the op with RATE_RNN_CUDA_PATH=gemm
  op persistent       the same with RATE_RNN_CUDA_PATH=persistent (N <= 256 only)
  cudnn nn.RNN        torch.nn.RNN(nonlinearity='relu'): no leak term, so a speed bar, not the same model
All float32 with TF32 off (torch.backends.cuda.matmul and cudnn), so every method does IEEE fp32 math.
Timing: CUDA events around each call after warm-up; the median (and min) of --reps runs, in ms.
Writes DIR/bench_gpu.json (DIR: --out, else $OUT, else benchmarks/results) and prints a table last.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import rate_rnn  # noqa: E402
from rate_rnn import backend  # noqa: E402

MAIN = (256, 64, 200)  # N, B, T
SWEEP = [(64, 64, 200), (128, 64, 200), (256, 16, 200), (256, 256, 200), (512, 64, 200), (1024, 64, 100)]
INPUT_SIZE = 64
METHODS = ["cell loop", "cell loop compiled", "op gemm", "op persistent", "cudnn nn.RNN"]


def time_ms(fn, warmup, reps):
    """Median and min over reps of one call's GPU time (CUDA events), after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), min(times)


class Runner:
    """One method at one size: .forward() and .forward_backward() closures over fixed inputs."""

    def __init__(self, method, N, B, T, seed=0):
        torch.manual_seed(seed)
        self.method, self.T = method, T
        self.x = torch.randn(T, B, INPUT_SIZE, device="cuda")
        self.g = torch.randn(T, B, N, device="cuda")
        self.h0 = torch.zeros(B, N, device="cuda")
        if method == "cudnn nn.RNN":
            self.module = nn.RNN(INPUT_SIZE, N, nonlinearity="relu").cuda()
        else:
            self.module = rate_rnn.RNNLayer(INPUT_SIZE, N, "relu", 0.8).cuda()  # default init: contracting
        self.cell = self.module.rnncell if method.startswith("cell") else None
        if method == "cell loop compiled":
            self.cell = torch.compile(self.module.rnncell, dynamic=False)
        self.path = {"op gemm": "gemm", "op persistent": "persistent"}.get(method)

    def run(self):
        if self.method == "cudnn nn.RNN":
            out, _ = self.module(self.x, self.h0.unsqueeze(0))
            return out
        if self.cell is not None:
            h, states = self.h0, []
            for t in range(self.T):
                h = self.cell(self.x[t], h)
                states.append(h)
            return torch.stack(states)
        os.environ["RATE_RNN_CUDA_PATH"] = self.path
        layer = self.module
        U = layer.input_drive(self.x)
        H, _ = rate_rnn.scan(U, layer.rnncell.weight_hh, self.h0, layer.decay, "relu", validate=False)
        return H

    def forward(self):
        with torch.no_grad():
            self.run()

    def forward_backward(self):
        for p in self.module.parameters():
            p.grad = None
        (self.run() * self.g).sum().backward()


def supported(method, N):
    return not (method == "op persistent" and N > 256)


def bench(sizes, methods, warmup, reps, budget_s, compile_sizes):
    t_start = time.perf_counter()
    rows = []
    for N, B, T in sizes:
        for method in methods:
            row = {"N": N, "B": B, "T": T, "I": INPUT_SIZE, "method": method}
            rows.append(row)
            if not supported(method, N):
                row["skipped"] = "persistent path needs N <= 256"
                continue
            if method == "cell loop compiled" and (N, B, T) not in compile_sizes:
                row["skipped"] = "compiled only at the main size (compile time)"
                continue
            if method.startswith("cell") and time.perf_counter() - t_start > budget_s:
                row["skipped"] = f"time budget ({budget_s:.0f} s) spent"
                continue
            try:
                runner = Runner(method, N, B, T)
                t0 = time.perf_counter()
                runner.forward_backward()  # includes any compilation
                torch.cuda.synchronize()
                row["first_call_s"] = round(time.perf_counter() - t0, 3)
                row["fwd_ms"], row["fwd_min_ms"] = time_ms(runner.forward, warmup, reps)
                row["fwd_bwd_ms"], row["fwd_bwd_min_ms"] = time_ms(runner.forward_backward, warmup, reps)
            except Exception as err:  # record and go on: one failing method must not hide the others
                row["error"] = f"{type(err).__name__}: {err}"[:500]
            finally:
                os.environ.pop("RATE_RNN_CUDA_PATH", None)
            print(f"  {N:5d} {B:4d} {T:5d} {method:20s} " +
                  (f"fwd {row['fwd_ms']:8.3f} ms  fwd+bwd {row['fwd_bwd_ms']:8.3f} ms" if "fwd_ms" in row
                   else row.get("error", row.get("skipped", ""))), flush=True)
    return rows


def table(rows):
    lines = [f"{'N':>5} {'B':>4} {'T':>5}  {'method':20s} {'fwd ms':>9} {'fwd+bwd ms':>11} {'x vs loop':>9}"]
    base = {(r["N"], r["B"], r["T"]): r.get("fwd_bwd_ms") for r in rows if r["method"] == "cell loop"}
    for r in rows:
        key = (r["N"], r["B"], r["T"])
        if "fwd_ms" in r:
            speed = f"{base[key] / r['fwd_bwd_ms']:9.1f}" if base.get(key) else f"{'':>9}"
            lines.append(f"{r['N']:5d} {r['B']:4d} {r['T']:5d}  {r['method']:20s} {r['fwd_ms']:9.3f} "
                         f"{r['fwd_bwd_ms']:11.3f} {speed}")
        else:
            lines.append(f"{r['N']:5d} {r['B']:4d} {r['T']:5d}  {r['method']:20s} "
                         f"{'(' + r.get('error', r.get('skipped', '')) + ')'}"[:118])
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="output folder (default: $OUT, else benchmarks/results)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=180.0, help="skip the (slow) cell loops past this")
    ap.add_argument("--quick", action="store_true", help="main size only")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device")
    reason = backend.fused_unavailable_reason("cuda")
    if reason:
        sys.exit(f"bench_gpu: the fused op cannot run on CUDA: {reason}")
    backend.set_backend("fused")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out_dir = args.out or os.environ.get("OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                   "results")
    os.makedirs(out_dir, exist_ok=True)
    sizes = [MAIN] + ([] if args.quick else SWEEP)
    rows = bench(sizes, METHODS, args.warmup, args.reps, args.budget_s, compile_sizes={MAIN})
    props = torch.cuda.get_device_properties(0)
    result = {
        "device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "tf32": False,
        "input_size": INPUT_SIZE, "reps": args.reps, "warmup": args.warmup, "statistic": "median of CUDA-event ms",
        "rows": rows,
    }
    path = os.path.join(out_dir, "bench_gpu.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {path}")
    print(f"\n{props.name}, torch {torch.__version__}, fp32 (TF32 off), I={INPUT_SIZE}; median ms over {args.reps}; "
          "'x vs loop' = cell loop fwd+bwd / method fwd+bwd")
    print(table(rows))


if __name__ == "__main__":
    main()
