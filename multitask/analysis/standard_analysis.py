"""Standard plots for any task (spec §4.1): activity, connectivity, example trials, single units, schematic.

Every function takes a Run_Model or a run directory. Trials come from the 'test' grid with input noise and
the training recurrent noise on (as the paper's analyses). Figures are pyplot figures: without ``save`` they
are returned open (a notebook shows them); with ``save`` (a directory, or a file path for single-figure
functions) they are written as PNG (or the path's suffix) and closed, and the paths are returned.

    from multitask.analysis import standard_analysis
    standard_analysis.easy_activity_plot(run_model, 'contextdm1')
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..network import Run_Model
from ._common import (analysis_hp, display_name, finish_figure, new_figure, resolve, run_trial, safe_name,
                      torch_seed)

__all__ = ["easy_activity_plot", "easy_connectivity_plot", "pretty_inputoutput_plot", "pretty_singleneuron_plot",
           "activity_histogram", "activity_values", "schematic_plot"]

#: Traces and histograms skip the first 500 ms (the initial transient).
T_START_MS = 500


def _target(save, name, ext="png", single=True):
    """None (keep open), or the file to write: ``save`` itself if it has a suffix (single-figure functions
    only), else the directory save/name.ext."""
    if save is None or save is False:
        return None
    save = Path(save)
    return save if (single and save.suffix) else save / f"{name}.{ext}"


def _ring_ticks(ax, n):
    ax.set_yticks([0, (n - 1) / 2, n - 1])
    ax.set_yticklabels(["0°", "180°", "360°"], fontsize=5)


def easy_activity_plot(run_model_or_dir, rule, save=None, trial_index=0, device=None):
    """Heat maps (time x unit) of the inputs x, rates h and outputs y_hat of one 'test' trial of ``rule``.

    Returns the three figures (input, recurrent, output), or their paths when ``save`` (a directory) is given.
    """
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model)
    with torch_seed(0):
        trial, y_hat, h = run_trial(run_model, rule, hp, "test", trials=slice(trial_index, trial_index + 1))
    t_end = trial.tdim * hp["dt"]
    out = []
    for data, title in ((trial.x[:, trial_index], "input"), (h[:, 0], "recurrent"), (y_hat[:, 0], "output")):
        fig = new_figure((5, 3.2))
        ax = fig.add_subplot(111)
        im = ax.imshow(data.T, aspect="auto", cmap="hot", interpolation="none", origin="lower",
                       extent=(0, t_end, -0.5, data.shape[1] - 0.5))
        ax.set_title(f"{display_name(rule)}: {title}")
        ax.set_xlabel("Time (ms)")
        ax.set_ylabel("Unit")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        out.append(finish_figure(fig, _target(save, f"activity_{safe_name(display_name(rule))}_{title}",
                                              single=False)))
    return out


def easy_connectivity_plot(run_model_or_dir, save=None, device=None):
    """Heat maps (to x from, 'bwr', +-0.7 max|W|) of the 2-D weights: the fused input + recurrent kernel
    [W_in, W_rec] (n_rnn, n_input + n_rnn) and the readout W_out (n_output, n_rnn). Returns 2 figures/paths."""
    run_model, _ = resolve(run_model_or_dir, device)
    m = run_model.model
    kernel = np.concatenate([m.weight_ih.detach().cpu().numpy(), m.weight_hh.detach().cpu().numpy()], axis=1)
    out = []
    for name, w in (("kernel (W_in | W_rec)", kernel), ("output W_out", m.readout.weight.detach().cpu().numpy())):
        vmax = np.abs(w).max() * 0.7 or 1.0
        fig = new_figure((5, 3.6))
        ax = fig.add_subplot(111)
        im = ax.imshow(w, aspect="auto", cmap="bwr", vmin=-vmax, vmax=vmax, interpolation="none", origin="lower")
        if name.startswith("kernel"):
            ax.axvline(m.weight_ih.shape[1] - 0.5, color="black", lw=0.5)
        ax.set_title(name)
        ax.set_xlabel("From")
        ax.set_ylabel("To")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        out.append(finish_figure(fig, _target(save, "connectivity_" + name.split()[0], single=False)))
    return out


def pretty_inputoutput_plot(run_model_or_dir, rule, save=None, plot_ylabel=False, trial_index=0, device=None):
    """Paper Fig. 1 example: fixation input, ring inputs (one panel per modality), fixation target (green) vs
    output (blue), response-ring output, for one 'test' trial. Returns the figure or its path
    (default name sample_<RuleName>.png)."""
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model)
    with torch_seed(0):
        trial, y_hat, _ = run_trial(run_model, rule, hp, "test", keep_h=False,
                                    trials=slice(trial_index, trial_index + 1))
    x, y, y_hat = trial.x[:, trial_index], trial.y[:, trial_index], y_hat[:, 0]
    nr = hp["n_eachring"]
    n_ring = (hp["rule_start"] - 1) // nr
    t = np.arange(x.shape[0]) * hp["dt"] / 1000.0
    t_end = x.shape[0] * hp["dt"] / 1000.0
    panels = [("fix. in", "line")] + [(f"stim. mod{k + 1}", "ring") for k in range(n_ring)] + \
             [("fix. out", "line"), ("out", "ring")]
    heights = [0.4 if kind == "line" else 1.0 for _, kind in panels]
    fig = new_figure((2.0, 0.5 + 0.55 * sum(heights)))
    axes = fig.subplots(len(panels), 1, sharex=True, gridspec_kw={"height_ratios": heights, "hspace": 0.25})
    ring = 0
    for ax, (label, kind) in zip(axes, panels):
        if label == "fix. in":
            ax.plot(t, x[:, 0], color="xkcd:blue", lw=1)
            ax.set_ylim(-0.1, 1.5)
            ax.set_title(display_name(rule), fontsize=7)
        elif label == "fix. out":
            ax.plot(t, y[:, 0], color="xkcd:green", lw=1)
            ax.plot(t, y_hat[:, 0], color="xkcd:blue", lw=1)
            ax.set_ylim(-0.1, 1.1)
        else:
            data = y_hat[:, 1:] if label == "out" else x[:, 1 + ring * nr:1 + (ring + 1) * nr]
            ring += label != "out"
            ax.imshow(data.T, aspect="auto", cmap="Purples", vmin=0, vmax=1, interpolation="none", origin="lower",
                      extent=(0, t_end, -0.5, nr - 0.5))
        ax.tick_params(labelsize=5, length=2)
        for s in ("top", "right"):
            ax.spines[s].set_visible(False)
        if plot_ylabel:
            ax.set_ylabel(label, fontsize=6)
            if kind == "ring":
                _ring_ticks(ax, nr)
        else:
            ax.set_yticks([])
    axes[-1].set_xlabel("Time (s)", fontsize=6)
    axes[-1].set_xlim(0, t_end)
    fig.subplots_adjust(left=0.22 if plot_ylabel else 0.08, right=0.96, top=0.93, bottom=0.1)
    return finish_figure(fig, _target(save, "sample_" + safe_name(display_name(rule))))


def _test_activity(run_model, rules, hp):
    out = {}
    with torch_seed(0):
        for rule in rules:
            trial, _, h = run_trial(run_model, rule, hp, "test")
            out[rule] = (trial, h)
    return out


def pretty_singleneuron_plot(run_model_or_dir, rules, neurons, epoch=None, save=None, plot_stim_avg=False,
                             device=None):
    """Traces of single units across all 'test' conditions (gray; black = condition average with
    ``plot_stim_avg``) from 500 ms on; a bar marks ``epoch``. One figure per (unit, rule) (default names
    trace_unit<id><RuleName>.png). Returns the list of figures or paths."""
    rules = [rules] if isinstance(rules, str) else list(rules)
    neurons = [int(neurons)] if np.ndim(neurons) == 0 else [int(n) for n in neurons]
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model)
    t0 = int(T_START_MS / hp["dt"])
    acts = _test_activity(run_model, rules, hp)
    out = []
    for neuron in neurons:
        h_max = max(float(acts[r][1][t0:, :, neuron].max()) for r in rules) or 1.0
        for j, rule in enumerate(rules):
            trial, h = acts[rule]
            trace = h[t0:, :, neuron]
            t = (t0 + np.arange(trace.shape[0])) * hp["dt"] / 1000.0
            fig = new_figure((2.0, 1.6))
            ax = fig.add_axes([0.25, 0.25, 0.68, 0.6])
            ax.plot(t, trace, lw=0.5, color="gray")
            if plot_stim_avg:
                ax.plot(t, trace.mean(axis=1), lw=1, color="black")
            if epoch is not None:
                e0, e1 = trial.epochs[epoch]
                e0 = 0 if e0 is None else e0
                e1 = trial.tdim if e1 is None else e1
                ax.plot(np.array([e0, e1]) * hp["dt"] / 1000.0, [h_max * 1.15] * 2, color="black", lw=1.5)
            ax.set_ylim(-0.1 * h_max, 1.2 * h_max)
            ax.set_xlabel("Time (s)", fontsize=6)
            if j == 0:
                ax.set_ylabel("Activity (a.u.)", fontsize=6)
            ax.set_title(f"Unit {neuron} {display_name(rule)}", fontsize=6)
            ax.tick_params(labelsize=5)
            for s in ("top", "right"):
                ax.spines[s].set_visible(False)
            out.append(finish_figure(fig, _target(save, f"trace_unit{neuron}{safe_name(display_name(rule))}",
                                                   single=False)))
    return out


def activity_values(run_model_or_dir, rules, device=None) -> np.ndarray:
    """All rates from 500 ms on across the 'test' trials of ``rules``, flattened (n_values,)."""
    rules = [rules] if isinstance(rules, str) else list(rules)
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model)
    t0 = int(T_START_MS / hp["dt"])
    return np.concatenate([h[t0:].ravel() for _, h in _test_activity(run_model, rules, hp).values()])


def activity_histogram(run_model_or_dir, rules, title=None, save=None, device=None, values=None):
    """Density histogram (20 bins) of all rates from 500 ms on across the 'test' trials of ``rules``.
    Returns the figure or its path (default name activity_histogram.png)."""
    values = activity_values(run_model_or_dir, rules, device) if values is None else values
    fig = new_figure((2.6, 2.0))
    ax = fig.add_axes([0.15, 0.22, 0.8, 0.65])
    ax.hist(values, bins=20, density=True, color="xkcd:cerulean")
    ax.set_xlabel("Activity", fontsize=7)
    ax.set_yticks([])
    ax.tick_params(labelsize=6)
    for s in ("left", "top", "right"):
        ax.spines[s].set_visible(False)
    if title:
        ax.set_title(title, fontsize=7)
    return finish_figure(fig, _target(save, "activity_histogram"))


def schematic_plot(run_model_or_dir, rule="dm1", save=None, device=None):
    """Paper Fig. 1a schematic: the network rebuilt with dt = 1 ms (alpha = dt/tau = 0.01, same weights) for
    smooth traces, one 'test' trial of ``rule``: inputs (fixation, rings), rule inputs, all unit rates, outputs.
    Returns 4 figures (or paths schematic_{input,rule,units,outputs}.png)."""
    run_model, _ = resolve(run_model_or_dir, device)
    rule = rule or "dm1"
    hp = analysis_hp(run_model)
    hp["dt"] = 1
    hp["alpha"] = hp["dt"] / hp["tau"]
    fine = Run_Model(hp, device=next(run_model.model.parameters()).device)
    fine.model.load_state_dict(run_model.model.state_dict())
    fine.eval()
    with torch_seed(0):
        trial, y_hat, h = run_trial(fine, rule, hp, "test", trials=slice(0, 1))
    x, h, y_hat = trial.x[:, 0], h[:, 0], y_hat[:, 0]
    nr, rs = hp["n_eachring"], hp["rule_start"]
    t = np.arange(x.shape[0]) * hp["dt"]
    t_end = x.shape[0] * hp["dt"]
    out = []

    def style(ax):
        ax.tick_params(labelsize=5, length=2)
        for s in ("top", "right"):
            ax.spines[s].set_visible(False)

    def img(ax, data, vmax=1.0):
        ax.imshow(data.T, aspect="auto", cmap="Purples", vmin=0, vmax=vmax, interpolation="none", origin="lower",
                  extent=(0, t_end, -0.5, data.shape[1] - 0.5))

    fig = new_figure((2.2, 2.4))
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [0.3, 1, 1]})
    axes[0].plot(t, x[:, 0], color="xkcd:blue", lw=1)
    axes[0].set_ylim(-0.1, 1.5)
    axes[0].set_title("Fixation input", fontsize=6)
    img(axes[1], x[:, 1:1 + nr])
    axes[1].set_title("Stimulus mod 1", fontsize=6)
    img(axes[2], x[:, 1 + nr:1 + 2 * nr])
    axes[2].set_title("Stimulus mod 2", fontsize=6)
    axes[2].set_xlabel("Time (ms)", fontsize=6)
    for ax in axes:
        style(ax)
    fig.tight_layout()
    out.append(finish_figure(fig, _target(save, "schematic_input", single=False)))

    fig = new_figure((2.2, 1.2))
    ax = fig.add_subplot(111)
    img(ax, x[:, rs:])
    ax.set_title("Rule inputs", fontsize=6)
    ax.set_xlabel("Time (ms)", fontsize=6)
    style(ax)
    fig.tight_layout()
    out.append(finish_figure(fig, _target(save, "schematic_rule", single=False)))

    fig = new_figure((2.2, 1.8))
    ax = fig.add_subplot(111)
    img(ax, h, vmax=max(1.0, float(np.percentile(h, 99))))
    ax.set_title("Recurrent units", fontsize=6)
    ax.set_xlabel("Time (ms)", fontsize=6)
    style(ax)
    fig.tight_layout()
    out.append(finish_figure(fig, _target(save, "schematic_units", single=False)))

    fig = new_figure((2.2, 1.8))
    axes = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [0.3, 1]})
    axes[0].plot(t, y_hat[:, 0], color="xkcd:blue", lw=1)
    axes[0].set_ylim(-0.1, 1.1)
    axes[0].set_title("Fixation output", fontsize=6)
    img(axes[1], y_hat[:, 1:])
    axes[1].set_title("Response", fontsize=6)
    axes[1].set_xlabel("Time (ms)", fontsize=6)
    for ax in axes:
        style(ax)
    fig.tight_layout()
    out.append(finish_figure(fig, _target(save, "schematic_outputs", single=False)))
    return out


# ---------------------------------------------------------------------------------------------------- run

def run(run_model, run_dir, figdir=None, trial_counts="paper") -> dict:
    """The 'standard' analysis of run_analyses: the plots above for the trained rules + standard.json."""
    from ._common import save_json, to_jsonable

    rules = list(run_model.hp["rules"])
    files = []
    files += easy_activity_plot(run_model, rules[0], save=figdir)
    files += easy_connectivity_plot(run_model, save=figdir)
    for rule in rules:
        files.append(pretty_inputoutput_plot(run_model, rule, save=figdir))
    hp = analysis_hp(run_model)
    t0 = int(T_START_MS / hp["dt"])
    acts = _test_activity(run_model, rules, hp)
    values = np.concatenate([h[t0:].ravel() for _, h in acts.values()])
    files.append(activity_histogram(run_model, rules, save=figdir, values=values))
    # Example units: the two with the largest variance across conditions in the first rule.
    _, h0 = acts[rules[0]]
    examples = [int(i) for i in np.argsort(h0[t0:].var(axis=1).mean(axis=0))[::-1][:2]]
    files += pretty_singleneuron_plot(run_model, rules[0], examples, save=figdir, plot_stim_avg=True)
    files += schematic_plot(run_model, "dm1" if "dm1" in rules else rules[0], save=figdir)
    counts, edges = np.histogram(values, bins=20, density=True)
    summary = {"rules": rules, "activity_histogram": {"density": counts, "bin_edges": edges},
               "mean_rate": float(values.mean()), "max_rate": float(values.max()), "example_units": examples}
    save_json(to_jsonable(summary), Path(run_dir) / "standard.json")
    files.append(Path(run_dir) / "standard.json")
    return {"files": files, "results": summary,
            "summary": f"{len(files)} files; mean rate {values.mean():.3f}, example units {examples}"}
