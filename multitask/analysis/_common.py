"""Shared helpers of the analyses: loading a run, running the network, figures and atomic files.

Conventions: arrays are time-major, ``h`` (T, B, n_rnn) rates, ``y_hat`` (T, B, n_output) outputs; angles in
radians; times in ms unless a name ends in ``_step``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import matplotlib
import numpy as np

if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")  # headless; notebooks set MPLBACKEND themselves and keep their inline backend

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..network import popvec  # noqa: E402
from ..tasks import get_dist, rule_name  # noqa: E402
from ..train import CHECKPOINT, load_model, save_json  # noqa: E402

__all__ = ["resolve", "analysis_hp", "torch_seed", "forward", "run_trial", "last_step_outputs", "new_figure",
           "finish_figure", "save_npz", "save_json", "display_name", "RULE_COLORS", "check_run_dir",
           "saved_state", "get_dist", "popvec"]

#: The paper's analyses reseed the task generator with seed + 1000 (``tools.load_hp``); every analysis here
#: starts from its own fresh generator, so results do not depend on which analyses ran before.
ANALYSIS_SEED_OFFSET = 1000

#: Line colours per rule (xkcd names, the paper's palette).
RULE_COLORS = {k: "xkcd:" + v for k, v in {
    "reactgo": "green", "delaygo": "olive", "fdgo": "forest green", "reactanti": "mustard",
    "delayanti": "tan", "fdanti": "brown", "dm1": "lavender", "dm2": "aqua", "contextdm1": "bright purple",
    "contextdm2": "green blue", "multidm": "blue", "delaydm1": "indigo", "delaydm2": "grey blue",
    "contextdelaydm1": "royal purple", "contextdelaydm2": "dark cyan", "multidelaydm": "royal blue",
    "dmsgo": "red", "dmsnogo": "rose", "dmcgo": "orange", "dmcnogo": "peach", "oic": "black", "dmc": "grey",
}.items()}

#: Colours of clusters (Kelly's maximum-contrast set without white).
CLUSTER_COLORS = ["#222222", "#F3C300", "#875692", "#F38400", "#A1CAF1", "#BE0032", "#C2B280", "#848482",
                  "#008856", "#E68FAC", "#0067A5", "#F99379", "#604E97", "#F6A600", "#B3446C", "#DCD300",
                  "#882D17", "#8DB600", "#654522", "#E25822", "#2B3D26"]


def cluster_color(i: int) -> str:
    return CLUSTER_COLORS[i % len(CLUSTER_COLORS)]


def display_name(rule) -> str:
    return rule_name.get(rule, str(rule))


# ---------------------------------------------------------------------------------------------------- runs

def check_run_dir(run_dir) -> Path:
    """The run directory, or a clear error when it is not a trained run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    if not (run_dir / "hp.json").exists():
        raise FileNotFoundError(f"{run_dir} has no hp.json: not a training run directory "
                                "(create one with `python -m multitask train --out DIR`)")
    if not (run_dir / CHECKPOINT).exists():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT}: training has not saved a checkpoint yet "
                                "(it is written at every evaluation)")
    return run_dir


def resolve(run_model_or_dir, device=None):
    """``(run_model, run_dir)`` from a Run_Model (run_dir None) or a run directory (loaded in eval mode)."""
    if isinstance(run_model_or_dir, (str, os.PathLike)):
        run_dir = check_run_dir(run_model_or_dir)
        return load_model(run_dir, device=device or "cpu"), run_dir
    if hasattr(run_model_or_dir, "model") and hasattr(run_model_or_dir, "hp"):
        return run_model_or_dir, None
    raise TypeError(f"expected a Run_Model or a run directory, got {type(run_model_or_dir).__name__}")


def analysis_hp(run_model, offset: int = 0, **overrides) -> dict:
    """A copy of the model's hp with a fresh task generator ``default_rng(seed + 1000 + offset)``."""
    hp = {k: v for k, v in run_model.hp.items() if k != "rng"}
    hp.update(overrides)
    hp["rng"] = np.random.default_rng(int(hp.get("seed", 0)) + ANALYSIS_SEED_OFFSET + offset)
    return hp


@contextlib.contextmanager
def torch_seed(seed: int):
    """Seed torch's CPU generator (the recurrent-noise streams are drawn from it) without disturbing the caller."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def thread_limit(threads):
    """Limit torch's and the BLAS/OpenMP pools' threads to ``threads`` (None: leave them) and restore on exit.

    On a small shared machine one thread is often several times faster than two for these workloads (the
    many small per-step operations make OpenMP workers spin-wait when other processes hold the cores).
    """
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with threadpool_limits(limits=int(threads)):
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def saved_state(run_model):
    """Restore the model's parameters on exit (used around lesions)."""
    state = {k: v.detach().clone() for k, v in run_model.model.state_dict().items()}
    try:
        yield run_model
    finally:
        run_model.model.load_state_dict(state)


def _as_tensor(x, device):
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return t.to(device)


@torch.no_grad()
def forward(run_model, x, sigma_rec=None, keep_h=True, last_only=False, chunk=4096):
    """Run the network on inputs ``x`` (T, B, n_input) (numpy or tensor).

    sigma_rec: None keeps the training recurrent noise (the paper's analyses), 0.0 switches it off.
    Returns numpy ``(y_hat, h)``: y_hat (T, B, n_output) (or (B, n_output) with ``last_only``), h (T, B, n_rnn)
    or None without ``keep_h``. Large batches run in chunks of ``chunk`` trials.
    """
    model = run_model.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    B = x.shape[1]
    ys, hs = [], []
    try:
        for b0 in range(0, B, chunk):
            xb = _as_tensor(x[:, b0:b0 + chunk], device)
            logits, h = model(xb, sigma_rec_override=sigma_rec)
            if last_only:
                logits = logits[-1]
            ys.append(model.output(logits).float().cpu().numpy())
            if keep_h:
                hs.append(h.float().cpu().numpy())
    finally:
        model.train(was_training)
    axis = 0 if last_only else 1
    y_hat = ys[0] if len(ys) == 1 else np.concatenate(ys, axis=axis)
    h = None if not keep_h else (hs[0] if len(hs) == 1 else np.concatenate(hs, axis=1))
    return y_hat, h


def run_trial(run_model, rule, hp, mode="test", sigma_rec=None, keep_h=True, trials=None, t_stop=None, **kwargs):
    """Generate a batch (numpy) and run it: ``(trial, y_hat, h)``.

    trials: optional index/slice of the batch to run (e.g. ``slice(0, 1)`` for one example trial);
    t_stop: run only the first ``t_stop`` steps (activity up to t depends on inputs up to t only).
    """
    from ..tasks import generate_trials

    trial = generate_trials(rule, hp, mode, **kwargs)
    x = trial.x
    if trials is not None:
        x = x[:, trials]
    if t_stop is not None:
        x = x[:t_stop]
    y_hat, h = forward(run_model, x, sigma_rec=sigma_rec, keep_h=keep_h)
    return trial, y_hat, h


def last_step_outputs(y_hat_last):
    """(fixating (B,) bool, response angle (B,) rad) from last-step outputs (B, n_output) (get_perf's readout)."""
    return y_hat_last[:, 0] > 0.5, popvec(y_hat_last[:, 1:])


# ---------------------------------------------------------------------------------------------------- figures

def new_figure(figsize=(4, 3)):
    """A pyplot figure (so a notebook shows it); ``finish_figure`` saves and closes it when given a path."""
    return plt.figure(figsize=figsize)


def finish_figure(fig, path=None, dpi=150):
    """Save ``fig`` to ``path`` (PNG/PDF by suffix; atomic) and close it; without a path leave it open. Returns
    the path (or the figure)."""
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
        _make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        plt.close(fig)
    return path


def _make_readable(path):
    """mkstemp creates 0600 files; give the result the usual permissions (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def fig_path(figdir, name, ext="png"):
    return None if figdir is None else Path(figdir) / f"{name}.{ext}"


def safe_name(text: str) -> str:
    return "".join(c for c in str(text) if c.isalnum() or c in "-_")


# ---------------------------------------------------------------------------------------------------- files

def save_npz(path, **arrays) -> Path:
    """np.savez to a temporary file in the same folder, then os.replace (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        _make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def to_jsonable(obj):
    """numpy scalars/arrays -> Python types (NaN -> None) for save_json."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    return obj
