"""Clusters of units by their task-variance profiles, and lesions of each cluster (spec §4.3, paper Fig. 2).

Steps (``cluster_units``):
1. active units: summed TV over all columns > 1e-3;
2. normalise each active unit's TV row by its maximum ('max', the paper; also 'sum' or 'none') -> X
   (n_active, n_keys), values in [0, 1];
3. k-means (scikit-learn ``KMeans``, n_init 20, random_state 0) for k = 2..29, silhouette score (Euclidean)
   for each; data type 'rule' keeps the k of the highest score, 'epoch' a fixed k = 10 (the paper's choice);
4. clusters renumbered by their preferred column (argmax of the cluster's summed normalised TV; ties keep
   k-means order), units sorted by cluster then by unit index.

``lesion_clusters`` silences each cluster's outgoing weights (``Run_Model.lesion_units``) and measures the
change in performance and cost per task relative to the intact network on the same 'random' trials (input and
recurrent noise on).

Differences from the original code (deliberate):
* KMeans(algorithm='full') is scikit-learn's current 'lloyd' (the same algorithm, renamed).
* k is capped at n_active - 1 (the silhouette's limit) and k-means ties/degenerate fits give NaN scores
  instead of errors; clusters with equal preferred keys keep k-means order (stable sort).
* 'epoch' clusters are ordered by the index of their preferred (rule, epoch) column (the original sorted by
  rule name and marked it "may no longer work").
* Lesions: all variants run on the same trials and noise (paired), in one batched pass; the paper drew new
  trials per variant. run_analyses on CPU uses 8 x 16 instead of 16 x 16 trials per rule (LESION_TRIALS).
* t-SNE perplexity is 30 as the paper, capped at (n_units - 1) / 3 for small networks.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..network import get_perf, task_loss
from ..tasks import generate_trials
from ._common import (analysis_hp, cluster_color, display_name, fig_path, finish_figure, new_figure, resolve,
                      save_json, to_jsonable, torch_seed)
from .variance import ACTIVE_THRESHOLD, TaskVariance, compute_variance, load_variance

__all__ = ["Clustering", "cluster_units", "normalize_variance", "lesion_clusters", "plot_variance",
           "plot_cluster_score", "plot_2d_embedding", "plot_similarity_matrix", "plot_connectivity_by_clusters",
           "plot_lesions", "embed_2d", "lesioned_forward", "run", "K_RANGE"]

#: Numbers of clusters tried (the paper's range(2, 30)).
K_RANGE = range(2, 30)
EPOCH_K = 10


@dataclass
class Clustering:
    """Result of ``cluster_units``; arrays over active units are sorted by cluster label, then unit index.

    ind_active (n_active,) unit indices; labels (n_active,) cluster 0..n_cluster-1; h_var (n_active, n_keys) raw
    TV; h_normvar (n_active, n_keys) normalised TV; k_values, scores: the silhouette sweep; n_cluster: chosen k;
    label_prefs (n_cluster,) index of each cluster's preferred key.
    """
    keys: list
    data_type: str
    normalization: str
    ind_active: np.ndarray
    labels: np.ndarray
    h_var: np.ndarray
    h_normvar: np.ndarray
    k_values: list
    scores: np.ndarray
    n_cluster: int
    label_prefs: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def unique_labels(self):
        return np.unique(self.labels)

    def members(self, label) -> np.ndarray:
        """Unit indices (in the network) of one cluster."""
        return self.ind_active[self.labels == label]

    def to_dict(self) -> dict:
        keys = [k if isinstance(k, str) else "/".join(k) for k in self.keys]
        return {"data_type": self.data_type, "normalization": self.normalization, "keys": keys,
                "n_cluster": int(self.n_cluster), "k_values": list(map(int, self.k_values)),
                "silhouette_scores": self.scores.tolist(), "ind_active": self.ind_active.tolist(),
                "labels": self.labels.tolist(),
                "cluster_preferred_key": [keys[i] for i in self.label_prefs],
                "cluster_sizes": [int((self.labels == lab).sum()) for lab in self.unique_labels]}


def normalize_variance(h_var, method="max") -> np.ndarray:
    """Row-normalise TV (n_units, n_keys): by the row max ('max'), the row sum ('sum') or not ('none')."""
    if method == "max":
        return h_var / h_var.max(axis=1, keepdims=True)
    if method == "sum":
        return h_var / h_var.sum(axis=1, keepdims=True)
    if method == "none":
        return h_var.copy()
    raise ValueError(f"normalization must be 'max', 'sum' or 'none', got {method!r}")


def _kmeans(X, k, n_init, random_state):
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():  # "found fewer distinct clusters than k" on degenerate data: handled below
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(X).labels_


def _silhouette(X, labels):
    from sklearn.metrics import silhouette_score

    n_lab = len(np.unique(labels))
    if n_lab < 2 or n_lab > X.shape[0] - 1:
        return np.nan
    return float(silhouette_score(X, labels))


def cluster_units(h_var_all, keys, data_type="rule", normalization="max", k_range=K_RANGE, n_init=20,
                  random_state=0, threshold=ACTIVE_THRESHOLD, fixed_k=None) -> Clustering:
    """Cluster units by normalised task variance.

    Args:
        h_var_all: (n_units, n_keys) task variances.
        keys: column names (rules, or (rule, epoch) tuples).
        data_type: 'rule' (k at the silhouette maximum) or 'epoch' (k = 10 unless ``fixed_k``).
        k_range: numbers of clusters to try (capped at n_active - 1, the silhouette's limit).
        fixed_k: use this k instead of the silhouette maximum (only it is fitted).
    """
    h_var_all = np.asarray(h_var_all, dtype=np.float64)
    keys = list(keys)
    if h_var_all.ndim != 2 or h_var_all.shape[1] != len(keys):
        raise ValueError(f"h_var_all must be (n_units, {len(keys)}), got {h_var_all.shape}")
    ind_active = np.where(h_var_all.sum(axis=1) > threshold)[0]
    if len(ind_active) < 3:
        raise ValueError(f"only {len(ind_active)} active units (summed task variance > {threshold}); "
                         "clustering needs at least 3 -- is the network trained?")
    h_var = h_var_all[ind_active]
    X = normalize_variance(h_var, normalization)
    if fixed_k is None and data_type == "epoch":
        fixed_k = EPOCH_K
    max_k = X.shape[0] - 1
    if fixed_k is not None:
        k_values = [int(min(fixed_k, max_k))]
    else:
        k_values = [int(k) for k in k_range if 2 <= k <= max_k]
        if not k_values:
            raise ValueError(f"no k in {list(k_range)} fits {X.shape[0]} active units")
    labels_list, scores = [], []
    for k in k_values:
        labels = _kmeans(X, k, n_init, random_state)
        labels_list.append(labels)
        scores.append(_silhouette(X, labels))
    scores = np.array(scores, dtype=np.float64)
    best = 0 if fixed_k is not None or np.all(np.isnan(scores)) else int(np.nanargmax(scores))
    labels = labels_list[best]
    n_cluster = k_values[best]
    # Renumber clusters by preferred key, then sort units by cluster (stable: unit index within a cluster).
    present = np.unique(labels)
    prefs = np.array([np.argmax(X[labels == lab].sum(axis=0)) for lab in present])
    order = np.argsort(prefs, kind="stable")
    relabel = np.empty(labels.max() + 1, dtype=np.int64)
    relabel[present[order]] = np.arange(len(present))
    labels = relabel[labels]
    ind_sort = np.argsort(labels, kind="stable")
    return Clustering(keys=keys, data_type=data_type, normalization=normalization, ind_active=ind_active[ind_sort],
                      labels=labels[ind_sort], h_var=h_var[ind_sort], h_normvar=X[ind_sort], k_values=k_values,
                      scores=scores, n_cluster=int(n_cluster), label_prefs=prefs[order])


# ---------------------------------------------------------------------------------------------------- lesions

@torch.no_grad()
def lesioned_forward(run_model, x, keep_masks, sigma_rec=None):
    """Run ``V`` lesioned copies of the network on the same trials in one batched pass.

    Lesioning units (``Run_Model.lesion_units``) zeroes their outgoing recurrent and readout weights, which is
    the same as multiplying their rates by 0 wherever the rates feed the recurrence and the readout; so
    variant v uses ``h * keep_masks[v]`` there. All variants see the same recurrent-noise stream (drawn from
    torch's generator as the compiled op does).

    Args:
        x: (T, B, n_input) tensor on the model's device.
        keep_masks: (V, n_rnn) 1 = intact unit, 0 = lesioned.
        sigma_rec: recurrent-noise std inside f (default: the model's, sqrt(2/alpha) * sigma_rec).
    Returns:
        logits (T, V, B, n_output).
    """
    from rate_rnn.ops import draw_seed, noise_tensor
    from rate_rnn.reference import activation_fn

    model = run_model.model
    if not getattr(model, "native", False):  # a foreign RNNLayer: one lesioned copy per variant
        return _lesioned_forward_copies(run_model, x, keep_masks)
    layer = model.rnn
    f = activation_fn(layer.activation) if layer.activation is not None else layer.rnncell.nonlinearity
    U = layer.input_drive(x)  # (T, B, N), bias included
    T, B, N = U.shape
    sigma = layer.sigma_rec if sigma_rec is None else float(sigma_rec)
    noise = noise_tensor((T, B, N), sigma, draw_seed(), U.dtype, U.device) if sigma > 0 else None
    m = torch.as_tensor(keep_masks, dtype=U.dtype, device=U.device).unsqueeze(1)  # (V, 1, N)
    w_t = model.weight_hh.t()
    decay = layer.decay
    h = U.new_zeros(m.shape[0], B, N)
    states = []
    for t in range(T):
        z = U[t] + (h * m) @ w_t
        if noise is not None:
            z = z + noise[t]
        h = decay * h + (1 - decay) * f(z)
        states.append(h)
    return model.readout(torch.stack(states) * m)


@torch.no_grad()
def _lesioned_forward_copies(run_model, x, keep_masks):
    import copy

    out = []
    for mask in np.asarray(keep_masks):
        variant = copy.deepcopy(run_model)
        variant.lesion_units(np.where(mask == 0)[0])
        logits, _ = variant.model(x)
        out.append(logits)
    return torch.stack(out, dim=1)


@torch.no_grad()
def lesion_clusters(run_model_or_dir, clustering: Clustering, rules=None, n_rep=16, batch_size=16, device=None,
                    seed=0) -> dict:
    """Performance and cost per rule, intact and with each cluster lesioned.

    For each rule ``n_rep`` 'random' batches of ``batch_size`` trials (the paper: 16 x 16, input and recurrent
    noise on) are run through the intact network and every lesioned variant at once (``lesioned_forward``):
    the same trials and noise for all variants, a paired comparison (the paper drew fresh trials per variant).

    Returns dict: rules; perf, cost (n_cluster + 1, n_rules) (row 0 intact); perf_change, cost_change
    (n_cluster, n_rules) = lesioned - intact; n_trials_per_rule.
    """
    run_model, _ = resolve(run_model_or_dir, device)
    hp = analysis_hp(run_model, offset=1)
    rules = list(rules or hp["rules"])
    model = run_model.model
    dev = next(model.parameters()).device
    masks = np.ones((len(clustering.unique_labels) + 1, hp["n_rnn"]), dtype=np.float32)
    for v, lab in enumerate(clustering.unique_labels):
        masks[v + 1, clustering.members(lab)] = 0
    perf = np.zeros((len(masks), len(rules)))
    cost = np.zeros_like(perf)
    with torch_seed(seed):
        for ir, rule in enumerate(rules):
            p, c = [], []
            for _ in range(n_rep):
                trial = generate_trials(rule, hp, "random", batch_size=batch_size).to(dev)
                logits = lesioned_forward(run_model, trial.x, masks)
                y_loc = trial.y_loc.cpu().numpy()
                p.append([get_perf(model.output(logits[:, v]).cpu().numpy(), y_loc).mean()
                          for v in range(len(masks))])
                c.append([task_loss(logits[:, v], trial, hp["loss_type"]).item() for v in range(len(masks))])
            perf[:, ir], cost[:, ir] = np.mean(p, axis=0), np.mean(c, axis=0)
    return {"rules": rules, "perf": perf, "cost": cost, "perf_change": perf[1:] - perf[0],
            "cost_change": cost[1:] - cost[0], "n_trials_per_rule": n_rep * batch_size}


# ---------------------------------------------------------------------------------------------------- figures

def _key_names(keys):
    return [display_name(k) if isinstance(k, str) else f"{display_name(k[0])} {k[1]}" for k in keys]


def _cluster_bar(ax, labels, vertical=False, numbers=True):
    for i, lab in enumerate(np.unique(labels)):
        idx = np.where(labels == lab)[0]
        lo, hi = idx[0], idx[-1] + 1
        if vertical:
            ax.plot([0, 0], [len(labels) - lo, len(labels) - hi], lw=4, solid_capstyle="butt",
                    color=cluster_color(i))
        else:
            ax.plot([lo, hi], [0, 0], lw=4, solid_capstyle="butt", color=cluster_color(i))
            if numbers:
                ax.text((lo + hi) / 2, -0.6, str(i + 1), fontsize=6, ha="center", va="top", color=cluster_color(i))
    if vertical:
        ax.set_ylim(0, len(labels))
        ax.set_xlim(-1, 1)
    else:
        ax.set_xlim(0, len(labels))
        ax.set_ylim(-1, 1)
    ax.axis("off")


def plot_variance(cl: Clustering, path=None):
    """Paper Fig. 2: normalised TV (keys x units sorted by cluster), 'hot' colour map 0-1, cluster bar below."""
    n_keys = len(cl.keys)
    fig = new_figure((max(4.5, 0.012 * len(cl.labels) + 3.5), max(2.5, 0.16 * n_keys + 1.0)))
    ax = fig.add_axes([0.25, 0.2, 0.6, 0.7])
    im = ax.imshow(cl.h_normvar.T, cmap="hot", aspect="auto", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks(range(n_keys))
    ax.set_yticklabels(_key_names(cl.keys), fontsize=6 if n_keys <= 25 else 4)
    ax.set_xticks([])
    ax.set_title(f"Units ({len(cl.labels)} active, {cl.n_cluster} clusters)", fontsize=7)
    ax.tick_params(length=0)
    cax = fig.add_axes([0.87, 0.2, 0.02, 0.7])
    cb = fig.colorbar(im, cax=cax, ticks=[0, 1])
    cb.set_label("Normalized task variance" if cl.normalization != "none" else "Task variance", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    _cluster_bar(fig.add_axes([0.25, 0.1, 0.6, 0.08]), cl.labels)
    return finish_figure(fig, path)


def plot_cluster_score(cl: Clustering, path=None):
    """Silhouette score vs number of clusters, chosen k marked."""
    fig = new_figure((3, 2.4))
    ax = fig.add_subplot(111)
    ax.plot(cl.k_values, cl.scores, "o-", ms=3, color="black")
    ax.axvline(cl.n_cluster, color="xkcd:cerulean", lw=1, ls="--")
    ax.set_xlabel("Number of clusters", fontsize=8)
    ax.set_ylabel("Silhouette score", fontsize=8)
    ax.set_title(f"Chosen number of clusters: {cl.n_cluster}", fontsize=8)
    ax.set_ylim(0, max(0.32, float(np.nanmax(cl.scores)) * 1.1 if np.isfinite(cl.scores).any() else 0.32))
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    fig.tight_layout()
    return finish_figure(fig, path)


def embed_2d(X, method="PCA", random_state=0) -> np.ndarray:
    """2-D embedding (n, 2) of rows of X: 'PCA', 'tSNE' (exact, perplexity 30 capped at (n - 1) / 3, learning
    rate 100, PCA init) or 'MDS' (metric, n_init 10, max_iter 1000)."""
    n = X.shape[0]
    if method == "PCA":
        from sklearn.decomposition import PCA
        return PCA(n_components=2).fit_transform(X)
    if method == "tSNE":
        from sklearn.manifold import TSNE
        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
        return TSNE(n_components=2, random_state=random_state, init="pca", method="exact", learning_rate=100,
                    perplexity=perplexity).fit_transform(X)
    if method == "MDS":
        from sklearn.manifold import MDS
        return MDS(n_components=2, metric=True, n_init=10, max_iter=1000,
                   random_state=random_state).fit_transform(X)
    raise ValueError(f"method must be 'PCA', 'tSNE' or 'MDS', got {method!r}")


def plot_2d_embedding(cl: Clustering, methods=("PCA", "tSNE"), path=None):
    """Units' normalised TV profiles embedded in 2-D, coloured by cluster (one panel per method)."""
    fig = new_figure((2.6 * len(methods), 2.6))
    coords = {}
    for i, method in enumerate(methods):
        Y = embed_2d(cl.h_normvar, method)
        coords[method] = Y
        ax = fig.add_subplot(1, len(methods), i + 1)
        for il, lab in enumerate(cl.unique_labels):
            m = cl.labels == lab
            ax.scatter(Y[m, 0], Y[m, 1], s=8, color=cluster_color(il), label=str(il + 1))
        ax.set_title(method, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out = finish_figure(fig, path)
    cl.extra["embedding"] = coords
    return out


def plot_similarity_matrix(cl: Clustering, path=None):
    """Cosine similarity between units' normalised TV profiles, units sorted by cluster."""
    from sklearn.metrics.pairwise import cosine_similarity

    sim = cosine_similarity(cl.h_normvar)
    fig = new_figure((3.6, 3.4))
    ax = fig.add_axes([0.18, 0.1, 0.62, 0.72])
    im = ax.imshow(sim, cmap="hot", interpolation="nearest", vmin=0, vmax=1)
    ax.axis("off")
    cb = fig.colorbar(im, cax=fig.add_axes([0.84, 0.1, 0.03, 0.72]), ticks=[0, 1])
    cb.set_label("Similarity", fontsize=7)
    _cluster_bar(fig.add_axes([0.18, 0.83, 0.62, 0.04]), cl.labels, numbers=False)
    _cluster_bar(fig.add_axes([0.14, 0.1, 0.04, 0.72]), cl.labels, vertical=True)
    return finish_figure(fig, path)


def _weights(run_model):
    m = run_model.model
    cell = m.rnn.rnncell
    w_in = m.weight_ih.detach().cpu().numpy()
    w_rec = m.weight_hh.detach().cpu().numpy()
    w_out = m.readout.weight.detach().cpu().numpy()
    b_rec = cell.bias.detach().cpu().numpy() if cell.bias is not None else np.zeros(w_rec.shape[0])
    b_out = m.readout.bias.detach().cpu().numpy()
    return w_in, w_rec, w_out, b_rec, b_out


def connectivity_order(run_model, cl: Clustering) -> np.ndarray:
    """Active units sorted by cluster, then by preferred input direction argmax(W_in(mod 1) + W_in(mod 2))."""
    hp = run_model.hp
    nr = hp["n_eachring"]
    w_in = run_model.model.weight_ih.detach().cpu().numpy()[cl.ind_active]
    prefs = np.argmax(w_in[:, 1:nr + 1] + w_in[:, nr + 1:2 * nr + 1], axis=1)
    return np.lexsort((prefs, cl.labels))


def plot_connectivity_by_clusters(run_model_or_dir, cl: Clustering, path=None):
    """W_rec (to x from), input blocks (fixation, rings, rules), output weights (fixation, ring) and biases of
    the active units, sorted by cluster then preferred input direction. Colour range per block: median +- half
    the 5-95 percentile range (coolwarm)."""
    run_model, _ = resolve(run_model_or_dir)
    hp = run_model.hp
    w_in, w_rec, w_out, b_rec, b_out = _weights(run_model)
    order = connectivity_order(run_model, cl)
    units = cl.ind_active[order]
    labels = cl.labels[order]
    nr, rs = hp["n_eachring"], hp["rule_start"]
    n_ring = (rs - 1) // nr
    w_in, w_rec, w_out, b_rec = w_in[units], w_rec[np.ix_(units, units)], w_out[:, units], b_rec[units]
    blocks_in = [("fix", w_in[:, [0]])] + [(f"mod {k + 1}", w_in[:, 1 + k * nr:1 + (k + 1) * nr])
                                          for k in range(n_ring)] + [("rule", w_in[:, rs:])]
    nh = len(units)
    gap = max(2, nh // 40)
    widths = [b.shape[1] for _, b in blocks_in]
    # column layout: [input blocks with gaps] gap [cluster bar] [W_rec] gap [b_rec]
    cols = []
    for w in widths:
        cols += [w, gap]
    cols += [gap, nh, gap, max(1, gap // 2)]
    rows = [gap, nh, gap, 1, gap, w_out.shape[0] - 1]
    fig = new_figure((7, 7 * sum(rows) / sum(cols) + 0.4))
    gs = fig.add_gridspec(len(rows), len(cols), width_ratios=cols, height_ratios=rows, wspace=0, hspace=0,
                          left=0.05, right=0.95, bottom=0.05, top=0.92)

    def show(ax, data, title=None):
        lo, mid, hi = np.percentile(data, [5, 50, 95])
        half = max((hi - lo) / 2, 1e-12)
        ax.imshow(data, cmap="coolwarm", aspect="auto", interpolation="nearest", vmin=mid - half, vmax=mid + half)
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=6)

    for i, (name, block) in enumerate(blocks_in):
        show(fig.add_subplot(gs[1, 2 * i]), block, name)
    c_rec = 2 * len(blocks_in) + 1
    ax_rec = fig.add_subplot(gs[1, c_rec])
    show(ax_rec, w_rec)
    ax_rec.set_xlabel("W_rec (rows: to, columns: from)", fontsize=6)
    show(fig.add_subplot(gs[1, c_rec + 2]), b_rec[:, None], "b")
    show(fig.add_subplot(gs[3, c_rec]), w_out[[0]])
    show(fig.add_subplot(gs[5, c_rec]), w_out[1:])
    _cluster_bar(fig.add_subplot(gs[0, c_rec]), labels, numbers=False)
    _cluster_bar(fig.add_subplot(gs[1, c_rec - 1]), labels, vertical=True)
    ax = fig.add_subplot(gs[3:, 0:c_rec - 1])
    ax.axis("off")
    ax.text(0.95, 0.8, "W_out fixation", fontsize=6, ha="right")
    ax.text(0.95, 0.3, "W_out ring", fontsize=6, ha="right")
    return finish_figure(fig, path)


def plot_lesions(lesions: dict, cl: Clustering, path=None):
    """Change in performance (left) and cost (right) per task after lesioning each cluster; coolwarm +-0.5."""
    rules = lesions["rules"]
    fig = new_figure((6, max(2.5, 0.16 * len(rules) + 1.2)))
    for i, (key, label) in enumerate((("perf_change", "Performance change"), ("cost_change", "Cost change"))):
        ax = fig.add_axes([0.17 + 0.45 * i, 0.2, 0.28, 0.7])
        im = ax.imshow(lesions[key].T, cmap="coolwarm", aspect="auto", interpolation="nearest", vmin=-0.5,
                       vmax=0.5)
        ax.set_yticks(range(len(rules)))
        ax.set_yticklabels([display_name(r) for r in rules] if i == 0 else [], fontsize=6)
        ax.set_xticks([])
        ax.tick_params(length=0)
        fig.text(0.17 + 0.45 * i + 0.14, 0.02, "Lesioned cluster", fontsize=7, ha="center")
        cb = fig.colorbar(im, cax=fig.add_axes([0.46 + 0.45 * i, 0.2, 0.012, 0.7]), ticks=[-0.5, 0, 0.5])
        cb.set_label(label, fontsize=7)
        cb.ax.tick_params(labelsize=6)
        bar = fig.add_axes([0.17 + 0.45 * i, 0.12, 0.28, 0.06])
        for il in range(lesions[key].shape[0]):
            bar.plot([il, il + 1], [0, 0], lw=4, solid_capstyle="butt", color=cluster_color(il))
            bar.text(il + 0.5, -0.6, str(il + 1), fontsize=6, ha="center", va="top", color=cluster_color(il))
        bar.set_xlim(0, lesions[key].shape[0])
        bar.set_ylim(-1, 1)
        bar.axis("off")
    return finish_figure(fig, path)


# ---------------------------------------------------------------------------------------------------- run

def _load_or_compute_variance(run_model, run_dir):
    """The run's variance files when they are newer than its checkpoint, else computed (and written) now."""
    from ..train import CHECKPOINT

    out = {}
    ckpt_time = (Path(run_dir) / CHECKPOINT).stat().st_mtime_ns
    for data_type in ("rule", "epoch"):
        path = Path(run_dir) / f"variance_{data_type}.npz"
        if path.exists() and path.stat().st_mtime_ns >= ckpt_time:
            out[data_type] = load_variance(path)
    if len(out) < 2:
        res = compute_variance(run_model)
        for data_type in ("rule", "epoch"):
            res[data_type].save(Path(run_dir) / f"variance_{data_type}.npz")
            out[data_type] = res[data_type]
    return out


#: Lesion trials per rule used by ``run``: (batches, trials per batch). 'paper' = 16 x 16; 'fast' (run_analyses'
#: choice on CPU) = 8 x 16, because the cost grows with the number of clusters (every cluster is one more
#: network variant on every trial); the paired design keeps the change estimates' noise low.
LESION_TRIALS = {"paper": (16, 16), "fast": (8, 16)}


def run(run_model, run_dir, figdir=None, trial_counts="paper") -> dict:
    """The 'clustering' analysis of run_analyses: clustering.json, n_cluster into log.json, figures."""
    from ..train import load_log

    run_dir = Path(run_dir)
    tv = _load_or_compute_variance(run_model, run_dir)
    tv_rule: TaskVariance = tv["rule"]
    cl = cluster_units(tv_rule.h_var_all, tv_rule.keys, "rule")
    files = [plot_variance(cl, fig_path(figdir, "cluster_variance_rule")),
             plot_cluster_score(cl, fig_path(figdir, "cluster_silhouette")),
             plot_2d_embedding(cl, path=fig_path(figdir, "cluster_embedding")),
             plot_similarity_matrix(cl, fig_path(figdir, "cluster_similarity")),
             plot_connectivity_by_clusters(run_model, cl, fig_path(figdir, "cluster_connectivity"))]
    result = cl.to_dict()
    try:
        cl_epoch = cluster_units(tv["epoch"].h_var_all, tv["epoch"].keys, "epoch")
        files.append(plot_variance(cl_epoch, fig_path(figdir, "cluster_variance_epoch")))
        result["epoch"] = cl_epoch.to_dict()
    except ValueError as err:  # too few active units / keys
        result["epoch"] = {"skipped": str(err)}
    n_rep, batch = LESION_TRIALS[trial_counts]
    les = lesion_clusters(run_model, cl, n_rep=n_rep, batch_size=batch)
    files.append(plot_lesions(les, cl, fig_path(figdir, "cluster_lesions")))
    result["lesions"] = {k: v for k, v in les.items()}
    save_json(to_jsonable(result), run_dir / "clustering.json")
    files.append(run_dir / "clustering.json")
    log_path = run_dir / "log.json"
    if log_path.exists():
        log = load_log(run_dir)
        log["n_cluster"] = int(cl.n_cluster)
        save_json(log, log_path)
        files.append(log_path)
    worst = les["perf_change"].min() if les["perf_change"].size else float("nan")
    return {"files": files, "results": {"clustering": cl, "lesions": les},
            "summary": f"{cl.n_cluster} clusters of {len(cl.labels)} active units (silhouette "
                       f"{np.nanmax(cl.scores):.3f}); largest lesion drop {worst:+.2f}"}
