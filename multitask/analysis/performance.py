"""Behaviour: learning curves, psychometric curves and discrimination thresholds (spec §4.7, paper Fig. 1).

Choice readout (all psychometric analyses): the population vector of the response ring at the last step; a
trial counts as "choice 1" when it lies within THETA = 0.3*pi of stimulus 1, "choice 2" likewise for
stimulus 2, otherwise as no choice; P(choice 1) = n1 / (n1 + n2) per condition (NaN without choices). Trials
come from the 'psychometric' mode of the task generator with input and recurrent noise on (as the paper).

* ``psychometric_choice``: DM 1, coherences c in {-0.5, -0.15, -0.05, 0, 0.05, 0.15, 0.5} * 0.05 (stimulus 1
  strength 1 + c, stimulus 2 1 - c; x axis 2c), stimulus 1 at 2*pi*k/n_loc, stimulus 2 opposite, stimulus
  durations 200/400/800 ms.
* ``psychometric_choiceattend``: Ctx DM 1 / 2, 7 x 7 coherence pairs (mod 1 x mod 2), 800 ms; curves of the
  attended and of the ignored modality (P(choice 1) averaged over the other modality).
* ``psychometric_choiceint``: MultSen DM with modality 1 only, 2 only, both (400 ms).
* fits: cumulative Gaussian ``Phi((x - mu) / sigma)`` by ``scipy.optimize.curve_fit`` with mu in [-0.5, 0.5],
  sigma in [0.001, 10].
* ``compute_choicefamily_varytime``: coherences 0.04 * 2^k / 8 (k = 0..3) and 8 durations logspace(200, 1500)
  ms; ``fit_thresholds``: per duration the Weibull ``1 - 0.5 exp(-(c / a)^b)`` (least squares, L-BFGS-B,
  a in [1e-3, 1], b in [1e-5, 10]); a = discrimination threshold; perfect integration predicts log a falling
  with slope -0.5 against log duration. Besides the paper's fixed-slope line, the free log-log slope is
  reported.

The functions' trial counts are the paper's; ``run`` (run_analyses) on CPU uses RUN_SETTINGS['fast'], which
reduces only the duration analysis (see there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import optimize, stats

from ..tasks import generate_trials, get_dist
from ._common import (RULE_COLORS, analysis_hp, display_name, fig_path, finish_figure, forward, new_figure, popvec,
                      resolve, save_json, to_jsonable, torch_seed)

__all__ = ["THETA", "COHS", "plot_performanceprogress", "plot_learning_curves", "choice_fractions",
           "psychometric_dm", "cumulative_gaussian", "fit_cumulative_gaussian", "psychometric_choice",
           "psychometric_choiceattend", "psychometric_choiceint", "compute_choicefamily_varytime", "weibull",
           "fit_weibull", "fit_thresholds", "plot_psychometric", "plot_varytime", "run"]

#: Angular tolerance of a choice (radians).
THETA = 0.3 * np.pi
#: Signed coherences of the psychometric curves.
COHS = np.array([-0.5, -0.15, -0.05, 0, 0.05, 0.15, 0.5]) * 0.05
_BLUES = ["#222222", "#5c7990", "#95d0fc"]
_SET2 = ["#66c2a5", "#fc8d62", "#8da0cb"]


# ---------------------------------------------------------------------------------------------------- learning

def plot_performanceprogress(log, rules=None, path=None):
    """Paper Fig. 1 learning curves: perf_<rule> (solid) and log10 cost_<rule> (dashed) vs trials / 1000."""
    rules = rules or [k[5:] for k in log if k.startswith("perf_") and k not in ("perf_avg", "perf_min")]
    x = np.asarray(log["trials"]) / 1000.0
    fig = new_figure((6, 2.6))
    ax = fig.add_axes([0.09, 0.18, 0.42, 0.72])
    ax2 = fig.add_axes([0.09, 0.18, 0.42, 0.72], sharex=ax, frame_on=False)
    for rule in rules:
        color = RULE_COLORS.get(rule, None)
        line, = ax.plot(x, log["perf_" + rule], color=color, lw=1, label=display_name(rule))
        if "cost_" + rule in log:
            ax2.plot(x, np.log10(np.maximum(log["cost_" + rule], 1e-12)), color=line.get_color(), lw=0.8,
                     ls="--")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Total trials (1,000)", fontsize=7)
    ax.set_ylabel("Performance (solid)", fontsize=7)
    ax2.yaxis.tick_right()
    ax2.yaxis.set_label_position("right")
    ax2.set_ylabel("log10 cost (dashed)", fontsize=7)
    for a in (ax, ax2):
        a.tick_params(labelsize=6)
    ax.legend(fontsize=6, ncol=2, frameon=False, bbox_to_anchor=(1.15, 1.0), loc="upper left", title="Task",
              title_fontsize=6)
    return finish_figure(fig, path)


def plot_learning_curves(log, rules=None, path=None):
    """One panel per rule: performance (black, left axis) and log10 cost (red, right axis) vs trials / 1000."""
    rules = rules or [k[5:] for k in log if k.startswith("perf_") and k not in ("perf_avg", "perf_min")]
    x = np.asarray(log["trials"]) / 1000.0
    ncol = min(5, max(1, len(rules)))
    nrow = int(np.ceil(len(rules) / ncol))
    fig = new_figure((2.1 * ncol, 1.6 * nrow + 0.3))
    for i, rule in enumerate(rules):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        ax.plot(x, log["perf_" + rule], color="black", lw=1)
        ax.set_ylim(0, 1.02)
        ax.set_title(display_name(rule), fontsize=7)
        ax.tick_params(labelsize=5)
        if "cost_" + rule in log:
            axc = ax.twinx()
            axc.plot(x, np.log10(np.maximum(log["cost_" + rule], 1e-12)), color="tab:red", lw=0.8)
            axc.tick_params(labelsize=5, colors="tab:red")
        if i % ncol == 0:
            ax.set_ylabel("Perf.", fontsize=6)
        if i >= len(rules) - ncol:
            ax.set_xlabel("Trials (1,000)", fontsize=6)
    fig.suptitle("performance (black, left axis) and log10 cost (red, right axis)", fontsize=7)
    fig.tight_layout()
    return finish_figure(fig, path)


# ---------------------------------------------------------------------------------------------------- choices

def choice_fractions(choice_locs, stim1_locs, stim2_locs, batch_shape, theta=THETA):
    """P(choice 1) per condition from response angles.

    choice_locs, stim1_locs, stim2_locs: (B,) radians, B = prod(batch_shape) with the repetition axis first.
    Returns (p1 (batch_shape[1:]), n1, n2): choices within ``theta`` of stimulus 1 / 2 counted over axis 0.
    """
    shape = tuple(batch_shape)
    loc = np.reshape(choice_locs, shape)
    n1 = (get_dist(loc - np.reshape(stim1_locs, shape)) < theta).sum(axis=0)
    n2 = (get_dist(loc - np.reshape(stim2_locs, shape)) < theta).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(n1 + n2 > 0, n1 / np.maximum(n1 + n2, 1), np.nan)
    return p1, n1, n2


def _chunk_params(params, lo, hi):
    return {k: (v[lo:hi] if isinstance(v, np.ndarray) and v.ndim == 1 else v) for k, v in params.items()}


def psychometric_dm(run_model, rule, params, batch_shape, hp, chunk=2000):
    """Run ``rule`` in 'psychometric' mode with ``params`` (per-trial arrays of length prod(batch_shape)) in
    chunks; returns P(choice 1) (batch_shape[1:]) and the last-step response angles (B,)."""
    B = int(np.prod(batch_shape))
    locs = []
    for lo in range(0, B, chunk):
        trial = generate_trials(rule, hp, "psychometric", params=_chunk_params(params, lo, min(B, lo + chunk)))
        y_last, _ = forward(run_model, trial.x, keep_h=False, last_only=True)
        locs.append(popvec(y_last[:, 1:]))
    locs = np.concatenate(locs)
    p1, _, _ = choice_fractions(locs, params["stim1_locs"], params["stim2_locs"], batch_shape)
    return p1, locs


def _loc_grid(n_stim_loc, n_cond):
    """(stim1_locs, stim2_locs, condition index) for n_stim_loc x n_cond trials (locations vary slowest)."""
    ind_loc, ind_cond = np.unravel_index(np.arange(n_stim_loc * n_cond), (n_stim_loc, n_cond))
    stim1 = 2 * np.pi * ind_loc / n_stim_loc
    return stim1, (stim1 + np.pi) % (2 * np.pi), ind_cond


def cumulative_gaussian(x, mu, sigma):
    return stats.norm.cdf(x, mu, sigma)


def fit_cumulative_gaussian(x, y):
    """(mu, sigma) of ``Phi((x - mu) / sigma)`` fitted to P(choice 1) by curve_fit (mu in [-0.5, 0.5], sigma in
    [0.001, 10]); NaN entries ignored; None when the fit fails."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return None
    try:
        (mu, sigma), _ = optimize.curve_fit(cumulative_gaussian, x[ok], y[ok], p0=[0.0, max(np.ptp(x) / 4, 0.01)],
                                            bounds=([-0.5, 0.001], [0.5, 10.0]))
    except (RuntimeError, ValueError):
        return None
    return float(mu), float(sigma)


def psychometric_choice(run_model_or_dir, stim_times=(200, 400, 800), n_stim_loc=300, device=None, seed=0):
    """DM 1 psychometric curves per stimulus duration (ms). Returns dict x (7,) = 2c, curves {label: (7,)},
    fits {label: (mu, sigma) or None}."""
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model, offset=4)
    s1, s2, ind = _loc_grid(n_stim_loc, len(COHS))
    curves, fits = {}, {}
    with torch_seed(seed):
        for t in stim_times:
            params = {"stim1_locs": s1, "stim2_locs": s2, "stim1_strengths": 1 + COHS[ind],
                      "stim2_strengths": 1 - COHS[ind], "stim_time": t}
            p1, _ = psychometric_dm(run_model, "dm1", params, (n_stim_loc, len(COHS)), hp)
            curves[f"{t}"] = p1
            fits[f"{t}"] = fit_cumulative_gaussian(2 * COHS, p1)
    return {"rule": "dm1", "x": 2 * COHS, "curves": curves, "fits": fits, "legend": "Stim. time (ms)",
            "n_stim_loc": n_stim_loc}


def psychometric_choiceattend(run_model_or_dir, rule="contextdm1", n_stim_loc=100, stim_time=800, device=None,
                              seed=0):
    """Ctx DM 1/2: P(choice 1) over 7 x 7 (mod 1, mod 2) coherences; curves of the attended and ignored
    modality (averaged over the other). Returns dict with p1 (7, 7), curves {'Attend', 'Ignore'}, fits."""
    if rule not in ("contextdm1", "contextdm2"):
        raise ValueError(f"rule must be 'contextdm1' or 'contextdm2', got {rule!r}")
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model, offset=5)
    n = len(COHS)
    ind_loc, i1, i2 = np.unravel_index(np.arange(n_stim_loc * n * n), (n_stim_loc, n, n))
    s1 = 2 * np.pi * ind_loc / n_stim_loc
    params = {"stim1_locs": s1, "stim2_locs": (s1 + np.pi) % (2 * np.pi),
              "stim1_mod1_strengths": 1 + COHS[i1], "stim2_mod1_strengths": 1 - COHS[i1],
              "stim1_mod2_strengths": 1 + COHS[i2], "stim2_mod2_strengths": 1 - COHS[i2], "stim_time": stim_time}
    with torch_seed(seed):
        p1, _ = psychometric_dm(run_model, rule, params, (n_stim_loc, n, n), hp)
    by_mod1, by_mod2 = np.nanmean(p1, axis=1), np.nanmean(p1, axis=0)
    attend, ignore = (by_mod1, by_mod2) if rule == "contextdm1" else (by_mod2, by_mod1)
    curves = {"Attend": attend, "Ignore": ignore}
    return {"rule": rule, "x": 2 * COHS, "p1": p1, "curves": curves,
            "fits": {k: fit_cumulative_gaussian(2 * COHS, v) for k, v in curves.items()}, "legend": "Modality",
            "n_stim_loc": n_stim_loc}


def psychometric_choiceint(run_model_or_dir, n_stim_loc=500, stim_time=400, device=None, seed=0):
    """MultSen DM with modality 1 only, 2 only and both; the fitted sigma of 'both' should be the smallest."""
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model, offset=6)
    s1, s2, ind = _loc_grid(n_stim_loc, len(COHS))
    st1, st2 = 1 + COHS[ind], 1 - COHS[ind]
    curves, fits = {}, {}
    with torch_seed(seed):
        for label, (m1, m2) in (("1 only", (1, 0)), ("2 only", (0, 1)), ("both", (1, 1))):
            params = {"stim1_locs": s1, "stim2_locs": s2, "stim1_mod1_strengths": st1 * m1,
                      "stim2_mod1_strengths": st2 * m1, "stim1_mod2_strengths": st1 * m2,
                      "stim2_mod2_strengths": st2 * m2, "stim_time": stim_time}
            p1, _ = psychometric_dm(run_model, "multidm", params, (n_stim_loc, len(COHS)), hp)
            curves[label] = p1
            fits[label] = fit_cumulative_gaussian(2 * COHS, p1)
    return {"rule": "multidm", "x": 2 * COHS, "curves": curves, "fits": fits, "legend": "Modality",
            "n_stim_loc": n_stim_loc}


# ---------------------------------------------------------------------------------------------------- durations

#: Coherences of the duration analysis: 0.04 * 2^k / 8, k = 0..3 -> 0.005, 0.01, 0.02, 0.04.
VARYTIME_COHS = 0.04 * 2.0 ** np.arange(4) / 2.0 ** 3
#: Stimulus durations (ms): np.logspace(log10 200, log10 1500, 8) truncated to int.
VARYTIME_STIM_TIMES = np.logspace(np.log10(200), np.log10(1500), 8).astype(int)


def compute_choicefamily_varytime(run_model_or_dir, rule="dm1", n_stim_loc=3000, stim_times=None, device=None,
                                  seed=0):
    """P(correct) (= P(choice 1): stimulus 1 is always the stronger) per coherence and duration.

    Returns dict: rule, cohs (4,), stim_times (n_t,) ms, p_correct (4, n_t), n_stim_loc.
    """
    valid = ("dm1", "dm2", "contextdm1", "contextdm2", "multidm")
    if rule not in valid:
        raise ValueError(f"rule must be one of {valid}, got {rule!r}")
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model, offset=7)
    cohs = VARYTIME_COHS
    stim_times = np.asarray(VARYTIME_STIM_TIMES if stim_times is None else stim_times)
    s1, s2, ind = _loc_grid(n_stim_loc, len(cohs))
    hi, lo = 1 + cohs[ind], 1 - cohs[ind]
    ones = np.ones(len(ind))
    out = np.zeros((len(cohs), len(stim_times)))
    with torch_seed(seed):
        for j, t in enumerate(stim_times):
            params = {"stim1_locs": s1, "stim2_locs": s2, "stim_time": int(t)}
            if rule in ("dm1", "dm2"):
                params.update(stim1_strengths=hi, stim2_strengths=lo)
            elif rule == "multidm":
                params.update(stim1_mod1_strengths=hi, stim2_mod1_strengths=lo, stim1_mod2_strengths=hi,
                              stim2_mod2_strengths=lo)
            else:
                att, ign = ("1", "2") if rule == "contextdm1" else ("2", "1")
                params.update({f"stim1_mod{att}_strengths": hi, f"stim2_mod{att}_strengths": lo,
                               f"stim1_mod{ign}_strengths": ones, f"stim2_mod{ign}_strengths": ones})
            out[:, j], _ = psychometric_dm(run_model, rule, params, (n_stim_loc, len(cohs)), hp)
    return {"rule": rule, "cohs": cohs, "stim_times": stim_times, "p_correct": out, "n_stim_loc": n_stim_loc}


def weibull(c, a, b):
    """P(correct) = 1 - 0.5 exp(-(c / a)^b)."""
    return 1 - 0.5 * np.exp(-(np.asarray(c, float) / a) ** b)


def fit_weibull(cohs, p_correct):
    """(a, b) minimising the squared error of ``weibull`` (L-BFGS-B from (0.1, 1), a in [1e-3, 1], b in
    [1e-5, 10]); NaN entries ignored."""
    c, p = np.asarray(cohs, float), np.asarray(p_correct, float)
    ok = np.isfinite(p)
    res = optimize.minimize(lambda q: np.sum((weibull(c[ok], q[0], q[1]) - p[ok]) ** 2), [0.1, 1.0],
                            bounds=[(1e-3, 1.0), (1e-5, 10.0)], method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


def fit_thresholds(varytime: dict) -> dict:
    """Weibull threshold a per duration and the log-log dependence on duration.

    Returns dict: thresholds (n_t,), betas (n_t,), intercept of log10 a = -0.5 log10 t + intercept (perfect
    integration, least squares), slope and intercept of the free linear fit.
    """
    thr, betas = [], []
    for j in range(len(varytime["stim_times"])):
        a, b = fit_weibull(varytime["cohs"], varytime["p_correct"][:, j])
        thr.append(a)
        betas.append(b)
    thr = np.array(thr)
    lt, la = np.log10(varytime["stim_times"].astype(float)), np.log10(thr)
    slope, icpt = np.polyfit(lt, la, 1)
    return {"thresholds": thr, "betas": np.array(betas), "perfect_integration_intercept": float(np.mean(la + 0.5 * lt)),
            "slope": float(slope), "intercept": float(icpt)}


# ---------------------------------------------------------------------------------------------------- figures

def plot_psychometric(res: dict, path=None, colors=None):
    """Points = P(choice 1) per signed stimulus difference, lines = fitted cumulative Gaussians."""
    fig = new_figure((3.6, 2.1))
    ax = fig.add_axes([0.15, 0.22, 0.42, 0.65])
    x = np.asarray(res["x"])
    xs = np.linspace(x[0], x[-1], 100)
    colors = colors or (_BLUES if len(res["curves"]) == 3 and res["rule"] == "dm1" else _SET2)
    for i, (label, y) in enumerate(res["curves"].items()):
        color = colors[i % len(colors)]
        ax.plot(x, y, "o", ms=3, color=color)
        fit = res["fits"].get(label)
        text = label if fit is None else f"{label} (σ={fit[1]:.3f})"
        if fit is not None:
            ax.plot(xs, cumulative_gaussian(xs, *fit), color=color, lw=1, label=text)
        else:
            ax.plot([], [], "o", color=color, label=text + " (no fit)")
    ax.set_xlabel("Stim. 1 - Stim. 2", fontsize=7)
    ax.set_ylabel("P(choice 1)", fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xticks([x[0], 0, x[-1]])
    ax.set_title(display_name(res["rule"]), fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(title=res.get("legend"), fontsize=6, title_fontsize=6, frameon=False, bbox_to_anchor=(1.02, 0.95),
              loc="upper left")
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    return finish_figure(fig, path)


def plot_varytime(varytime: dict, fit: dict, path=None):
    """Left: P(correct) vs duration per coherence. Right: Weibull threshold vs duration (log-log) with the
    perfect-integration line of slope -0.5."""
    fig = new_figure((5.2, 2.2))
    t = varytime["stim_times"].astype(float)
    ax = fig.add_subplot(1, 2, 1)
    for i, c in enumerate(varytime["cohs"]):
        ax.plot(t, varytime["p_correct"][i], "o-", ms=3, lw=1, color=plt_blue(i, len(varytime["cohs"])),
                label=f"{2 * c:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("Stimulus duration (ms)", fontsize=7)
    ax.set_ylabel("P(correct)", fontsize=7)
    ax.set_ylim(0.4, 1.02)
    ax.legend(title="Stim. 1 - Stim. 2", fontsize=5, title_fontsize=5, frameon=False)
    ax.set_title(display_name(varytime["rule"]), fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    ax.loglog(t, fit["thresholds"], "o-", color="black", ms=3, label=f"model (slope {fit['slope']:.2f})")
    ax.loglog(t, 10 ** (-0.5 * np.log10(t) + fit["perfect_integration_intercept"]), color="red",
              label="perfect int. (-0.5)")
    ax.set_xlabel("Stimulus duration (ms)", fontsize=7)
    ax.set_ylabel("Discrimination threshold", fontsize=7)
    ax.legend(fontsize=5, frameon=False)
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for a in fig.axes:
        a.set_xticks([200, 400, 800, 1600])
        a.xaxis.set_major_formatter(ScalarFormatter())
        a.xaxis.set_minor_formatter(NullFormatter())
        a.tick_params(labelsize=6)
        for s in ("top", "right"):
            a.spines[s].set_visible(False)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    fig.tight_layout()
    return finish_figure(fig, path)


def plt_blue(i, n):
    import matplotlib

    return matplotlib.colormaps["Blues"](0.35 + 0.65 * i / max(n - 1, 1))


# ---------------------------------------------------------------------------------------------------- run

#: Trial counts used by ``run`` (run_analyses). 'paper' = the paper's (also the functions' defaults); 'fast'
#: (run_analyses' choice on CPU) runs the duration analysis for one rule only (the first trained of DM 1,
#: Ctx DM 1, MultSen DM) and with 300 instead of 3000 stimulus locations per condition (1,200 instead of
#: 12,000 trials per duration): at the paper's counts it alone takes several minutes per rule on 2 cores.
RUN_SETTINGS = {
    "paper": {"choice_n_loc": 300, "attend_n_loc": 100, "int_n_loc": 500, "varytime_n_loc": 3000,
              "varytime_rules": ("dm1", "contextdm1", "multidm"), "varytime_max_rules": 3},
    "fast": {"choice_n_loc": 300, "attend_n_loc": 100, "int_n_loc": 500, "varytime_n_loc": 300,
             "varytime_rules": ("dm1", "contextdm1", "multidm"), "varytime_max_rules": 1},
}


def _fits_json(res):
    return {k: (None if v is None else {"mu": v[0], "sigma": v[1]}) for k, v in res["fits"].items()}


def run(run_model, run_dir, figdir=None, trial_counts="paper", settings=None) -> dict:
    """The 'performance' analysis of run_analyses: learning curves, psychometrics of the trained choice tasks,
    thresholds vs duration -> performance.json + figures. ``trial_counts``: 'paper' or 'fast' (RUN_SETTINGS);
    ``settings`` overrides single entries."""
    from ..train import load_log

    st = dict(RUN_SETTINGS[trial_counts], **(settings or {}))
    run_dir = Path(run_dir)
    trained = set(run_model.hp["rules"])
    files, result, lines = [], {}, []
    log = load_log(run_dir) if (run_dir / "log.json").exists() else None
    if log is not None and log.get("trials"):
        files.append(plot_learning_curves(log, run_model.hp["rules"], fig_path(figdir, "learning_curves")))
        files.append(plot_performanceprogress(log, run_model.hp["rules"], fig_path(figdir, "performance_progress")))
        result["final_perf"] = {r: log["perf_" + r][-1] for r in run_model.hp["rules"] if "perf_" + r in log}
    psy = []
    if "dm1" in trained:
        psy.append(("psychometric_dm1", psychometric_choice(run_model, n_stim_loc=st["choice_n_loc"])))
    for rule in ("contextdm1", "contextdm2"):
        if rule in trained:
            psy.append((f"psychometric_{rule}", psychometric_choiceattend(run_model, rule,
                                                                           n_stim_loc=st["attend_n_loc"])))
    if "multidm" in trained:
        psy.append(("psychometric_multidm", psychometric_choiceint(run_model, n_stim_loc=st["int_n_loc"])))
    for name, res in psy:
        files.append(plot_psychometric(res, fig_path(figdir, name)))
        result[name] = {"x": res["x"], "curves": res["curves"], "fits": _fits_json(res),
                        "n_stim_loc": res["n_stim_loc"]}
        sig = {k: (None if v is None else round(v[1], 4)) for k, v in res["fits"].items()}
        lines.append(f"{display_name(res['rule'])} sigma {sig}")
    for rule in [r for r in st["varytime_rules"] if r in trained][:st["varytime_max_rules"]]:
        vt = compute_choicefamily_varytime(run_model, rule, n_stim_loc=st["varytime_n_loc"])
        fit = fit_thresholds(vt)
        files.append(plot_varytime(vt, fit, fig_path(figdir, f"varytime_{rule}")))
        result[f"varytime_{rule}"] = {**{k: vt[k] for k in ("cohs", "stim_times", "p_correct", "n_stim_loc")},
                                      **fit}
        lines.append(f"{display_name(rule)} threshold slope {fit['slope']:.2f}")
    save_json(to_jsonable(result), run_dir / "performance.json")
    files.append(run_dir / "performance.json")
    return {"files": files, "results": result, "summary": "; ".join(lines) or "learning curves only"}
