"""Benchmark of the task generator: ms per 'random' batch per rule.

    python -m benchmarks tasks [--batch-size 64] [--repeats 7] [--calls 40] [--ruleset all] [--tag TAG]
                               [--out DIR] [--no-save]

For each rule of the ruleset, times ``generate_trials(rule, hp, 'random',
batch_size=B)`` with input noise off and on: ``repeats`` timing runs of
``calls`` calls each, reporting the median over runs of the mean ms per call.
Prints a table and the average over rules, and writes JSON (with the machine description) to
benchmarks/results/tasks_<tag>.json (tag default: '<n>cpu').
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from multitask import tasks
from multitask.hparams import get_default_hp

from .common import result_name, write_result


def time_rule(rule, hp, batch_size, noise_on, repeats, calls):
    """Median over ``repeats`` runs of the mean ms per call."""
    for _ in range(3):  # warm-up
        tasks.generate_trials(rule, hp, "random", noise_on=noise_on, batch_size=batch_size)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            tasks.generate_trials(rule, hp, "random", noise_on=noise_on, batch_size=batch_size)
        runs.append((time.perf_counter() - t0) / calls * 1e3)
    return float(np.median(runs))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks tasks", description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=40, help="calls per timing run")
    ap.add_argument("--ruleset", default="all", choices=sorted(tasks.rules_dict))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default=None, help="result file tag (default '<n>cpu')")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    args = ap.parse_args(argv)
    result_file = result_name("tasks", args.tag or f"{os.cpu_count()}cpu")

    hp = get_default_hp(args.ruleset)
    hp["rng"] = np.random.default_rng(args.seed)
    rules = tasks.rules_dict[args.ruleset]
    rows = {}
    print(f"ms per {args.batch_size}-trial 'random' batch (median of {args.repeats} x "
          f"{args.calls} calls)")
    print(f"{'rule':16s} {'noise off':>10s} {'noise on':>10s}")
    for rule in rules:
        off = time_rule(rule, hp, args.batch_size, False, args.repeats, args.calls)
        on = time_rule(rule, hp, args.batch_size, True, args.repeats, args.calls)
        rows[rule] = {"noise_off_ms": off, "noise_on_ms": on}
        print(f"{rule:16s} {off:10.3f} {on:10.3f}")
    avg_off = float(np.mean([r["noise_off_ms"] for r in rows.values()]))
    avg_on = float(np.mean([r["noise_on_ms"] for r in rows.values()]))
    print(f"{'average':16s} {avg_off:10.3f} {avg_on:10.3f}")

    result = {
        "benchmark": "tasks.generate_trials random mode",
        "threads_env": {k: os.environ.get(k) for k in
                        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "ruleset": args.ruleset,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "calls_per_repeat": args.calls,
        "statistic": "median over repeats of mean ms per call",
        "per_rule_ms": rows,
        "average_noise_off_ms": avg_off,
        "average_noise_on_ms": avg_on,
    }
    if not args.no_save:
        path = write_result(result_file, result, args.out)
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
