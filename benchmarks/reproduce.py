"""Reproduce the paper's headline: train the main network, then run the analyses.

    python -m benchmarks reproduce [--out benchmarks/results/reproduce] [--max-trials 1e7] [--resume]
                                   [--max-hours H] [--analyze-only]

The paper's main network: ruleset 'all', softplus, diag init (0.5 I), 256 units, Ctx DM 1/2 sampled 5x more
often, every other setting at its default (spec §3.3 train_all). Training stops at perf_min > 0.9 or after the
trial budget (the paper trains the full 1e7 trials); --max-hours stops at the first evaluation past that time
and --resume continues later, so one reproduction can span sessions. Reports trials and wall time to reach
perf_avg 0.9 / 0.95, per-task performance and n_cluster, and writes reproduce_summary.json + a markdown table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from multitask.network import Run_Model
from multitask.tasks import rule_name
from multitask.train import CHECKPOINT, load_log, set_hyperparameters, train

from .common import RESULTS, write_result

MAIN_HP = {"activation": "softplus", "w_rec_init": "diag", "target_perf": 0.9}
RULE_PROB = {"contextdm1": 5, "contextdm2": 5}


def first_crossing(log, key, level):
    """(trials, seconds) at the first evaluation where log[key] >= level, or (None, None)."""
    for trials, seconds, value in zip(log["trials"], log["times"], log[key]):
        if value >= level:
            return trials, seconds
    return None, None


def summarize(run_dir: Path) -> dict:
    log = load_log(run_dir)
    hp = json.loads((run_dir / "hp.json").read_text())
    summary = {"trials": log["trials"][-1], "seconds": log["times"][-1], "perf_avg": log["perf_avg"][-1],
               "perf_min": log["perf_min"][-1], "n_cluster": log.get("n_cluster"),
               "per_task": {r: log["perf_" + r][-1] for r in hp["rules"]}}
    for level in (0.9, 0.95):
        trials, seconds = first_crossing(log, "perf_avg", level)
        summary[f"perf_avg>={level}"] = {"trials": trials, "seconds": seconds}
    return summary


def markdown(summary: dict) -> str:
    lines = ["| task | name | perf |", "|---|---|---|"]
    lines += [f"| {r} | {rule_name.get(r, r)} | {p:.3f} |" for r, p in summary["per_task"].items()]
    lines += ["", f"trials {summary['trials']:,}, wall {summary['seconds'] / 3600:.2f} h, perf_avg "
              f"{summary['perf_avg']:.3f}, perf_min {summary['perf_min']:.3f}, n_cluster {summary['n_cluster']}"]
    for level in (0.9, 0.95):
        hit = summary[f"perf_avg>={level}"]
        lines.append(f"perf_avg >= {level}: " + (f"{hit['trials']:,} trials, {hit['seconds'] / 60:.1f} min"
                                                if hit["trials"] is not None else "not reached"))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks reproduce", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "reproduce"))
    ap.add_argument("--max-trials", type=float, default=1e7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-hours", type=float, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--analyze-only", action="store_true")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.analyze_only:
        from multitask.train import _resolve_device

        resume = args.resume and (out / CHECKPOINT).exists()
        hp, log, optimizer = set_hyperparameters(out, hp=MAIN_HP, ruleset="all", max_steps=args.max_trials,
                                                 rule_prob_map=RULE_PROB, seed=args.seed, resume=resume)
        run_model = Run_Model(hp, device=_resolve_device(args.device))
        max_seconds = None if args.max_hours is None else args.max_hours * 3600 - 1
        train(run_model, optimizer, hp, log, max_seconds=max_seconds)
    from multitask.analysis import run_analyses

    run_analyses(out)
    summary = summarize(out)
    (out / "reproduce_summary.md").write_text(markdown(summary))
    path = write_result("reproduce_summary", {"run_dir": str(out), **summary}, out)
    print(markdown(summary))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
