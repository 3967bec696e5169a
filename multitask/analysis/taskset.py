"""Task-set representation and compositionality (spec §4.4, paper Figs. 5-6).

Task space ('rate' representation): for each rule of a setup, the 'test' grid is run (input and recurrent
noise on, as the paper), activity is averaged over the stimulus conditions, and the state at the last step of
epoch 'stim1' is kept -> one point (n_rnn,) per rule; the points are projected on their first two principal
components. ('weight' representation: the rule-input weight vectors W_in[:, rule] (n_rnn,) instead.) For
display, the plane is rotated so that the first rule lies on +x and flipped so that the second has y > 0 (the
paper's group alignment).

Rule arithmetic: the target task is run with other rule units driven instead of its own (``replace_rule`` with
``rule_strength``, negative allowed) on 1000 'random' trials (20 batches of 50, noise on), scored by get_perf;
all strength vectors of a setup see the same trials (paired).

Differences from the original code (deliberate): the original first projected the points on min(n_points,
n_rnn) - 1 principal components and then on 2; that first step is lossless for centred points, so a single
2-component PCA gives the same plane (signs may differ; the alignment removes them). The stimulus-averaged
states are simulated only up to the end of 'stim1' (later inputs cannot change them). Rule arithmetic is
paired across strength vectors (same trials and input noise), the paper drew fresh trials per vector.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..network import get_perf
from ..tasks import generate_trials, get_rule_index
from ._common import (RULE_COLORS, analysis_hp, display_name, fig_path, finish_figure, forward, new_figure,
                      resolve, save_json, to_jsonable, torch_seed)

__all__ = ["SETUPS", "ARROWS", "REPLACE_RULE_SETUPS", "epoch_end_states", "compute_taskspace", "align_taskspace",
           "parallelogram_error", "replace_rule_name", "replacerule_performances", "run_network_replacerule",
           "compute_replacerule_performance", "plot_taskspace", "plot_replacerule_performance", "run"]

#: Rules of the three task-space setups.
SETUPS = {1: ["fdgo", "fdanti", "delaygo", "delayanti"],
          2: ["contextdelaydm1", "contextdelaydm2", "contextdm1", "contextdm2"],
          3: ["dmsgo", "dmcgo", "dmsnogo", "dmcnogo"]}
#: Arrows of the paper's task-space figure: (start, end) pairs that should be parallel.
ARROWS = {1: [("fdgo", "delaygo"), ("fdanti", "delayanti")],
          2: [("contextdm1", "contextdm2"), ("contextdelaydm1", "contextdelaydm2")],
          3: [("dmsgo", "dmcgo"), ("dmsnogo", "dmcnogo")]}
#: Rule arithmetic: setup -> (target rule, rule units driven, strength vectors).
REPLACE_RULE_SETUPS = {
    1: ("delayanti", ["delayanti", "fdanti", "delaygo", "fdgo"],
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, -1]]),
    2: ("contextdelaydm1", ["contextdelaydm1", "contextdelaydm2", "contextdm1", "contextdm2"],
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 1, 1, -1]]),
    3: ("dmsgo", ["dmsgo", "dmcgo", "dmsnogo", "dmcnogo"],
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, -1]]),
}


def epoch_end_states(run_model_or_dir, rules, epoch="stim1", device=None, seed=0) -> dict:
    """{rule: (n_rnn,)} stimulus-averaged activity at the last step of ``epoch`` on the 'test' grid (noise on).

    Only the steps up to the epoch's end are simulated (later inputs cannot change earlier states).
    """
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model, offset=2)
    out = {}
    with torch_seed(seed):
        for rule in rules:
            trial = generate_trials(rule, hp, "test")
            if epoch not in trial.epochs:
                raise ValueError(f"rule {rule!r} has no epoch {epoch!r}; its epochs: {list(trial.epochs)}")
            end = trial.epochs[epoch][1]
            end = trial.tdim if end is None else end
            _, h = forward(run_model, trial.x[:end])
            out[rule] = h[-1].mean(axis=0)
    return out


def align_taskspace(coords) -> np.ndarray:
    """Rotate 2-D points (n, 2) so that point 0 lies on the +x axis, then flip y so that point 1 has y >= 0."""
    coords = np.asarray(coords, dtype=np.float64)
    theta = np.arctan2(coords[0, 1], coords[0, 0])
    c, s = np.cos(theta), np.sin(theta)
    out = coords @ np.array([[c, -s], [s, c]])
    if len(out) > 1 and out[1, 1] < 0:
        out[:, 1] *= -1
    return out


def compute_taskspace(run_model_or_dir, setup, representation="rate", device=None) -> dict:
    """Task-space coordinates of one setup.

    Returns dict: rules (4,), points (4, n_rnn) before projection, coords (4, 2) PCA coordinates (centred),
    aligned (4, 2) after ``align_taskspace``, explained_variance_ratio (2,), representation.
    """
    from sklearn.decomposition import PCA

    run_model, _ = resolve(run_model_or_dir, device)
    rules = SETUPS[setup]
    if representation == "rate":
        states = epoch_end_states(run_model, rules, "stim1")
        points = np.stack([states[r] for r in rules]).astype(np.float64)
    elif representation == "weight":
        w_in = run_model.model.weight_ih.detach().cpu().numpy().astype(np.float64)
        points = w_in[:, [get_rule_index(r, run_model.hp) for r in rules]].T
    else:
        raise ValueError(f"representation must be 'rate' or 'weight', got {representation!r}")
    pca = PCA(n_components=2)
    coords = pca.fit_transform(points)
    return {"setup": setup, "rules": rules, "representation": representation, "points": points,
            "coords": coords, "aligned": align_taskspace(coords),
            "explained_variance_ratio": pca.explained_variance_ratio_}


def parallelogram_error(space) -> float:
    """|(end1 - start1) - (end2 - start2)| / mean arrow length of the setup's two arrows (0 = perfect
    parallelogram) in the 2-D coordinates."""
    pos = dict(zip(space["rules"], space["coords"]))
    (a0, a1), (b0, b1) = ARROWS[space["setup"]]
    va, vb = pos[a1] - pos[a0], pos[b1] - pos[b0]
    scale = (np.linalg.norm(va) + np.linalg.norm(vb)) / 2
    return float(np.linalg.norm(va - vb) / scale) if scale > 0 else float("nan")


def replace_rule_name(replace_rule, rule_strength) -> str:
    """'Anti + Dly Go - Go' style name of a rule-input combination."""
    parts = []
    for r, s in zip(replace_rule, rule_strength):
        if s == 0:
            continue
        sign = "-" if s < 0 else "+"
        mag = "" if abs(s) == 1 else f"{abs(s):g}"
        parts.append((sign, f"{mag}{display_name(r)}"))
    if not parts:
        return "(none)"
    text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    for sign, name in parts[1:]:
        text += f" {sign} {name}"
    return text


def replacerule_performances(run_model_or_dir, rule, replace_rule, rule_strengths, n_trials=1000, n_rep=20,
                             device=None, seed=0) -> np.ndarray:
    """Mean get_perf of ``rule`` for each strength vector in ``rule_strengths`` (rule units ``replace_rule``
    driven at those strengths instead of the rule's own), on ``n_trials`` 'random' trials in ``n_rep`` batches
    (input and recurrent noise on).

    All strength vectors see the same trials and input noise (the generator is rewound per vector) and run as
    one batch -- a paired comparison; the paper drew fresh trials per vector. Returns (n_vectors,).
    """
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model, offset=3)
    rng = hp["rng"]
    batch = max(1, int(n_trials // n_rep))
    n_cond = len(rule_strengths)
    perfs = np.zeros((n_rep, n_cond))
    with torch_seed(seed):
        for i in range(n_rep):
            state = rng.bit_generator.state
            xs, y_loc = [], None
            for strengths in rule_strengths:
                rng.bit_generator.state = state
                trial = generate_trials(rule, hp, "random", batch_size=batch, replace_rule=list(replace_rule),
                                        rule_strength=[float(s) for s in strengths])
                xs.append(trial.x)
                y_loc = trial.y_loc[-1:]
            y_last, _ = forward(run_model, np.concatenate(xs, axis=1), keep_h=False, last_only=True)
            for j in range(n_cond):
                perfs[i, j] = get_perf(y_last[None, j * batch:(j + 1) * batch], y_loc).mean()
    return perfs.mean(axis=0)


def run_network_replacerule(run_model_or_dir, rule, replace_rule, rule_strength, n_trials=1000, n_rep=20,
                            device=None, seed=0) -> float:
    """Mean get_perf of ``rule`` with rule units ``replace_rule`` driven at ``rule_strength`` (one vector)."""
    return float(replacerule_performances(run_model_or_dir, rule, replace_rule, [rule_strength], n_trials, n_rep,
                                          device, seed)[0])


def compute_replacerule_performance(run_model_or_dir, setup, n_trials=1000, n_rep=20, device=None) -> dict:
    """Performance of the setup's target task for each rule-input combination (spec §4.4).

    Returns dict: rule, replace_rule, strengths (n_cond, 4), names (n_cond,), perfs (n_cond,), n_trials.
    """
    rule, replace_rule, strengths = REPLACE_RULE_SETUPS[setup]
    perfs = replacerule_performances(run_model_or_dir, rule, replace_rule, strengths, n_trials, n_rep, device)
    return {"setup": setup, "rule": rule, "replace_rule": replace_rule, "strengths": np.array(strengths),
            "names": [replace_rule_name(replace_rule, s) for s in strengths], "perfs": perfs,
            "n_trials": int(n_rep * max(1, n_trials // n_rep))}


# ---------------------------------------------------------------------------------------------------- figures

def plot_taskspace(space: dict, path=None, ax=None):
    """Aligned task-space points with the setup's arrows (paper Fig. 5)."""
    fig = None
    if ax is None:
        fig = new_figure((2.6, 2.6))
        ax = fig.add_subplot(111)
    pts = space["aligned"]
    pos = dict(zip(space["rules"], pts))
    for r, p in pos.items():
        ax.plot(p[0], p[1], "o", color=RULE_COLORS.get(r, "black"), ms=5)
        ax.annotate(display_name(r), p, textcoords="offset points", xytext=(0, 6 if p[1] >= 0 else -10),
                    ha="center", fontsize=6, color=RULE_COLORS.get(r, "black"))
    for a, b in ARROWS.get(space["setup"], []):
        ax.annotate("", xy=pos[b], xytext=pos[a], arrowprops=dict(arrowstyle="->", color="gray"))
    lim = np.abs(pts).max() * 1.3 + 1e-12
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.axhline(0, color="gray", ls="--", lw=0.5)
    ax.axvline(0, color="gray", ls="--", lw=0.5)
    label = "rPC" if space["representation"] == "rate" else "wPC"
    ax.set_xlabel(f"{label} 1", fontsize=7)
    ax.set_ylabel(f"{label} 2", fontsize=7)
    ax.set_title(f"Setup {space['setup']} ({space['representation']})", fontsize=7)
    ax.tick_params(labelsize=6)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    if fig is None:
        return ax
    fig.tight_layout()
    return finish_figure(fig, path)


def plot_replacerule_performance(res: dict, path=None):
    """Horizontal bars: performance of the target task for each rule-input combination (paper Fig. 6)."""
    names, perfs = res["names"], res["perfs"]
    fig = new_figure((3.2, 0.35 * len(names) + 1.0))
    ax = fig.add_axes([0.5, 0.1, 0.45, 0.7])
    y = np.arange(len(names))[::-1]
    ax.barh(y, perfs, color="xkcd:cerulean", height=0.5)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=6)
    ax.set_xlim(0, 1.05)
    ax.set_xticks([0, 0.5, 1])
    ax.xaxis.set_ticks_position("top")
    ax.tick_params(labelsize=6)
    ax.set_title(f"Performance on {display_name(res['rule'])}", fontsize=7, y=1.12)
    ax.set_ylabel("Rule input", fontsize=7)
    for s in ("right", "bottom"):
        ax.spines[s].set_visible(False)
    return finish_figure(fig, path)


# ---------------------------------------------------------------------------------------------------- run

def run(run_model, run_dir, figdir=None, trial_counts="paper", n_trials=1000, n_rep=20) -> dict:
    """The 'taskset' analysis of run_analyses (setups whose rules are all trained): taskset.json + figures."""
    trained = set(run_model.hp["rules"])
    files, result, lines = [], {}, []
    for setup in SETUPS:
        needed = set(SETUPS[setup]) | set(REPLACE_RULE_SETUPS[setup][1])
        if not needed <= trained:
            result[f"setup{setup}"] = {"skipped": f"rules {sorted(needed - trained)} not trained"}
            continue
        entry = {}
        for rep in ("rate", "weight"):
            space = compute_taskspace(run_model, setup, rep)
            files.append(plot_taskspace(space, fig_path(figdir, f"taskset{setup}_{rep}_space")))
            entry[rep] = {"rules": space["rules"], "coords": space["coords"], "aligned": space["aligned"],
                          "explained_variance_ratio": space["explained_variance_ratio"],
                          "parallelogram_error": parallelogram_error(space)}
        rr = compute_replacerule_performance(run_model, setup, n_trials, n_rep)
        files.append(plot_replacerule_performance(rr, fig_path(figdir, f"taskset{setup}_perf")))
        entry["replace_rule"] = {k: rr[k] for k in ("rule", "replace_rule", "strengths", "names", "perfs",
                                                    "n_trials")}
        result[f"setup{setup}"] = entry
        lines.append(f"setup {setup}: " + ", ".join(f"{n}={p:.2f}" for n, p in zip(rr["names"], rr["perfs"])))
    save_json(to_jsonable(result), Path(run_dir) / "taskset.json")
    files.append(Path(run_dir) / "taskset.json")
    summary = "; ".join(lines) if lines else "no setup has all its rules trained (needs ruleset 'all')"
    return {"files": files, "results": result, "summary": summary}
