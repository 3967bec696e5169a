"""Training throughput: steps/s at the paper's configuration, with the per-step breakdown.

    python -m benchmarks training [--steps 60] [--rulesets mante all] [--device cpu]

One step = draw a rule, generate a 64-trial batch, forward, backward, gradient clip + Adam (exactly train()'s
step). Measured for this library and, in the same run, for a port-style baseline: the same tasks and model, with
the recurrence stepped in a Python loop of RNNCell with autograd (rate_rnn.CellLoopLayer, what the published
PyTorch port does; it also has no recurrent noise). 'all' uses the paper's main settings (softplus, diag init,
Ctx DM x5).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

import rate_rnn
from multitask.network import Run_Model
from multitask.train import make_optimizer, set_hyperparameters

from .common import result_name, table, write_result

PAPER_MAIN = {"activation": "softplus", "w_rec_init": "diag"}


def measure(ruleset, steps, device, layer=None, warmup=5):
    with tempfile.TemporaryDirectory() as tmp:
        hp_over = dict(PAPER_MAIN) if ruleset == "all" else {}
        if layer is not None:
            hp_over["sigma_rec"] = 0.0
        prob = {"contextdm1": 5, "contextdm2": 5} if ruleset == "all" else None
        hp, _, opt_factory = set_hyperparameters(tmp, hp=hp_over, ruleset=ruleset, rule_prob_map=prob)
        run_model = Run_Model(hp, layer, device=device)
        params = list(run_model.model.parameters())
        opt = make_optimizer(hp)(params)
        rules, probs = hp["rule_trains"], hp["rule_probs"]
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        phases = {"trials": [], "forward": [], "backward": [], "optimizer": [], "T": []}
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            rule = rules[hp["rng"].choice(len(rules), p=probs)]
            trial = run_model.generate_trials(rule, hp, "random", batch_size=hp["batch_size_train"])
            sync()
            t1 = time.perf_counter()
            _, _, loss, reg = run_model.run_trial(trial)
            total = loss + reg
            sync()
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            total.backward()
            sync()
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_value_(params, 1.0)
            opt.step()
            sync()
            t4 = time.perf_counter()
            if i >= warmup:
                for key, value in zip(("trials", "forward", "backward", "optimizer", "T"),
                                      (t1 - t0, t2 - t1, t3 - t2, t4 - t3, trial.tdim)):
                    phases[key].append(value)
    step_times = np.sum([phases[k] for k in ("trials", "forward", "backward", "optimizer")], axis=0)
    row = {f"{k} ms": 1e3 * statistics.mean(phases[k]) for k in ("trials", "forward", "backward", "optimizer")}
    row.update({"steps/s": 1.0 / float(np.mean(step_times)), "mean T": float(np.mean(phases["T"])),
                "step ms (median)": 1e3 * float(np.median(step_times))})
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks training", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rulesets", nargs="*", default=["mante", "all"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--tag", default=None, help="write training_<device>_<tag>.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    result_file = result_name(f"training_{device.type}", args.tag)  # a bad tag fails before minutes of timing
    rows = []
    for ruleset in args.rulesets:
        variants = [("rate_rnn (fused op)", None)]
        if not args.no_baseline:
            variants.append(("port-style cell loop", rate_rnn.CellLoopLayer))
        for name, layer in variants:
            row = {"ruleset": ruleset, "variant": name, **measure(ruleset, args.steps, device, layer)}
            rows.append(row)
            print(f"  {ruleset:6s} {name:22s} {row['steps/s']:.1f} steps/s", flush=True)
        if not args.no_baseline:
            rows[-2]["x port-style"] = rows[-2]["steps/s"] / rows[-1]["steps/s"]
    cols = [("ruleset", "ruleset", "s"), ("variant", "variant", "s"), ("mean T", "mean T", ".0f"),
            ("trials ms", "trials ms", ".2f"), ("forward ms", "fwd ms", ".2f"), ("backward ms", "bwd ms", ".2f"),
            ("optimizer ms", "opt ms", ".2f"), ("steps/s", "steps/s", ".1f"), ("x port-style", "x port", ".2f")]
    print(table(rows, cols))
    path = write_result(result_file, {"steps": args.steps, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
