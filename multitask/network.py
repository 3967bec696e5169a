"""The paper's network (LeakyRNN, spec §2.2) on the rate_rnn op, its losses and the performance metric.

Row-vector TF kernels are stored in torch layout: ``W_in`` is ``rnn.rnncell.weight_ih`` (n_rnn, n_input) and
``W_rec`` is ``rnn.rnncell.weight_hh`` (n_rnn, n_rnn) with ``W_hh[i, j]`` from unit j to unit i (TF's
``W_rec[j, i]``); the readout is ``readout`` (n_output, n_rnn).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

import rate_rnn

from .tasks import generate_trials

#: Scale of the initial recurrent weights per activation (spec §2.2: w_rec_start).
W_REC_START = {"softplus": 0.5, "relu": 0.5, "tanh": 1.0, "power": 0.01, "retanh": 0.5}
ACTIVATIONS = tuple(W_REC_START)
#: Tolerance of a correct response: 0.2*pi (36 degrees).
RESPONSE_TOLERANCE = 0.2 * np.pi


def decay_from_hp(hp) -> float:
    """d = 1 - dt/tau (the paper's Euler step), or exp(-dt/tau) with hp['decay_mode'] == 'exp' (the port's)."""
    alpha = hp["dt"] / hp["tau"]
    return math.exp(-alpha) if hp["decay_mode"] == "exp" else 1.0 - alpha


def recurrent_noise_std(hp) -> float:
    """Std of the noise added inside f every step: sqrt(2/alpha) * sigma_rec (spec §2.2)."""
    return math.sqrt(2.0 / (hp["dt"] / hp["tau"])) * hp["sigma_rec"]


def gen_ortho_matrix(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal matrix from the QR decomposition of a Gaussian matrix (Haar, with sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def _nonlinearity(activation: str, layer_cls):
    """Our layer takes names; a foreign RNNLayer (the published port's) gets the torch module it expects."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"hp['activation'] must be one of {list(ACTIVATIONS)}, got {activation!r}")
    if issubclass(layer_cls, rate_rnn.RNNLayer):
        return activation
    modules = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "softplus": nn.Softplus()}
    if activation in modules:
        return modules[activation]
    return rate_rnn.reference.activation_fn(activation)


class Model(nn.Module):
    """LeakyRNN + readout. ``forward(x (T, B, n_input)) -> (logits (T, B, n_output), h (T, B, n_rnn))``.

    Recurrent noise (sqrt(2/alpha) * sigma_rec, inside f) is on in training AND evaluation, as the paper's code;
    ``sigma_rec_override`` (e.g. 0 for the variance analysis) replaces it.
    """

    def __init__(self, hp, RNNLayer=None):
        super().__init__()
        layer_cls = RNNLayer or rate_rnn.RNNLayer
        if hp["rnn_type"] != "LeakyRNN" or hp["use_separate_input"]:
            raise NotImplementedError(f"only rnn_type='LeakyRNN' without separate input is implemented, got "
                                      f"rnn_type={hp['rnn_type']!r}, use_separate_input={hp['use_separate_input']}")
        n_in, n_rnn, n_out = hp["n_input"], hp["n_rnn"], hp["n_output"]
        nonlinearity = _nonlinearity(hp["activation"], layer_cls)
        self.native = issubclass(layer_cls, rate_rnn.RNNLayer)
        if self.native:
            self.rnn = layer_cls(n_in, n_rnn, nonlinearity, decay_from_hp(hp), True,
                                 sigma_rec=recurrent_noise_std(hp))
        else:
            self.rnn = layer_cls(n_in, n_rnn, nonlinearity, decay_from_hp(hp), True)
            if hp["sigma_rec"] > 0:
                warnings.warn(f"{layer_cls.__name__} has no recurrent noise: sigma_rec={hp['sigma_rec']} is ignored",
                              RuntimeWarning, stacklevel=2)
        self.readout = nn.Linear(n_rnn, n_out)
        self.n_rnn, self.loss_type = n_rnn, hp["loss_type"]
        self._init_weights(hp)

    def _init_weights(self, hp):
        rng = np.random.default_rng(hp.get("seed", 0))  # the paper seeds W_in/W_rec from RandomState(seed)
        n_in, n_rnn = hp["n_input"], hp["n_rnn"]
        cell = getattr(self.rnn, "rnncell", None)
        if cell is not None:
            w_in = rng.standard_normal((n_in, n_rnn)) / np.sqrt(n_in)  # w_in_start = 1
            init = hp["w_rec_init"]
            if init == "diag":
                w_rec = np.eye(n_rnn)
            elif init == "randortho":
                w_rec = gen_ortho_matrix(n_rnn, rng)
            else:
                w_rec = rng.standard_normal((n_rnn, n_rnn)) / np.sqrt(n_rnn)
            w_rec = W_REC_START[hp["activation"]] * w_rec
            with torch.no_grad():
                cell.weight_ih.copy_(torch.from_numpy(w_in.T))
                cell.weight_hh.copy_(torch.from_numpy(w_rec.T))
                if cell.bias is not None:
                    cell.bias.zero_()
        with torch.random.fork_rng(devices=[]):  # seeded like the rest, without touching the caller's generator
            torch.manual_seed(hp.get("seed", 0))
            nn.init.xavier_uniform_(self.readout.weight)  # TF glorot_uniform
        nn.init.zeros_(self.readout.bias)

    @property
    def weight_ih(self):
        return self.rnn.rnncell.weight_ih

    @property
    def weight_hh(self):
        return self.rnn.rnncell.weight_hh

    def forward(self, x, sigma_rec_override=None):
        if sigma_rec_override is not None and self.native:
            saved, self.rnn.sigma_rec = self.rnn.sigma_rec, float(sigma_rec_override)
            try:
                h, _ = self.rnn(x)
            finally:
                self.rnn.sigma_rec = saved
        else:
            h, _ = self.rnn(x, torch.zeros(1, x.shape[1], self.n_rnn, dtype=x.dtype, device=x.device))
        return self.readout(h), h

    def output(self, logits):
        """y_hat: sigmoid for 'lsq', softmax over all outputs for cross-entropy."""
        return torch.sigmoid(logits) if self.loss_type == "lsq" else torch.softmax(logits, dim=-1)

    def weight_list(self):
        """The weights the paper regularises: the fused input+recurrent kernel and the readout (no biases)."""
        return [self.weight_ih, self.weight_hh, self.readout.weight]

    @torch.no_grad()
    def lesion_units(self, units):
        """Silence units' outgoing connections (recurrent and readout); their inputs are kept (spec §2.2)."""
        idx = torch.as_tensor(np.asarray(units, dtype=np.int64).reshape(-1))
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_rnn):
            raise ValueError(f"units must lie in [0, {self.n_rnn}), got {units}")
        self.weight_hh[:, idx] = 0
        self.readout.weight[:, idx] = 0


def task_loss(logits, trial, loss_type):
    """cost_lsq of spec §2.2: lsq = mean((c_mask * (y - sigmoid(z)))^2); CE = mean(c_mask_t * CE_t)."""
    if loss_type == "lsq":
        return ((trial.c_mask * (trial.y - torch.sigmoid(logits))) ** 2).mean()
    ce = -(trial.y * torch.log_softmax(logits, dim=-1)).sum(-1)
    return (trial.c_mask * ce).mean()


def popvec(y):
    """Population-vector angle in [0, 2pi) of ring activity ``y`` (..., n_ring) (numpy)."""
    n = y.shape[-1]
    pref = np.arange(n) * (2 * np.pi / n)
    return np.mod(np.arctan2(y @ np.sin(pref), y @ np.cos(pref)), 2 * np.pi)


def get_perf(y_hat, y_loc):
    """Per-trial performance (0/1) at the last step (spec §3.1). y_hat (T, B, n_out), y_loc (T, B); numpy.

    Fixation trials (y_loc < 0) are correct iff the fixation output stays > 0.5; response trials iff fixation
    is broken and the population vector lies within 0.2*pi of the target (wrapping at 0/2pi).
    """
    y_hat, y_loc = np.asarray(y_hat)[-1], np.asarray(y_loc)[-1]
    fixating = y_hat[:, 0] > 0.5
    diff = np.abs(popvec(y_hat[:, 1:]) - y_loc)
    correct_loc = np.minimum(diff, 2 * np.pi - diff) < RESPONSE_TOLERANCE
    should_fix = y_loc < 0
    return np.where(should_fix, fixating, correct_loc & ~fixating).astype(np.float64)


class Run_Model(nn.Module):  # noqa: N801 (the published API's name)
    """The published API: ``Run_Model(hp, RNNLayer)``; ``run_model(rule, batch_size, mode)`` returns
    ``(loss, loss_reg, y_hat (T,B,n_out) numpy, h (T,B,n_rnn) numpy, trial)``."""

    def __init__(self, hp, RNNLayer=None, device=None):
        super().__init__()
        self.hp = hp
        self.model = Model(hp, RNNLayer)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model.to(self.device)
        self._anchor = None  # (initial weights, p_weight_train masks) for l2_weight_init / p_weight_train

    def set_anchor(self):
        """Remember the current weights as the anchor of l2_weight_init and p_weight_train (spec §2.2)."""
        hp = self.hp
        masks = None
        if hp["p_weight_train"] is not None:
            masks = []
            for w in self.model.weight_list():
                m = np.linspace(0, 1, w.numel())
                hp["rng"].shuffle(m)
                masks.append(torch.from_numpy((m > hp["p_weight_train"]).reshape(w.shape)).to(w))
        self._anchor = ([w.detach().clone() for w in self.model.weight_list()], masks)

    def generate_trials(self, rule, hp, mode, batch_size=None, **kwargs):
        device = self.device if self.device.type == "cuda" else None
        trial = generate_trials(rule, hp, mode, batch_size=batch_size, device=device, **kwargs)
        return trial if device is not None else trial.to(self.device)

    def calculate_loss(self, logits, h, trial, hp):
        """(cost_lsq, cost_reg) of spec §2.2."""
        loss = task_loss(logits, trial, hp["loss_type"])
        reg = logits.new_zeros(())
        if hp["l1_h"]:
            reg = reg + hp["l1_h"] * h.abs().mean()
        if hp["l2_h"]:
            reg = reg + hp["l2_h"] * h.square().sum() / 2
        w_ih, w_hh, w_out = self.model.weight_list()
        if hp["l1_weight"]:  # one mean over the fused [W_in; W_rec] kernel, one over the readout
            kernel_mean = (w_ih.abs().sum() + w_hh.abs().sum()) / (w_ih.numel() + w_hh.numel())
            reg = reg + hp["l1_weight"] * (kernel_mean + w_out.abs().mean())
        if hp["l2_weight"]:
            reg = reg + hp["l2_weight"] * sum(w.square().sum() for w in (w_ih, w_hh, w_out)) / 2
        if self._anchor is not None:
            anchors, masks = self._anchor
            weights = self.model.weight_list()
            if hp["l2_weight_init"]:
                reg = reg + hp["l2_weight_init"] * sum(((w - a) ** 2).sum() for w, a in zip(weights, anchors)) / 2
            if masks is not None:
                reg = reg + sum((((w - a) * 0.1 * m) ** 2).sum() for w, a, m in zip(weights, anchors, masks)) / 2
        return loss, reg

    def run_trial(self, trial, sigma_rec_override=None):
        """Tensors for one Trial: (logits, h, loss, loss_reg)."""
        logits, h = self.model(trial.x, sigma_rec_override)
        loss, reg = self.calculate_loss(logits, h, trial, self.hp)
        return logits, h, loss, reg

    def forward(self, rule, batch_size=None, mode="random", **kwargs):
        trial = self.generate_trials(rule, self.hp, mode, batch_size, **kwargs)
        logits, h, loss, reg = self.run_trial(trial)
        y_hat = self.model.output(logits)
        return loss, reg, y_hat.detach().cpu().numpy(), h.detach().cpu().numpy(), trial

    def lesion_units(self, units):
        self.model.lesion_units(units)
