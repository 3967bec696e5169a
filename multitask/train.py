"""Training (spec §3): the published API, evaluation, atomic checkpoints, exact resume, continual learning.

    hp, log, optimizer = set_hyperparameters('runs/mante', ruleset='mante')
    run_model = Run_Model(hp, RNNLayer)
    train(run_model, optimizer, hp, log)

``max_steps`` counts trials (the paper's convention). Every ``display_step`` updates (and at step 0) every rule is
evaluated on 512 noisy trials (16 x 32) and the run directory is updated atomically: hp.json, log.json and
checkpoint.pt (model, optimiser, numpy and torch RNG states, step), so an interrupted run resumes exactly.
"""
from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .hparams import get_default_hp, update_hp
from .network import Run_Model, get_perf
from .tasks import rules_dict

CHECKPOINT = "checkpoint.pt"
EVAL_REPEATS = 16  # the paper evaluates batch_size_test trials as 16 batches


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is left intact."""


# --------------------------------------------------------------------------------------------------------------
# Files: every write goes to a temporary file in the same folder, then os.replace (atomic on POSIX).

def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_json(obj, path) -> None:
    _atomic_write(Path(path), lambda f: f.write(json.dumps(obj, indent=1, sort_keys=True).encode()))


def json_safe_hp(hp) -> dict:
    """hp without the RNG (not serialisable; rebuilt from the seed)."""
    return {k: v for k, v in hp.items() if k != "rng"}


def load_hp(model_dir) -> dict:
    """hp.json of a run, with rng = default_rng(seed + 1000) for analyses (as the paper's tools.load_hp)."""
    path = Path(model_dir) / "hp.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {model_dir} a training run directory?")
    hp = json.loads(path.read_text())
    hp["rng"] = np.random.default_rng(hp.get("seed", 0) + 1000)
    return hp


def load_log(model_dir) -> dict:
    return json.loads((Path(model_dir) / "log.json").read_text())


# --------------------------------------------------------------------------------------------------------------

def make_optimizer(hp):
    """A factory ``optimizer(params) -> torch.optim.Optimizer`` for hp['optimizer'] and hp['learning_rate']."""
    if hp["optimizer"] == "adam":  # TF defaults: beta1 0.9, beta2 0.999, eps 1e-8 (as torch's); fused kernel
        return functools.partial(torch.optim.Adam, lr=hp["learning_rate"], fused=True)
    return functools.partial(torch.optim.SGD, lr=hp["learning_rate"])


def set_hyperparameters(model_dir, hp=None, max_steps=1e7, display_step=500, ruleset="mante", rule_trains=None,
                        rule_prob_map=None, seed=0, rich_output=False, load_dir=None, trainables=None,
                        resume=False):
    """Prepare a run: full hp (defaults of ``ruleset`` updated by ``hp``), its log and an optimiser factory.

    Writes model_dir/hp.json. An existing run (checkpoint present) is refused unless ``resume=True``, in which
    case hp, log and state come from it. Returns ``(hp, log, optimizer)``.
    """
    model_dir = Path(model_dir)
    ckpt = model_dir / CHECKPOINT
    if ckpt.exists() and not resume:
        raise FileExistsError(f"{model_dir} already holds a run; resume it (resume=True / --resume) or choose "
                              "another directory")
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist")
        hp_full = load_hp(model_dir)
        hp_full["rng"] = np.random.default_rng(hp_full["seed"])  # replaced by the checkpoint's state in train()
        return hp_full, load_log(model_dir), make_optimizer(hp_full)
    if rich_output:
        raise NotImplementedError("rich_output (TensorBoard summaries) is not supported; use the figures the "
                                  "CLI writes")
    if ruleset not in rules_dict:
        raise ValueError(f"unknown ruleset {ruleset!r}; valid rulesets: {sorted(rules_dict)}")
    hp_full = update_hp(get_default_hp(ruleset), **(hp or {}))
    rule_trains = list(rule_trains) if rule_trains is not None else list(rules_dict[ruleset])
    flat = [r for g in rule_trains for r in (g if isinstance(g, (list, tuple)) else [g])]
    unknown = [r for r in flat if r not in rules_dict[ruleset] and r not in rules_dict.get("all", [])]
    if unknown:
        raise ValueError(f"unknown rule(s) {unknown}; valid rules of {ruleset!r}: {rules_dict[ruleset]}")
    prob_map = dict(rule_prob_map or {})
    bad = [r for r in prob_map if r not in flat]
    if bad:
        raise ValueError(f"rule_prob_map names rule(s) {bad} that are not trained; trained rules: {flat}")
    probs = None
    if not any(isinstance(g, (list, tuple)) for g in rule_trains):
        weights = np.array([prob_map.get(r, 1.0) for r in rule_trains], dtype=float)
        probs = (weights / weights.sum()).tolist()
    if trainables not in (None, "all", "input", "rule"):
        raise ValueError(f"trainables must be 'all', 'input' or 'rule', got {trainables!r}")
    hp_full.update(seed=int(seed), rule_trains=rule_trains, rules=flat, rule_probs=probs, max_steps=int(max_steps),
                   display_step=int(display_step), trainables=trainables or "all", load_dir=load_dir)
    hp_full["rng"] = np.random.default_rng(seed)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_json(json_safe_hp(hp_full), model_dir / "hp.json")
    log = {"model_dir": str(model_dir), "trials": [], "times": [], "perf_avg": [], "perf_min": []}
    return hp_full, log, make_optimizer(hp_full)


def trainable_parameters(run_model, trainables):
    """Parameters to optimise, and an optional gradient mask (for 'rule': only the rule-input columns)."""
    model = run_model.model
    if trainables in (None, "all"):
        return list(model.parameters()), None
    if trainables == "input":
        return [model.weight_ih], None
    hp = run_model.hp
    mask = torch.zeros_like(model.weight_ih)
    mask[:, hp["rule_start"]:hp["rule_start"] + hp["n_rule"]] = 1
    return [model.weight_ih], mask


@torch.no_grad()
def do_eval(run_model, hp, log, rules=None):
    """Evaluate every rule on hp['batch_size_test'] noisy 'random' trials; append cost_/creg_/perf_ per rule and
    perf_avg / perf_min over the trained rules to ``log``."""
    batch = hp["batch_size_test"] // EVAL_REPEATS
    for rule in rules or hp["rules"]:
        costs, regs, perfs = [], [], []
        for _ in range(EVAL_REPEATS):
            trial = run_model.generate_trials(rule, hp, "random", batch_size=batch)
            logits, _, loss, reg = run_model.run_trial(trial)
            y_hat = run_model.model.output(logits).cpu().numpy()
            y_loc = trial.y_loc.cpu().numpy() if torch.is_tensor(trial.y_loc) else trial.y_loc
            costs.append(loss.item())
            regs.append(reg.item())
            perfs.append(get_perf(y_hat, y_loc).mean())
        for key, values in (("cost_", costs), ("creg_", regs), ("perf_", perfs)):
            log.setdefault(key + rule, []).append(float(np.mean(values)))
    trained = hp["rules"]
    log["perf_avg"].append(float(np.mean([log["perf_" + r][-1] for r in trained])))
    log["perf_min"].append(float(np.min([log["perf_" + r][-1] for r in trained])))
    return log


def save_checkpoint(model_dir, run_model, optimizer, hp, log, step):
    """checkpoint.pt and log.json, each written atomically (checkpoint first: log.json never runs ahead)."""
    state = {
        "step": int(step),
        "model": run_model.model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": json.dumps(hp["rng"].bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "log": json.dumps(log),
        "anchor": run_model._anchor[0] if run_model._anchor else [],
        "anchor_masks": run_model._anchor[1] if run_model._anchor else None,
    }
    _atomic_write(Path(model_dir) / CHECKPOINT, lambda f: torch.save(state, f))
    save_json(log, Path(model_dir) / "log.json")


def load_checkpoint(model_dir, map_location="cpu"):
    return torch.load(Path(model_dir) / CHECKPOINT, map_location=map_location, weights_only=True)


def load_model(model_dir, device="cpu", RNNLayer=None):
    """A Run_Model with the weights of a run's last checkpoint (hp from hp.json; rng seeded seed+1000)."""
    hp = load_hp(model_dir)
    run_model = Run_Model(hp, RNNLayer, device=device)
    run_model.model.load_state_dict(load_checkpoint(model_dir, device)["model"])
    run_model.eval()
    return run_model


def _resolve_device(device):
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train(run_model, optimizer, hp, log, *, progress=True, max_seconds=None):
    """Train until ``hp['max_steps']`` trials, or until perf_min > hp['target_perf'] (strict, as the paper).

    ``optimizer`` is a factory (what set_hyperparameters returns) or a built torch optimiser. Resumes from
    model_dir/checkpoint.pt when it exists. ``max_seconds``: stop at the first evaluation after that much wall
    time (its checkpoint saved). Raises TrainingDiverged on a NaN/inf loss. Returns the log.
    """
    model_dir = Path(log["model_dir"])
    params, grad_mask = trainable_parameters(run_model, hp.get("trainables", "all"))
    opt = optimizer(params) if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer) else optimizer
    step, elapsed_before, resumed_eval_step = 0, 0.0, None
    if (model_dir / CHECKPOINT).exists():
        # The checkpoint was taken right after evaluating step s, before its update: continue with that update.
        state = load_checkpoint(model_dir, run_model.device)
        run_model.model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        hp["rng"].bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        log.clear()
        log.update(json.loads(state["log"]))
        run_model._anchor = (state["anchor"], state["anchor_masks"]) if state["anchor"] else None
        step = resumed_eval_step = state["step"]
        elapsed_before = log["times"][-1] if log["times"] else 0.0
        if log["perf_min"] and log["perf_min"][-1] > hp["target_perf"]:
            return log  # that run had already reached its target
    else:
        torch.manual_seed(hp["seed"])  # recurrent-noise seeds come from torch's generator (as tf.set_random_seed)
        if hp["l2_weight_init"] or hp["p_weight_train"] is not None:
            run_model.set_anchor()
    batch = hp["batch_size_train"]
    display = hp["display_step"]
    last_step = int(hp["max_steps"] // batch)
    rules, probs = hp["rule_trains"], hp["rule_probs"]
    bar = _progress_bar(progress, total=(last_step + 1) * batch, initial=step * batch)
    t0 = time.perf_counter()
    run_model.train()
    try:
        while step * batch <= hp["max_steps"]:
            if step % display == 0 and step != resumed_eval_step:
                log["trials"].append(step * batch)
                log["times"].append(elapsed_before + time.perf_counter() - t0)
                do_eval(run_model, hp, log)
                save_checkpoint(model_dir, run_model, opt, hp, log, step)
                if bar is not None:
                    bar.set_postfix(step=step, perf_min=f"{log['perf_min'][-1]:.3f}",
                                    perf_avg=f"{log['perf_avg'][-1]:.3f}")
                if log["perf_min"][-1] > hp["target_perf"]:
                    break
                if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                    break
            rule = rules[hp["rng"].choice(len(rules), p=probs)]
            trial = run_model.generate_trials(rule, hp, "random", batch_size=batch)
            _, _, loss, reg = run_model.run_trial(trial)
            total = loss + reg
            if not torch.isfinite(total):
                raise TrainingDiverged(f"loss became {total.item()} at step {step} (rule {rule}); the last good "
                                       f"checkpoint in {model_dir} is intact")
            opt.zero_grad(set_to_none=True)
            total.backward()
            if grad_mask is not None:
                params[0].grad.mul_(grad_mask)
            torch.nn.utils.clip_grad_value_(params, 1.0)  # element-wise [-1, 1], as the paper
            opt.step()
            step += 1
            if bar is not None:
                bar.update(batch)
    finally:
        if bar is not None:
            bar.close()
    return log


def _progress_bar(enabled, total, initial):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="trial", unit_scale=True, dynamic_ncols=True, smoothing=0.05)


def train_sequential(model_dir, rule_trains, hp=None, max_steps=1e7, display_step=500, ruleset="all", seed=0,
                     RNNLayer=None, device=None, progress=True):
    """Continual learning (spec §3.2): rule groups trained one after another, with intelligent synapses.

    Group k trains for ``len(group) * max_steps`` trials with uniform rule choice and stops early when its
    perf_avg > target_perf. With hp['c_intsyn'] = c > 0 (Zenke et al. 2017): every update accumulates
    omega -= delta_theta * g (g = gradient of the task cost at the pre-step parameters); at a group boundary
    Omega <- relu(Omega + omega / (Delta^2 + ksi)), Delta = theta - theta_at_previous_boundary, omega <- 0, and the
    regulariser c * sum Omega (theta - theta_boundary)^2 replaces the others; Adam is rebuilt per group.
    All rules are evaluated every display_step; the log and checkpoint are written as in train().
    Returns (run_model, log).
    """
    groups = [list(g) for g in rule_trains]
    hp, log, optimizer = set_hyperparameters(model_dir, hp=hp, max_steps=max_steps, display_step=display_step,
                                             ruleset=ruleset, rule_trains=groups, seed=seed)
    run_model = Run_Model(hp, RNNLayer, device=_resolve_device(device))
    torch.manual_seed(hp["seed"])
    params = [p for p in run_model.model.parameters() if p.requires_grad]
    c, ksi = hp["c_intsyn"], hp["ksi_intsyn"]
    omega = [torch.zeros_like(p) for p in params]
    big_omega = [torch.zeros_like(p) for p in params]
    anchor = [p.detach().clone() for p in params]
    batch, step, t0 = hp["batch_size_train"], 0, time.perf_counter()
    bar = _progress_bar(progress, total=int(sum(len(g) * max_steps for g in groups)), initial=0)
    for k, group in enumerate(groups):
        opt = optimizer(params)
        group_steps = int(len(group) * max_steps // batch)
        for i in range(group_steps + 1):
            if step % display_step == 0:
                log["trials"].append(step * batch)
                log["times"].append(time.perf_counter() - t0)
                do_eval(run_model, hp, log)
                log.setdefault("group", []).append(k)
                save_checkpoint(model_dir, run_model, opt, hp, log, step)
                group_perf = np.mean([log["perf_" + r][-1] for r in group])
                if group_perf > hp["target_perf"]:
                    break
            if i == group_steps:
                break
            rule = group[hp["rng"].integers(len(group))]
            trial = run_model.generate_trials(rule, hp, "random", batch_size=batch)
            _, _, loss, reg = run_model.run_trial(trial)
            if c > 0 and k > 0:  # the intelligent-synapse penalty replaces the other regularisers
                reg = c * sum((O * (p - a) ** 2).sum() for O, p, a in zip(big_omega, params, anchor))
            opt.zero_grad(set_to_none=True)
            task_grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            (loss + reg).backward()
            torch.nn.utils.clip_grad_value_(params, 1.0)
            before = [p.detach().clone() for p in params]
            opt.step()
            with torch.no_grad():
                for w, g, p, b in zip(omega, task_grads, params, before):
                    if g is not None:
                        w -= (p - b) * g
            step += 1
            if bar is not None:
                bar.update(batch)
        if c > 0:  # consolidate at the group boundary
            with torch.no_grad():
                for O, w, p, a in zip(big_omega, omega, params, anchor):
                    O.copy_(torch.relu(O + w / ((p - a) ** 2 + ksi)))
                    w.zero_()
                    a.copy_(p)
    if bar is not None:
        bar.close()
    return run_model, log
