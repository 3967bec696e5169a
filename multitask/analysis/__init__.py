"""The paper's analyses of a trained run (spec §4): figures in RUN_DIR/figures, numbers in RUN_DIR.

    from multitask.analysis import run_analyses
    run_analyses('runs/all')                      # = python -m multitask analyze runs/all
    run_analyses('runs/all', only=['variance', 'clustering'])

Analyses (``ANALYSES``) and what they write (all files written atomically):

* 'standard'    -- activity/connectivity/example-trial/single-unit/histogram/schematic figures; standard.json
* 'variance'    -- task variance per unit: variance_{rule,epoch}[_rr].npz (h_var_all (n_rnn, n_keys), keys);
                   FTV histograms of the paper's rule pairs with the random-rotation control; ftv.json
* 'clustering'  -- k-means on normalised task variance, silhouette-chosen k, heat map, embeddings,
                   similarity, connectivity by cluster, lesion of each cluster; clustering.json and
                   log.json['n_cluster']
* 'taskset'     -- task-space PCA of setups 1-3 ('rate' and 'weight'), rule arithmetic; taskset.json
* 'performance' -- learning curves, psychometric curves and fits, thresholds vs duration; performance.json

Modules: standard_analysis, variance, clustering, taskset, performance (their functions also take a Run_Model
or a run directory and return figures for notebooks).
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

from . import clustering, performance, standard_analysis, taskset, variance
from ._common import check_run_dir, save_json, thread_limit, to_jsonable

__all__ = ["ANALYSES", "run_analyses", "write_training_figures", "standard_analysis", "variance", "clustering",
           "taskset", "performance"]

#: Analysis names in the order they run ('clustering' reuses the variance files of 'variance').
ANALYSES = ("standard", "variance", "clustering", "taskset", "performance")
_MODULES = {"standard": standard_analysis, "variance": variance, "clustering": clustering, "taskset": taskset,
            "performance": performance}


def _check_names(only):
    if only is None:
        return list(ANALYSES)
    names = [only] if isinstance(only, str) else list(only)
    bad = [n for n in names if n not in ANALYSES]
    if bad:
        raise ValueError(f"unknown analysis name(s) {bad}; valid names: {list(ANALYSES)}")
    return [n for n in ANALYSES if n in names]


def run_analyses(run_dir, only=None, progress=True, device=None, trial_counts="auto", threads=1) -> dict:
    """Run the analyses on a trained run directory.

    Args:
        run_dir: a directory written by training (hp.json, checkpoint.pt, log.json).
        only: analysis names (subset of ANALYSES); None = all. Unknown names raise ValueError.
        progress: show a progress bar (stderr) and print the summary.
        device: torch device for the network ('cpu' default; e.g. 'cuda').
        trial_counts: 'paper' (the paper's trial counts everywhere), 'fast' (fewer trials in the one analysis
            too slow for 2 CPU cores: the duration series of 'performance', see performance.RUN_SETTINGS) or
            'auto' (= 'paper' on CUDA, 'fast' on CPU).
        threads: CPU threads for torch and BLAS/OpenMP while the analyses run (default 1: on a shared 2-core
            machine two threads were 2-7x slower; None keeps the current settings).
    Returns:
        {name: {'files': [paths], 'summary': str, 'seconds': float} or {'error': str}}; also written to
        RUN_DIR/analysis_summary.json. Raises RuntimeError after all have run if any failed.
    """
    from ..train import load_model

    names = _check_names(only)
    run_dir = check_run_dir(run_dir)
    figdir = run_dir / "figures"
    figdir.mkdir(exist_ok=True)
    if trial_counts not in ("auto", "paper", "fast"):
        raise ValueError(f"trial_counts must be 'auto', 'paper' or 'fast', got {trial_counts!r}")
    run_model = load_model(run_dir, device=device or "cpu")
    if trial_counts == "auto":
        trial_counts = "paper" if next(run_model.model.parameters()).is_cuda else "fast"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(names, unit="analysis", dynamic_ncols=True)
    results, failed = {}, []
    with thread_limit(threads):
        _run_each(names, run_model, run_dir, figdir, trial_counts, bar, results, failed)
    if bar is not None:
        bar.close()
    path = run_dir / "analysis_summary.json"
    previous = {}
    if path.exists():
        import json

        try:
            previous = json.loads(path.read_text())
        except ValueError:
            previous = {}
    save_json(to_jsonable({**previous, **results}), path)
    if progress:
        print(f"analyses of {run_dir}:")
        for name, res in results.items():
            status = res.get("summary") or ("FAILED: " + res["error"])
            n_files = len(res.get("files", []))
            print(f"  {name:<12} {res['seconds']:7.1f} s  {n_files:3d} files  {status}")
        print(f"figures in {figdir}, numbers in {run_dir} (*.json, *.npz); summary in {path}")
    if failed:
        details = ", ".join(f"{n} ({results[n]['error']})" for n in failed)
        raise RuntimeError(f"analyses failed: {details}")
    return results


def _run_each(names, run_model, run_dir, figdir, trial_counts, bar, results, failed):
    for name in names:
        if bar is not None:
            bar.set_description(name)
        t0 = time.perf_counter()
        try:
            out = _MODULES[name].run(run_model, run_dir, figdir=figdir, trial_counts=trial_counts)
            results[name] = {"files": [str(p) for p in out["files"] if p is not None], "summary": out["summary"],
                             "seconds": round(time.perf_counter() - t0, 2)}
        except Exception as err:  # keep going; report at the end
            traceback.print_exc()
            results[name] = {"error": f"{type(err).__name__}: {err}", "seconds": round(time.perf_counter() - t0, 2)}
            failed.append(name)
        if bar is not None:
            bar.update(1)


def write_training_figures(run_model, hp, log, out_dir) -> list:
    """Figures written at the end of training into OUT_DIR/figures: learning curves per rule (performance and
    log10 cost vs trials, one panel per rule, plus the paper's overlay) and one input/output example trial per
    rule (``pretty_inputoutput_plot``). Returns the written paths."""
    figdir = Path(out_dir) / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    rules = list(hp.get("rules") or run_model.hp["rules"])
    written = []
    if log.get("trials"):
        written.append(performance.plot_learning_curves(log, rules, figdir / "learning_curves.png"))
        written.append(performance.plot_performanceprogress(log, rules, figdir / "performance_progress.png"))
    for rule in rules:
        written.append(standard_analysis.pretty_inputoutput_plot(run_model, rule, save=figdir))
    return written

