"""Task variance (TV) of every unit and fractional task variance (FTV) between pairs of tasks (spec §4.2).

For each rule the network runs the deterministic 'test' grid of conditions without input noise and with the
recurrent noise switched off (sigma_rec = 0). For unit i and a window of time steps W,

    TV_i = mean_{t in W} Var_b r_i(t, b)        (population variance over the B test conditions, ddof = 0)

Data types:
* 'rule': one column per rule, W = from stimulus onset (the end of epoch 'fix1'; for RT tasks the go cue) to
  the end of the trial;
* 'epoch': one column per (rule, epoch) for every epoch whose name lacks 'fix', W = that epoch; columns
  stably sorted by epoch name (all 'delay1' columns first, then 'delay2', 'go1', 'stim1', 'stim2').

The random-rotation control multiplies the activity by a random orthogonal matrix R (scipy ``ortho_group``)
first: ``h @ R`` (T, B, n_rnn) -- same total variance, no privileged unit axes.

FTV(A, B) = (TV_A - TV_B) / (TV_A + TV_B) in [-1, 1] over units with TV_A + TV_B > 1e-3.

Files (``run``): variance_rule.npz, variance_epoch.npz and their ``_rr`` (rotated) twins with h_var_all
(n_rnn, n_keys) and keys ('rule/epoch' strings for 'epoch'); ftv.json (20-bin counts per rule pair). The
rotation is seeded (rotation_seed) where the original drew an unseeded one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._common import (analysis_hp, display_name, fig_path, finish_figure, new_figure, resolve, run_trial,
                      save_npz, to_jsonable, save_json, torch_seed)

__all__ = ["TaskVariance", "compute_variance", "task_variance", "load_variance", "fractional_task_variance",
           "ftv_histogram", "plot_ftv_histograms", "plot_ftv_all", "FTV_PAIRS", "ACTIVE_THRESHOLD", "run"]

#: A unit is active for a set of tasks when its summed TV exceeds this (spec §4.2/4.3).
ACTIVE_THRESHOLD = 1e-3
#: The rule pairs of the paper's Fig. 4 (``plot_hist_varprop_selection``).
FTV_PAIRS = [("dm1", "dm2"), ("contextdm1", "contextdm2"), ("dm1", "fdanti"), ("dm1", "contextdm1"),
             ("fdgo", "reactgo"), ("delaydm1", "dm1"), ("dmcgo", "dmcnogo"), ("contextdm1", "contextdelaydm1")]
FTV_BINS = 20


@dataclass
class TaskVariance:
    """h_var_all (n_rnn, n_keys) task variances (rate^2); keys: rule names ('rule') or (rule, epoch) tuples."""
    h_var_all: np.ndarray
    keys: list
    data_type: str = "rule"
    random_rotation: bool = False
    meta: dict = field(default_factory=dict)

    def column(self, key) -> np.ndarray:
        return self.h_var_all[:, self.keys.index(key)]

    def save(self, path) -> Path:
        keys = np.array([k if isinstance(k, str) else "/".join(k) for k in self.keys])
        return save_npz(path, h_var_all=self.h_var_all, keys=keys, data_type=np.array(self.data_type),
                        random_rotation=np.array(self.random_rotation))


def load_variance(path) -> TaskVariance:
    """A TaskVariance written by ``TaskVariance.save`` (NPZ)."""
    with np.load(path) as f:
        data_type = str(f["data_type"])
        keys = [str(k) for k in f["keys"]]
        if data_type == "epoch":
            keys = [tuple(k.split("/", 1)) for k in keys]
        return TaskVariance(f["h_var_all"], keys, data_type, bool(f["random_rotation"]))


def task_variance(h, start=None, stop=None) -> np.ndarray:
    """TV per unit of activity ``h`` (T, B, N) over steps [start, stop): Var over B (ddof 0), mean over T -> (N,)."""
    return np.asarray(h[start:stop], dtype=np.float64).var(axis=1).mean(axis=0)


def compute_variance(run_model_or_dir, rules=None, random_rotation=False, rotation_seed=0, device=None):
    """Task variances of a network, both data types, from one noise-free pass over the 'test' grids.

    Args:
        run_model_or_dir: a Run_Model or a run directory.
        rules: rules to analyse (default hp['rules']).
        random_rotation: also return the rotated-activity control (R ~ ortho_group(n_rnn), seeded).
    Returns:
        {'rule': TaskVariance, 'epoch': TaskVariance} (+ 'rule_rr', 'epoch_rr' with random_rotation).
    """
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model)
    rules = list(rules or hp["rules"])
    n = hp["n_rnn"]
    rot = None
    if random_rotation:
        from scipy.stats import ortho_group
        rot = ortho_group.rvs(dim=n, random_state=np.random.default_rng(rotation_seed)).astype(np.float32)
    by_rule, by_epoch = {}, {}
    by_rule_rr, by_epoch_rr = {}, {}
    with torch_seed(0):
        for rule in rules:
            trial, _, h = run_trial(run_model, rule, hp, "test", sigma_rec=0.0, noise_on=False)
            versions = [(h, by_rule, by_epoch)]
            if rot is not None:
                versions.append((h @ rot, by_rule_rr, by_epoch_rr))
            for hh, store_rule, store_epoch in versions:
                for e_name, (e0, e1) in trial.epochs.items():
                    if "fix" in e_name:
                        continue
                    if hh[e0:e1].shape[0] > 0:
                        store_epoch[(rule, e_name)] = task_variance(hh, e0, e1)
                store_rule[rule] = task_variance(hh, trial.epochs["fix1"][1], None)
    out = {"rule": _pack(by_rule, "rule", False), "epoch": _pack(by_epoch, "epoch", False)}
    if rot is not None:
        out["rule_rr"] = _pack(by_rule_rr, "rule", True)
        out["epoch_rr"] = _pack(by_epoch_rr, "epoch", True)
    return out


def _pack(store, data_type, rr):
    keys = list(store)
    if data_type == "epoch":  # epoch-first order, stable within an epoch name (the original's mergesort)
        order = sorted(range(len(keys)), key=lambda i: keys[i][1])
        keys = [keys[i] for i in order]
    h_var = np.stack([store[k] for k in keys], axis=1) if keys else np.zeros((0, 0))
    return TaskVariance(h_var, keys, data_type, rr)


# ---------------------------------------------------------------------------------------------------- FTV

def fractional_task_variance(h_var_all, keys, rule_pair, threshold=ACTIVE_THRESHOLD):
    """FTV of the active units for ``rule_pair`` = (A, B).

    Returns (ftv (n_active,) in [-1, 1], active unit indices (n_active,)).
    """
    a, b = (h_var_all[:, list(keys).index(r)] for r in rule_pair)
    active = np.where(a + b > threshold)[0]
    return (a[active] - b[active]) / (a[active] + b[active]), active


def ftv_histogram(ftv, bins=FTV_BINS):
    """Counts of FTV values in ``bins`` equal bins on [-1, 1]: (counts (bins,), edges (bins + 1,))."""
    return np.histogram(ftv, bins=bins, range=(-1, 1))


def available_pairs(keys, pairs=FTV_PAIRS):
    return [p for p in pairs if p[0] in keys and p[1] in keys]


def plot_ftv_histograms(tv: TaskVariance, tv_rr: TaskVariance | None = None, pairs=None, path=None):
    """Fig. 4-style FTV histograms (fraction of active units per bin) for the rule pairs; gray line = random-
    rotation control. Returns the figure (or the path when saved)."""
    pairs = available_pairs(tv.keys, pairs or FTV_PAIRS)
    if not pairs:
        pairs = [tuple(tv.keys[:2])] if len(tv.keys) >= 2 else []
    n = max(len(pairs), 1)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig = new_figure((2.3 * ncol, 1.9 * nrow))
    for i, pair in enumerate(pairs):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        ftv, _ = fractional_task_variance(tv.h_var_all, tv.keys, pair)
        hist, edges = ftv_histogram(ftv)
        frac = hist / max(hist.sum(), 1)
        ax.bar(edges[:-1], frac, width=edges[1] - edges[0], align="edge", color="xkcd:cerulean",
               edgecolor="none", label="network")
        if tv_rr is not None:
            ftv_rr, _ = fractional_task_variance(tv_rr.h_var_all, tv_rr.keys, pair)
            hist_rr, _ = ftv_histogram(ftv_rr)
            ax.plot((edges[:-1] + edges[1:]) / 2, hist_rr / max(hist_rr.sum(), 1), color="gray", lw=1,
                    label="rotated")
        ax.set_xlim(-1.1, 1.1)
        ax.set_xlabel(f"FTV({display_name(pair[0])}, {display_name(pair[1])})", fontsize=7)
        ax.set_title(f"{len(ftv)} active units", fontsize=7)
        ax.tick_params(labelsize=6)
        for s in ("top", "right"):
            ax.spines[s].set_visible(False)
        if i == 0:
            ax.set_ylabel("Fraction of units", fontsize=7)
            ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return finish_figure(fig, path)


def plot_ftv_all(tv: TaskVariance, tv_rr: TaskVariance | None = None, path=None):
    """All-pairs grid (supplementary figure): row i, column j = FTV(rule_i, rule_j) histogram (fraction of
    active units per bin, cell height = 0.6); gray = random-rotation control. Drawn in one axes (fast)."""
    from matplotlib.collections import LineCollection

    rules = list(tv.keys)
    n = len(rules)
    size = max(3.0, 0.38 * n + 1.2)
    fig = new_figure((size, size))
    ax = fig.add_axes([0.16, 0.02, 0.82, 0.82])
    edges = np.linspace(-1, 1, FTV_BINS + 1)
    xs = (edges[:-1] + edges[1:]) / 2
    lines, lines_rr = [], []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            x0, y0 = j + 0.05 + 0.9 * (xs + 1) / 2, n - 1 - i + 0.08
            hist, _ = ftv_histogram(fractional_task_variance(tv.h_var_all, rules, (rules[i], rules[j]))[0])
            lines.append(np.column_stack([x0, y0 + 0.8 / 0.6 * np.minimum(hist / max(hist.sum(), 1), 0.66)]))
            if tv_rr is not None:
                h_rr, _ = ftv_histogram(fractional_task_variance(tv_rr.h_var_all, rules, (rules[i], rules[j]))[0])
                lines_rr.append(np.column_stack([x0, y0 + 0.8 / 0.6 * np.minimum(h_rr / max(h_rr.sum(), 1), 0.66)]))
    if lines_rr:
        ax.add_collection(LineCollection(lines_rr, colors="gray", linewidths=0.5))
    ax.add_collection(LineCollection(lines, colors="black", linewidths=0.7))
    for k in range(n + 1):
        ax.axhline(k, color="0.85", lw=0.3)
        ax.axvline(k, color="0.85", lw=0.3)
    ax.set_xlim(0, n)
    ax.set_ylim(0, n)
    ax.set_xticks(np.arange(n) + 0.5)
    ax.set_xticklabels([display_name(r) for r in rules], rotation=60, fontsize=5, ha="left")
    ax.xaxis.tick_top()
    ax.set_yticks(np.arange(n) + 0.5)
    ax.set_yticklabels([display_name(r) for r in rules][::-1], fontsize=5)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    return finish_figure(fig, path)


def ftv_summary(tv: TaskVariance, tv_rr: TaskVariance | None = None, pairs=None) -> dict:
    """Histogram counts (20 bins on [-1, 1]) per available pair, for the network and the rotation control."""
    out = {"bin_edges": np.linspace(-1, 1, FTV_BINS + 1).tolist(), "pairs": {}}
    for pair in available_pairs(tv.keys, pairs or FTV_PAIRS):
        ftv, active = fractional_task_variance(tv.h_var_all, tv.keys, pair)
        entry = {"counts": ftv_histogram(ftv)[0].tolist(), "n_active": int(len(active)),
                 "median_ftv": float(np.median(ftv)) if len(ftv) else None}
        if tv_rr is not None:
            ftv_rr, active_rr = fractional_task_variance(tv_rr.h_var_all, tv_rr.keys, pair)
            entry["counts_rotated"] = ftv_histogram(ftv_rr)[0].tolist()
            entry["n_active_rotated"] = int(len(active_rr))
        out["pairs"]["/".join(pair)] = entry
    return out


def run(run_model, run_dir, figdir=None, trial_counts="paper") -> dict:
    """The 'variance' analysis of run_analyses: variance_{rule,epoch}[_rr].npz, ftv.json, FTV figures."""
    res = compute_variance(run_model, random_rotation=True)
    run_dir = Path(run_dir)
    written = []
    for key, tv in res.items():
        written.append(tv.save(run_dir / f"variance_{key}.npz"))
    summary = ftv_summary(res["rule"], res["rule_rr"])
    save_json(to_jsonable(summary), run_dir / "ftv.json")
    written.append(run_dir / "ftv.json")
    written.append(plot_ftv_histograms(res["rule"], res["rule_rr"], path=fig_path(figdir, "ftv_pairs")))
    if len(res["rule"].keys) >= 2:
        written.append(plot_ftv_all(res["rule"], res["rule_rr"], path=fig_path(figdir, "ftv_all_pairs")))
    active = int((res["rule"].h_var_all.sum(axis=1) > ACTIVE_THRESHOLD).sum())
    return {"files": written, "summary": f"{active}/{res['rule'].h_var_all.shape[0]} units active; FTV for "
                                         f"{len(summary['pairs'])} rule pairs", "results": res}
