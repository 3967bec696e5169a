"""The op on the CPU: forward and forward+backward of a whole sequence, against the reference cell loop.

    python -m benchmarks op [--quick] [--threads N]

Paths, timed in turn within every repeat (medians over repeats; each ratio is the median over repeats of the
ratio within a repeat, so a drift in the machine's speed does not bias it):
  * ``cell loop``  — rate_rnn.RNNCell stepped in a Python loop (what the published port does), autograd backward;
  * ``compiled``   — the same loop under torch.compile (--compile; compiling takes minutes per shape on 2 cores);
  * ``fused``      — rate_rnn.RNNLayer on the compiled C++ op (input GEMM hoisted, one GEMM per step).
Each includes the input projection x W_ihᵀ + b and its gradients; backward starts from a fixed random dL/dH.
Ratios are against the cell loop of the same shape; GFLOP/s count 2·(T·B)·(I+N)·N per direction (×3 for
forward+backward) against this machine's measured 1024³ GEMM rate.
"""
from __future__ import annotations

import argparse
import statistics

import torch

import rate_rnn

from .common import gemm_gflops, interleaved_ms, result_name, table, write_result


def measure(T, B, N, I, repeats=9, with_compile=False):
    torch.manual_seed(0)
    layer = rate_rnn.RNNLayer(I, N, "relu", 0.8)
    loop = rate_rnn.CellLoopLayer(I, N, "relu", 0.8)
    loop.rnncell = layer.rnncell  # the same weights on both paths
    x = torch.randn(T, B, I)
    h0 = torch.zeros(1, B, N)
    paths = {"cell loop": lambda: loop(x, h0)[0], "fused": lambda: layer(x)[0]}
    if with_compile:
        compiled = torch.compile(loop)
        paths["compiled"] = lambda: compiled(x, h0)[0]
    # Backward from a fixed upstream gradient dL/dH, as a readout layer passes back (a contiguous tensor; a bare
    # .sum() would hand every path an expanded tensor of zeros strides instead).
    grad_out = torch.randn(T, B, N)
    row = {"T": T, "B": B, "N": N, "I": I}
    for kind in ("fwd", "fwd+bwd"):
        def timed(fn, kind=kind):
            if kind == "fwd":
                def run():
                    with torch.no_grad():
                        fn()
            else:
                def run():
                    fn().backward(grad_out)
            return run

        runs = interleaved_ms({name: timed(fn) for name, fn in paths.items()}, repeats)
        for name, ms in runs.items():
            row[f"{name} {kind}"] = statistics.median(ms)
            # the median over repeats of the ratio within each repeat (robust to the machine's drift)
            row[f"{name} {kind} x"] = statistics.median(a / b for a, b in zip(runs["cell loop"], ms))
    flop = 2 * T * B * (I + N) * N
    row["fused fwd+bwd GFLOP/s"] = 3 * flop / (row["fused fwd+bwd"] * 1e-3) / 1e9
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks op", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only T=100, B=64, N=256, I=85 (the headline shape)")
    ap.add_argument("--compile", action="store_true", help="also time the cell loop under torch.compile")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--tag", default=None, help="write op_cpu_<tag>.json instead of op_cpu.json")
    args = ap.parse_args(argv)
    result_file = result_name("op_cpu", args.tag)  # a bad tag fails before minutes of timing
    if args.threads:
        torch.set_num_threads(args.threads)
    info = rate_rnn.backend_info()
    if info["cpu"]["path"] != "fused":
        raise SystemExit(f"the compiled op is not in use: {info['cpu']['why']}")
    shapes = [(100, 64, 256, 85)]
    if not args.quick:
        shapes += [(T, 64, 256, 85) for T in (50, 200, 500)] + [(100, B, 256, 85) for B in (16, 256)] + \
                  [(100, 64, N, 85) for N in (64, 512)]
    peak = gemm_gflops()
    rows = []
    for T, B, N, I in shapes:
        rows.append(measure(T, B, N, I, args.repeats, args.compile))
        print(f"  measured T={T} B={B} N={N}", flush=True)
    cols = [("T", "T", "d"), ("B", "B", "d"), ("N", "N", "d"),
            ("cell loop fwd", "loop fwd ms", ".2f"), ("fused fwd", "fused fwd ms", ".2f"), ("fused fwd x", "x", ".2f"),
            ("cell loop fwd+bwd", "loop f+b ms", ".2f"), ("fused fwd+bwd", "fused f+b ms", ".2f"),
            ("fused fwd+bwd x", "x", ".2f"), ("fused fwd+bwd GFLOP/s", "GFLOP/s", ".0f")]
    if args.compile:
        cols.insert(9, ("compiled fwd+bwd x", "compiled x", ".2f"))
    print(table(rows, cols))
    print(f"machine GEMM rate (1024^3 fp32): {peak:.0f} GFLOP/s; torch threads {torch.get_num_threads()}")
    path = write_result(result_file, {"gemm_gflops": peak, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
