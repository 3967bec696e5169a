"""Command line: ``python -m multitask {train,eval,analyze} ...``.

    python -m multitask train --ruleset mante --out runs/mante      # the main job
    python -m multitask eval runs/mante                            # per-rule performance table
    python -m multitask analyze runs/mante                         # the paper's analyses and figures
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

#: Per-ruleset CLI defaults that differ from the library's: 'mante' uses the paper's train_mante settings
#: (softplus, stop at perf_min > 0.9); --hp overrides them.
RULESET_DEFAULTS = {"mante": {"activation": "softplus", "target_perf": 0.9}}


def _parse_hp(pairs):
    """['key=value', ...] -> dict; values parsed as Python literals where possible ('0.1', 'None', "'diag'")."""
    hp = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--hp expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        hp[key.strip()] = value
    return hp


def cmd_train(args) -> int:
    import torch

    from .analysis import write_training_figures
    from .network import Run_Model
    from .train import TrainingDiverged, _resolve_device, set_hyperparameters, train

    out = Path(args.out)
    hp_over = _parse_hp(args.hp)
    for key, value in RULESET_DEFAULTS.get(args.ruleset, {}).items():
        hp_over.setdefault(key, value)
    device = _resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        hp, log, optimizer = set_hyperparameters(out, hp=hp_over, max_steps=args.max_trials, ruleset=args.ruleset,
                                                 seed=args.seed, display_step=args.display_step,
                                                 rule_prob_map=_parse_hp(args.rule_prob) or None,
                                                 resume=args.resume)
    except (KeyError, ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"training on {device}: ruleset {hp['ruleset']}, rules {hp['rules']}, up to {hp['max_steps']:,} trials, "
          f"stop when perf_min > {hp['target_perf']}; run dir {out}")
    run_model = Run_Model(hp, device=device)
    start = time.time()
    try:
        log = train(run_model, optimizer, hp, log, progress=not args.quiet)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\ninterrupted; `python -m multitask train --out {out} --resume` continues from the last "
              "checkpoint", file=sys.stderr)
        return 130
    written = write_training_figures(run_model, hp, log, out)
    perf_min = log["perf_min"][-1]
    print(f"done in {time.time() - start:.0f} s: {log['trials'][-1]:,} trials, perf_min {perf_min:.3f}, "
          f"perf_avg {log['perf_avg'][-1]:.3f}")
    print(f"wrote {out}/hp.json, log.json, checkpoint.pt and figures:")
    for path in written:
        print(f"  {path}")
    print(f"look at them with any image viewer; `python -m multitask eval {out}` prints per-rule performance, "
          f"`python -m multitask analyze {out}` runs the paper's analyses")
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from .tasks import rule_name
    from .train import do_eval, load_log, load_model

    run_model = load_model(args.run_dir, device=args.device if args.device != "auto" else "cpu")
    hp = run_model.hp
    log = {"perf_avg": [], "perf_min": []}
    do_eval(run_model, hp, log)
    trained = load_log(args.run_dir)
    print(f"{'rule':<18}{'name':<16}{'perf':>7}{'cost':>10}")
    for rule in hp["rules"]:
        print(f"{rule:<18}{rule_name.get(rule, rule):<16}{log['perf_' + rule][-1]:>7.3f}{log['cost_' + rule][-1]:>10.4f}")
    print(f"{'perf_avg':<34}{log['perf_avg'][-1]:>7.3f}\n{'perf_min':<34}{log['perf_min'][-1]:>7.3f}")
    print(f"(512 noisy trials per rule; checkpoint after {trained['trials'][-1]:,} training trials)")
    return 0 if np.isfinite(log["perf_avg"][-1]) else 1


def cmd_analyze(args) -> int:
    from .analysis import run_analyses

    run_analyses(args.run_dir, only=args.only, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m multitask", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a network and write its run directory")
    tr.add_argument("--ruleset", default="mante", help="'mante' (default), 'all' or 'oicdmc'")
    tr.add_argument("--out", required=True, help="run directory (refused if it holds a run, unless --resume)")
    tr.add_argument("--max-trials", type=float, default=1e7, help="training length in trials (default 1e7)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    tr.add_argument("--hp", nargs="*", metavar="KEY=VALUE", help="hyperparameters, e.g. activation=softplus")
    tr.add_argument("--rule-prob", nargs="*", metavar="RULE=WEIGHT", help="relative rule sampling weights")
    tr.add_argument("--display-step", type=int, default=500, help="updates between evaluations (default 500)")
    tr.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)
    ev = sub.add_parser("eval", help="print per-rule performance of a trained run")
    ev.add_argument("run_dir")
    ev.add_argument("--device", default="cpu")
    ev.set_defaults(func=cmd_eval)
    an = sub.add_parser("analyze", help="run the paper's analyses on a trained run (figures + numbers)")
    an.add_argument("run_dir")
    an.add_argument("--only", nargs="*", help="analysis names to run (default: all)")
    an.add_argument("--quiet", action="store_true")
    an.set_defaults(func=cmd_analyze)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
