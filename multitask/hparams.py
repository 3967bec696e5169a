"""Hyperparameter defaults for the whole project (the one place they live).

``get_default_hp(ruleset)`` returns the defaults of the original code's
``train.get_default_hp`` (Yang et al. 2019, code commit 817e23d; spec section 2.1),
plus the two optional keys the original reads with ``hp.get``: ``easy_task`` and
``mix_rule``.  Units: times in ms, rates dimensionless.

``update_hp(hp, **overrides)`` returns an updated copy and refuses unknown keys;
``validate_hp(hp)`` checks a complete dictionary.  An unknown key is never
silently ignored: both raise ``KeyError`` naming the bad key(s) and listing the
valid ones.

Keys that the training loop adds at run time (``seed``, ``rng``, ``rule_trains``,
``rules``, ``rule_probs``) and the bookkeeping keys stored by the experiment
scripts are listed in ``RUNTIME_KEYS``; they are accepted but have no default.
"""

from __future__ import annotations

import numbers

from .tasks import get_num_ring, get_num_rule, rules_dict

__all__ = [
    "get_default_hp",
    "update_hp",
    "validate_hp",
    "DEFAULT_KEYS",
    "DERIVED_KEYS",
    "RUNTIME_KEYS",
    "VALID_KEYS",
]

#: Keys computed from ``ruleset`` and ``n_eachring`` (recomputed by ``update_hp``).
DERIVED_KEYS = ("num_ring", "n_rule", "rule_start", "n_input", "n_output")

#: Keys set at run time or stored only for bookkeeping; accepted, no default.
RUNTIME_KEYS = {
    "seed": "int, random seed of the run (train() sets it)",
    "rng": "numpy.random.Generator (or int seed) used by the task generator; never saved",
    "rule_trains": "list of rules (or list of lists for sequential training) being trained",
    "rules": "flat list of all rules evaluated",
    "rule_probs": "list of sampling probabilities matching rule_trains, or None",
    "max_steps": "training length in trials (bookkeeping)",
    "display_step": "updates between evaluations/checkpoints (train() sets it)",
    "trainables": "'all' | 'input' | 'rule' (bookkeeping)",
    "load_dir": "directory a run was restored from (bookkeeping)",
    "pretrain_setup": "transfer-learning pre-training setup index (bookkeeping)",
    "posttrain_setup": "transfer-learning post-training setup index (bookkeeping)",
}

_RNN_TYPES = ("LeakyRNN", "LeakyGRU", "LSTM", "GRU")
_LOSS_TYPES = ("lsq", "cross_entropy")
_OPTIMIZERS = ("adam", "sgd")
_W_REC_INITS = ("diag", "randortho", "randgauss")
_IN_TYPES = ("normal",)


def _ruleset_or_raise(ruleset):
    if ruleset not in rules_dict:
        raise ValueError(
            f"Unknown ruleset {ruleset!r}; valid rulesets: {sorted(rules_dict)}")
    return ruleset


def _derived(ruleset, n_eachring):
    """Input/output sizes implied by a ruleset and the ring size."""
    num_ring = get_num_ring(ruleset)
    n_rule = get_num_rule(ruleset)
    return {
        "num_ring": num_ring,
        "n_rule": n_rule,
        "rule_start": 1 + num_ring * n_eachring,
        "n_input": 1 + num_ring * n_eachring + n_rule,
        "n_output": n_eachring + 1,
    }


def get_default_hp(ruleset="all"):
    """Default hyperparameters for ``ruleset`` ('all', 'mante' or 'oicdmc').

    Returns a new dict (safe to mutate).  For 'all': n_input 85, n_output 33,
    rule_start 65; 'mante': 67 inputs; 'oicdmc': 99 inputs (3 rings).

    Raises:
        ValueError: unknown ruleset (the message lists the valid names).
    """
    _ruleset_or_raise(ruleset)
    n_eachring = 32
    derived = _derived(ruleset, n_eachring)
    hp = {
        # trials per optimiser step (one rule per batch)
        "batch_size_train": 64,
        # trials per rule at evaluation (16 repeats x 32 trials)
        "batch_size_test": 512,
        # input type; only 'normal' is supported by the model
        "in_type": "normal",
        # recurrent cell: 'LeakyRNN' (paper) | 'LeakyGRU' | 'LSTM' | 'GRU'
        "rnn_type": "LeakyRNN",
        # True: separate dense layers for sensory and rule inputs
        "use_separate_input": False,
        # 'lsq' (sigmoid output + masked squared error) | 'cross_entropy' (softmax)
        "loss_type": "lsq",
        # 'adam' (beta1 .9, beta2 .999, eps 1e-8) or 'sgd'
        "optimizer": "adam",
        # activation: softplus | tanh | relu | power | retanh (paper's main nets: softplus)
        "activation": "relu",
        # time constant (ms)
        "tau": 100,
        # integration step (ms); 1 step = dt ms
        "dt": 20,
        # leak dt/tau (the model recomputes it from dt and tau)
        "alpha": 0.2,
        # decay d of h: 'euler' d = 1 - dt/tau (the paper) | 'exp' d = exp(-dt/tau) (the published PyTorch port)
        "decay_mode": "euler",
        # recurrent noise (scaled by sqrt(2/alpha) inside the nonlinearity)
        "sigma_rec": 0.05,
        # input noise (scaled by sqrt(2/alpha); std 0.0316 on every input)
        "sigma_x": 0.01,
        # recurrent weight init: 'diag' | 'randortho' | 'randgauss'
        "w_rec_init": "randortho",
        # L1 penalty on rates
        "l1_h": 0,
        # L2 penalty on rates
        "l2_h": 0,
        # L1 penalty on weights
        "l1_weight": 0,
        # L2 penalty on weights
        "l2_weight": 0,
        # L2 pull toward the initial weights
        "l2_weight_init": 0,
        # fraction of weights left (softly) trainable, None = all
        "p_weight_train": None,
        # early stop when perf_min > target_perf (strict; 1.0 never stops)
        "target_perf": 1.0,
        # units per ring (input modalities and response ring)
        "n_eachring": n_eachring,
        # number of input rings (2; 3 for 'oicdmc')
        "num_ring": derived["num_ring"],
        # number of rule units (20 'all', 2 'mante', 2 'oicdmc')
        "n_rule": derived["n_rule"],
        # index of the first rule input unit
        "rule_start": derived["rule_start"],
        # input size 1 + num_ring*n_eachring + n_rule
        "n_input": derived["n_input"],
        # output size 1 + n_eachring (fixation + response ring)
        "n_output": derived["n_output"],
        # recurrent units
        "n_rnn": 256,
        # rule set name
        "ruleset": ruleset,
        # unused name (kept from the original)
        "save_name": "test",
        # optimiser learning rate
        "learning_rate": 0.001,
        # intelligent-synapses strength c (sequential training only)
        "c_intsyn": 0,
        # intelligent-synapses damping xi (sequential training only)
        "ksi_intsyn": 0,
        # easier stimuli: DM coherences x10, delayed-DM coherences x2
        "easy_task": False,
        # separate-input nets: fixed random orthogonal mixing of rule inputs
        "mix_rule": False,
    }
    return hp


#: Keys that have a default value.
DEFAULT_KEYS = tuple(get_default_hp("all"))
#: Every key an hp dictionary may hold.
VALID_KEYS = frozenset(DEFAULT_KEYS) | frozenset(RUNTIME_KEYS)


def _check_keys(keys):
    unknown = sorted(k for k in keys if k not in VALID_KEYS)
    if unknown:
        raise KeyError(
            f"Unknown hyperparameter key(s) {unknown}. Valid keys with defaults: "
            f"{sorted(DEFAULT_KEYS)}; run-time keys: {sorted(RUNTIME_KEYS)}")


def update_hp(hp, **overrides):
    """Return a copy of ``hp`` with ``overrides`` applied.

    Unknown keys raise ``KeyError`` (listing the valid keys).  If ``ruleset`` or
    ``n_eachring`` change, the derived sizes (``DERIVED_KEYS``) are recomputed
    unless they are overridden explicitly; if ``dt`` or ``tau`` change, ``alpha``
    is recomputed as dt/tau unless it is overridden explicitly.  The result is
    checked with ``validate_hp``.
    """
    _check_keys(overrides)
    new = dict(hp)
    new.update(overrides)
    if "ruleset" in overrides or "n_eachring" in overrides:
        _ruleset_or_raise(new["ruleset"])
        for key, val in _derived(new["ruleset"], new["n_eachring"]).items():
            if key not in overrides:
                new[key] = val
    if ("dt" in overrides or "tau" in overrides) and "alpha" not in overrides:
        new["alpha"] = new["dt"] / new["tau"]
    validate_hp(new)
    return new


def _require(cond, msg):
    if not cond:
        raise ValueError(msg)


def validate_hp(hp):
    """Check a full hp dict; raise a clear error on any problem.

    Raises:
        KeyError: unknown keys (message lists valid keys) or missing default keys.
        ValueError: unknown ruleset / enumerated option, inconsistent derived
            sizes, non-positive times or sizes.
    Returns:
        ``hp`` unchanged (for chaining).
    """
    _check_keys(hp)
    missing = sorted(k for k in DEFAULT_KEYS if k not in hp)
    if missing:
        raise KeyError(f"hp is missing key(s) {missing}; start from get_default_hp(ruleset)")
    _ruleset_or_raise(hp["ruleset"])
    for key, valid in (("activation", ("softplus", "relu", "tanh", "power", "retanh")),
                       ("decay_mode", ("euler", "exp")), ("rnn_type", _RNN_TYPES), ("loss_type", _LOSS_TYPES),
                       ("optimizer", _OPTIMIZERS), ("w_rec_init", _W_REC_INITS),
                       ("in_type", _IN_TYPES)):
        _require(hp[key] in valid, f"hp[{key!r}] = {hp[key]!r}; valid values: {list(valid)}")
    for key in ("dt", "tau", "alpha", "learning_rate"):
        _require(isinstance(hp[key], numbers.Real) and hp[key] > 0,
                 f"hp[{key!r}] must be a positive number, got {hp[key]!r}")
    for key in ("batch_size_train", "batch_size_test", "n_eachring", "n_rnn"):
        _require(isinstance(hp[key], numbers.Integral) and hp[key] > 0,
                 f"hp[{key!r}] must be a positive integer, got {hp[key]!r}")
    for key in ("sigma_rec", "sigma_x", "l1_h", "l2_h", "l1_weight", "l2_weight",
                "l2_weight_init", "c_intsyn", "ksi_intsyn"):
        _require(isinstance(hp[key], numbers.Real) and hp[key] >= 0,
                 f"hp[{key!r}] must be a non-negative number, got {hp[key]!r}")
    expected = _derived(hp["ruleset"], hp["n_eachring"])
    wrong = {k: (hp[k], v) for k, v in expected.items() if hp[k] != v}
    _require(not wrong, "derived sizes inconsistent with ruleset "
             f"{hp['ruleset']!r} and n_eachring {hp['n_eachring']} "
             f"(key: (given, expected)): {wrong}")
    return hp
