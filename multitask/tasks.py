"""The cognitive task suite of Yang et al. (2019, Nature Neuroscience).

Tasks are data plus a few shared helpers: every rule is one small function that
draws (or sets) its stimulus parameters and returns a ``_Plan`` (stimuli, go time,
response locations, epochs); one builder turns any plan into the arrays.

Conventions (spec section 1)
----------------------------
* Time-major arrays; one step = ``hp['dt']`` ms; every duration is converted
  with ``int(ms / dt)`` (truncation), as the original.
* Inputs ``x`` (T, B, n_input): unit 0 fixation; ring k (k = 1, 2[, 3]) is
  units ``1 + (k-1)*n_eachring ... k*n_eachring``; rule units from
  ``hp['rule_start']``.  A stimulus at angle psi with strength s adds
  ``s * 0.8 * exp(-0.5 * (d / (pi/8))**2)`` (d = circular distance to each
  unit's preferred angle ``2*pi*k/n_eachring``); stimuli in one ring add.
* Outputs ``y`` (T, B, n_output): unit 0 fixation, units 1.. response ring.
  lsq: baseline 0.05, fixation 0.8 while fixating, ring bump 0.05 + 0.8*exp(..)
  from the go time to the end.  Cross-entropy (any ``loss_type`` other than
  'lsq', as the original): baseline 0, fixation 1, one-hot at the ring unit
  nearest the target.
* ``y_loc`` (T, B): -1 while the network must fixate (to the end for no-go
  trials), else the response angle (radians in [0, 2*pi)).
* ``c_mask``: lsq (T, B, n_output) -- NOT reshaped to 2-D as the original
  (reshape to (T*B, n_output) to compare); 0 for the first 100 ms, 1 until the
  go time, 0 in the 100 ms grace period after it, 5 afterwards, fixation
  column x2 (values 0, 1, 2, 5, 10).  Cross-entropy: (T, B), same 0/1/5 pattern
  without the fixation doubling, divided by its mean (mean 1).
* ``epochs``: name -> (start, end) in steps; None = trial start / end.

Modes: 'random' (training; timing and, for Go/Anti/DMS/DMC tasks, the
modality are drawn ONCE PER BATCH, so a batch has one length; locations,
strengths and match flags per trial), 'test' (the deterministic condition grid
of spec section 1.5, own batch size), 'psychometric' (caller gives ``params``;
required keys in ``PSYCHOMETRIC_KEYS``, times in ms).

Randomness comes only from ``hp['rng']`` (a ``numpy.random.Generator``; an int
seed is accepted and replaced in ``hp`` by a Generator so successive calls
continue one stream).  Same seed -> identical trials.

Quirks of the original reproduced on purpose
--------------------------------------------
1. Fixation *input* never turns off in RT Go/Anti, DMS/DNMS/DMC/DNMC, 1IC and
   Freedman DMC; the go cue is the stimulus onset (fixation *target* does end).
2. Stimuli without an offset stay on to the trial end: Go/Anti stimulus
   (through the response period), RT stimulus, DMS/DMC second stimulus, 1IC
   stimuli.
3. 'random' mode draws all epoch durations (and Go/DMS modalities) once per
   batch.
4. DMC/DNMC 'random' response period is {200, 400, 600} ms (others 500 ms).
5. 'test' mode of DMS/DNMS/DMC/DNMC contains GO trials only.
6. 'test' mode of dm1/dm2 uses s1 = 0.8 + 0.4k/5 (k = 0..4, 0.80..1.12) and
   s2 = 2 - s1; delayed DM s1 = 0.5 + k/5; ties in "stronger stimulus" go to
   stimulus 2 (strict ``>``).
7. 'test' mode of oic/dmc: batch 128 although 256 locations are built; only
   the first 128 (all category 1, angle < pi) are used.
8. 'test' mode of dmc (Freedman) draws stim2 onset from hp['rng'] (U(800,1200)
   ms), so it is not deterministic.
9. Input noise (std ``sigma_x*sqrt(2/alpha)``) is added in every mode when
   ``noise_on`` (default True), to every input incl. fixation and rule units.
   Here it is rate_rnn's counter-based stream over x viewed as one flat row,
   keyed by the generator's next draw after the trial's own draws, and it is
   added in the background while y and c_mask are built.
10. testinit: 10 s single trial, fixation input for 800 ms, no targets, no rule
    input and no noise (the original returns before adding them); the original
    has no c_mask or epochs for it -- here c_mask is all zeros and epochs are
    {'fix1': (None, fix_off), 'go1': (fix_off, None)}.
11. Ctx DM epochs have no 'delay1' (commented out in the original).
12. Rule inputs are set by assignment (not addition) over [rule_on, rule_off).
13. DMS/DNMS 'psychometric' mode: match iff the two locations are < pi/36
    (5 degrees) apart.  Psychometric locations are used as given (not wrapped).

Deviations (documented)
-----------------------
* multidm / multidelaydm split each stimulus across modalities with the seeded
  ``hp['rng']``; the original used the global ``np.random`` (unreproducible).
* Random numbers come from ``numpy.random.Generator`` (the original used
  ``RandomState``), so 'random' batches follow the same distributions but not
  the same sequences as the original.
* ``rule_strength`` of the wrong length raises (the original's ``zip`` silently
  truncated); unknown rules / modes / psychometric keys raise ``ValueError``
  listing the valid names.
* 'random' mode without ``batch_size`` uses ``hp['batch_size_train']``.

'test'- and 'psychometric'-mode arrays with ``noise_on=False`` equal the
original's element for element, for lsq and cross-entropy targets (float32
rounding order of the original's repeated ``+=`` reproduced); checked against
arrays from the original code in tests/test_tasks.py.

Speed: everything is vectorised over the batch (loops only over a handful of
stimuli / time segments); ring bumps are computed once per location array.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "rules_dict",
    "rule_name",
    "ALL_RULES",
    "MODES",
    "PSYCHOMETRIC_KEYS",
    "Trial",
    "generate_trials",
    "get_num_ring",
    "get_num_rule",
    "get_rule_index",
    "get_dist",
    "trial_length_stats",
    "plot_trial",
]

# ----------------------------------------------------------------------------
# Rulesets and names (spec 1.1)
# ----------------------------------------------------------------------------

rules_dict = {
    "all": ["fdgo", "reactgo", "delaygo", "fdanti", "reactanti", "delayanti",
            "dm1", "dm2", "contextdm1", "contextdm2", "multidm",
            "delaydm1", "delaydm2", "contextdelaydm1", "contextdelaydm2", "multidelaydm",
            "dmsgo", "dmsnogo", "dmcgo", "dmcnogo"],
    "mante": ["contextdm1", "contextdm2"],
    "oicdmc": ["oic", "dmc"],
}

_rule_index_map = {rs: {r: i for i, r in enumerate(rules)} for rs, rules in rules_dict.items()}

#: The paper's display names.
rule_name = {
    "fdgo": "Go", "reactgo": "RT Go", "delaygo": "Dly Go",
    "fdanti": "Anti", "reactanti": "RT Anti", "delayanti": "Dly Anti",
    "dm1": "DM 1", "dm2": "DM 2", "contextdm1": "Ctx DM 1", "contextdm2": "Ctx DM 2",
    "multidm": "MultSen DM", "delaydm1": "Dly DM 1", "delaydm2": "Dly DM 2",
    "contextdelaydm1": "Ctx Dly DM 1", "contextdelaydm2": "Ctx Dly DM 2",
    "multidelaydm": "MultSen Dly DM", "dmsgo": "DMS", "dmsnogo": "DNMS",
    "dmcgo": "DMC", "dmcnogo": "DNMC", "oic": "1IC", "dmc": "DMC",
}

MODES = ("random", "test", "psychometric")

#: Required ``params`` keys per rule in 'psychometric' mode (locations in
#: radians, strengths dimensionless, times in ms).
PSYCHOMETRIC_KEYS = {
    "fdgo": ("stim_locs", "stim_time"), "fdanti": ("stim_locs", "stim_time"),
    "reactgo": ("stim_locs",), "reactanti": ("stim_locs",),
    "delaygo": ("stim_locs", "stim_ons", "stim_offs", "delay_time"),
    "delayanti": ("stim_locs", "stim_ons", "stim_offs", "delay_time"),
    **{r: ("stim1_locs", "stim2_locs", "stim1_strengths", "stim2_strengths", "stim_time")
       for r in ("dm1", "dm2")},
    **{r: ("stim1_locs", "stim2_locs", "stim1_mod1_strengths", "stim2_mod1_strengths",
           "stim1_mod2_strengths", "stim2_mod2_strengths", "stim_time")
       for r in ("contextdm1", "contextdm2", "multidm",
                 "contextdelaydm1", "contextdelaydm2", "multidelaydm")},
    **{r: ("stim1_locs", "stim2_locs", "stim1_strengths", "stim2_strengths",
           "stim1_ons", "stim1_offs", "stim2_ons", "stim2_offs")
       for r in ("delaydm1", "delaydm2")},
    **{r: ("stim1_locs", "stim2_locs") for r in ("dmsgo", "dmsnogo", "dmcgo", "dmcnogo", "dmc")},
    "oic": ("stim1_locs", "stim2_locs", "stim3_locs"),
}


def get_num_ring(ruleset):
    """Number of stimulus rings: 3 for 'oicdmc', else 2."""
    return 3 if ruleset == "oicdmc" else 2


def get_num_rule(ruleset):
    """Number of rule input units of a ruleset."""
    if ruleset not in rules_dict:
        raise ValueError(f"Unknown ruleset {ruleset!r}; valid rulesets: {sorted(rules_dict)}")
    return len(rules_dict[ruleset])


def get_rule_index(rule, hp):
    """Input column of ``rule``'s rule unit (str rule, or int offset from rule_start)."""
    if isinstance(rule, numbers.Integral) and not isinstance(rule, bool):
        idx = hp["rule_start"] + int(rule)
        if not hp["rule_start"] <= idx < hp["n_input"]:
            raise ValueError(f"Rule offset {rule} outside 0..{hp['n_input'] - hp['rule_start'] - 1}")
        return idx
    index_map = _rule_index_map.get(hp["ruleset"])
    if index_map is None:
        raise ValueError(f"Unknown ruleset {hp['ruleset']!r}; valid rulesets: {sorted(rules_dict)}")
    if rule not in index_map:
        raise ValueError(f"Rule {rule!r} has no rule input in ruleset {hp['ruleset']!r}; "
                         f"its rules: {list(index_map)}")
    return index_map[rule] + hp["rule_start"]


def get_dist(original_dist):
    """Circular distance: min(|d|, 2*pi - |d|), radians."""
    a = np.abs(original_dist)
    return np.minimum(a, 2 * np.pi - a)


# ----------------------------------------------------------------------------
# Trial container
# ----------------------------------------------------------------------------

@dataclass
class Trial:
    """One batch of trials of one rule.

    Attributes:
        rule, mode: what was generated.
        x: (T, B, n_input) float32 inputs.
        y: (T, B, n_output) float32 targets.
        y_loc: (T, B) float32, -1 while fixating, else response angle (rad).
        c_mask: (T, B, n_output) float32 for 'lsq'; (T, B) float32, mean 1, otherwise.
        epochs: {name: (start, end)} in steps, None = trial start / end.
        batch_size (B), tdim (T), dt (ms per step).
        params: the stimulus parameters of this batch: locations (B,) rad,
            strengths (B,), modalities ``*_mod`` (B,) int (1-based), match flags,
            timings in steps (``*_on``, ``*_off``, ``fix_off``), and for every
            rule ``go_on`` (step from which a response is required),
            ``respond`` (B,) bool and ``response_locs`` (B,) rad (NaN for no-go).
        Arrays are numpy, or torch tensors when generated with ``device=``.
    """

    rule: str
    mode: str
    x: object
    y: object
    y_loc: object
    c_mask: object
    epochs: dict
    batch_size: int
    tdim: int
    dt: float
    params: dict = field(default_factory=dict)

    def to(self, device):
        """Copy with x, y, y_loc, c_mask as torch tensors on ``device`` (non_blocking)."""
        import torch

        def conv(a):
            t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
            return t.to(device, non_blocking=True)

        return Trial(self.rule, self.mode, conv(self.x), conv(self.y), conv(self.y_loc),
                     conv(self.c_mask), self.epochs, self.batch_size, self.tdim, self.dt,
                     self.params)

    def __repr__(self):
        return (f"Trial(rule={self.rule!r}, mode={self.mode!r}, T={self.tdim}, "
                f"B={self.batch_size}, x{tuple(self.x.shape)}, y{tuple(self.y.shape)})")


# ----------------------------------------------------------------------------
# Plans: what a rule function returns
# ----------------------------------------------------------------------------

@dataclass
class _Stim:
    """A stimulus: locs (B,) rad; ring 1-based int or (B,) ints; [on, off) steps
    (off None = to trial end); strengths (B,) or None (= 1)."""
    locs: np.ndarray
    ring: object
    on: int
    off: object = None
    strengths: object = None


@dataclass
class _Plan:
    """Everything the shared builder needs.  go_on: step from which a response
    is required (fixation target ends there for responding trials; cost-mask
    pre_off = go_on, post_on = go_on + 100 ms).  fix_in_off: step the fixation
    input ends, None = never."""
    tdim: int
    batch_size: int
    stims: list
    go_on: int
    fix_in_off: object
    response_locs: np.ndarray
    respond: object  # (B,) bool or None = every trial responds
    epochs: dict
    params: dict
    response_src: object = None  # _Either or None


class _Ctx:
    """Per-call context handed to rule functions."""

    __slots__ = ("hp", "rng", "mode", "dt", "batch_size", "p")

    def __init__(self, hp, rng, mode, batch_size, params):
        self.hp, self.rng, self.mode = hp, rng, mode
        self.dt = hp["dt"]
        self.batch_size, self.p = batch_size, params

    def ms(self, t):
        """Duration in ms -> steps, truncated as the original ``int(t/dt)``."""
        return int(t / self.dt)

    def pick(self, values):
        """One element of ``values`` (uniform), a per-batch draw."""
        return values[int(self.rng.random() * len(values))]

    def index(self, k, n):
        """(n,) uniform integers in [0, k) (floor(U*k); cheaper than Generator.integers)."""
        return (self.rng.random(n) * k).astype(np.intp)

    def sign(self, n):
        """(n,) random +-1.0."""
        return np.where(self.rng.random(n) < 0.5, -1.0, 1.0)

    def psy(self, key):
        """A psychometric parameter as float64 array (locations / strengths)."""
        return np.asarray(self.p[key], dtype=np.float64)

    def psy_batch(self, *keys):
        """Psychometric arrays for ``keys``; checks equal lengths; returns (arrays, B)."""
        arrs = [self.psy(k) for k in keys]
        sizes = {a.shape for a in arrs}
        if len(sizes) != 1 or arrs[0].ndim != 1:
            raise ValueError(f"psychometric params {keys} must be 1-D arrays of equal length, "
                             f"got shapes {[a.shape for a in arrs]}")
        return arrs, arrs[0].shape[0]


def _grid(*shape):
    """Row-major indices of a full grid of conditions (the original's unravel_index)."""
    return np.unravel_index(np.arange(int(np.prod(shape))), shape)


def _plan(c, T, stims, go_on, response, epochs, params, fix_in_off="go", respond=None):
    """Assemble a _Plan; ``response`` is a (B,) location array or an _Either."""
    src = response if isinstance(response, _Either) else None
    response_locs = src.locs if src is not None else response
    B = response_locs.shape[0]
    fix_off = go_on if fix_in_off == "go" else fix_in_off
    if respond is None:
        resp = response_locs
    else:
        respond = np.asarray(respond, dtype=bool)
        resp = np.where(respond, response_locs, np.nan)
    params = dict(params, go_on=go_on,
                  respond=np.ones(B, bool) if respond is None else respond,
                  response_locs=resp)
    return _Plan(T, B, stims, go_on, fix_off, response_locs, respond, epochs, params, src)


_TEN_LOCS = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9]) * np.pi


def _anti(locs):
    return (locs + np.pi) % (2 * np.pi)


@dataclass
class _Either:
    """Response location ``where(cond, a, b)`` per trial (kept symbolic so the
    builder can reuse the ring bumps already computed for ``a`` and ``b``)."""
    cond: np.ndarray
    a: np.ndarray
    b: np.ndarray

    @property
    def locs(self):
        return np.where(self.cond, self.a, self.b)


def _stronger(locs1, locs2, s1, s2):
    """Location of the stronger stimulus; ties go to stimulus 2 (strict >)."""
    return _Either(np.asarray(s1 > s2), locs1, locs2)


def _two_locs(c, B):
    """Two-stimulus geometry: stim1 U(0,2pi); stim2 = stim1 +- U(0.5pi, 1.5pi)."""
    dist = c.rng.uniform(0.5 * np.pi, 1.5 * np.pi, B) * c.sign(B)
    locs1 = c.rng.uniform(0, 2 * np.pi, B)
    return locs1, (locs1 + dist) % (2 * np.pi)


def _genstim(c, B, cohs):
    """Strength pair: mean U(0.8,1.2), coherence from ``cohs``, random sign."""
    mean = c.rng.uniform(0.8, 1.2, B)
    coh = cohs[c.index(len(cohs), B)]
    sign = c.sign(B)
    return mean + coh * sign, mean - coh * sign


def _split_modalities(c, s):
    """MultSen: stimulus of total 2s split as s +- diff/2, diff = s*U(.2,.8)*(+-1)."""
    diff = s * c.rng.uniform(0.2, 0.8, s.shape[0]) * c.sign(s.shape[0])
    return s + diff / 2, s - diff / 2


def _test_loc(k, n):
    """Test-grid angle 2*pi*k/n (same float operations as the original)."""
    return 2 * np.pi * k / n


def _dm_cohs(c):
    cohs = np.array([0.01, 0.02, 0.04, 0.08])
    return cohs * 10 if c.hp.get("easy_task", False) else cohs


def _delaydm_cohs(c):
    cohs = np.array([0.08, 0.16, 0.32])
    return cohs * 2 if c.hp.get("easy_task", False) else cohs


# ----------------------------------------------------------------------------
# Rule functions (one per task family; the public rule names map onto them)
# ----------------------------------------------------------------------------

def _go(c, anti):
    """Go / Anti: stimulus on from stim_on to the END; respond at fixation offset."""
    if c.mode == "random":
        B = c.batch_size
        locs = c.rng.random(B) * 2 * np.pi
        mods = np.full(B, c.pick((1, 2)))
        stim_on = c.ms(c.rng.uniform(300, 700))
        fix_off = stim_on + c.ms(c.rng.uniform(500, 1500))
        T = c.ms(500) + fix_off
    elif c.mode == "test":
        k, m = _grid(20, 2)
        locs, mods = _test_loc(k, 20), m + 1
        stim_on, fix_off, T = c.ms(500), c.ms(1500), c.ms(2000)
    else:
        (locs,), B = c.psy_batch("stim_locs")
        mods = np.ones(B, int)
        stim_on = c.ms(300)
        fix_off = stim_on + c.ms(c.p["stim_time"])
        T = c.ms(400) + fix_off
    return _plan(c, T, [_Stim(locs, mods, stim_on)], fix_off, _anti(locs) if anti else locs,
                 {"fix1": (None, stim_on), "stim1": (stim_on, fix_off), "go1": (fix_off, None)},
                 dict(stim_locs=locs, stim_mod=mods, stim_on=stim_on, fix_off=fix_off))


def _react(c, anti):
    """RT Go / RT Anti: fixation input never off; go = stimulus onset."""
    if c.mode == "random":
        B = c.batch_size
        stim_on = c.ms(c.rng.uniform(500, 2500))
        T = c.ms(500) + stim_on
        locs = c.rng.uniform(0, 2 * np.pi, B)
        mods = np.full(B, c.pick((1, 2)))
    elif c.mode == "test":
        k, m = _grid(20, 2)
        locs, mods = _test_loc(k, 20), m + 1
        stim_on, T = c.ms(2000), c.ms(2500)
    else:
        (locs,), B = c.psy_batch("stim_locs")
        mods = np.ones(B, int)
        stim_on = c.ms(1000)
        T = c.ms(400) + stim_on
    return _plan(c, T, [_Stim(locs, mods, stim_on)], stim_on, _anti(locs) if anti else locs,
                 {"fix1": (None, stim_on), "go1": (stim_on, None)},
                 dict(stim_locs=locs, stim_mod=mods, stim_on=stim_on), fix_in_off=None)


def _delay(c, anti):
    """Dly Go / Dly Anti: brief stimulus, delay, respond at fixation offset."""
    if c.mode == "random":
        B = c.batch_size
        locs = c.rng.random(B) * 2 * np.pi
        stim_on = c.ms(c.pick((300, 500, 700)))
        stim_off = stim_on + c.ms(c.pick((200, 400, 600)))
        fix_off = stim_off + c.ms(c.pick((200, 400, 800, 1600)))
        T = fix_off + c.ms(500)
        mods = np.full(B, c.pick((1, 2)))
    elif c.mode == "test":
        k, m = _grid(20, 2)
        locs, mods = _test_loc(k, 20), m + 1
        stim_on, stim_off, fix_off, T = c.ms(500), c.ms(1000), c.ms(2000), c.ms(2500)
    else:
        (locs,), B = c.psy_batch("stim_locs")
        mods = np.ones(B, int)
        stim_on, stim_off = c.ms(c.p["stim_ons"]), c.ms(c.p["stim_offs"])
        fix_off = stim_off + c.ms(c.p["delay_time"])
        T = c.ms(400) + fix_off
    return _plan(c, T, [_Stim(locs, mods, stim_on, stim_off)], fix_off,
                 _anti(locs) if anti else locs,
                 {"fix1": (None, stim_on), "stim1": (stim_on, stim_off),
                  "delay1": (stim_off, fix_off), "go1": (fix_off, None)},
                 dict(stim_locs=locs, stim_mod=mods, stim_on=stim_on, stim_off=stim_off,
                      fix_off=fix_off))


def _dm(c, mod):
    """DM 1 / DM 2: two stimuli in one modality until fixation offset; pick the stronger."""
    if c.mode == "random":
        B = c.batch_size
        locs1, locs2 = _two_locs(c, B)
        s1, s2 = _genstim(c, B, _dm_cohs(c))
        stim_on = c.ms(c.rng.uniform(100, 400))
        fix_off = stim_on + c.ms(c.pick((400, 800, 1600)))
        T = fix_off + c.ms(500)
    elif c.mode == "test":
        k, ks = _grid(20, 5)
        locs1 = _test_loc(k, 20)
        locs2 = (locs1 + np.pi) % (2 * np.pi)
        s1 = 0.4 * ks / 5 + 0.8
        s2 = 2 - s1
        stim_on, fix_off, T = c.ms(500), c.ms(2000), c.ms(2500)
    else:
        (locs1, locs2, s1, s2), B = c.psy_batch("stim1_locs", "stim2_locs",
                                                "stim1_strengths", "stim2_strengths")
        stim_on = c.ms(300)
        fix_off = c.ms(300) + c.ms(c.p["stim_time"])
        T = c.ms(400) + fix_off
    stims = [_Stim(locs1, mod, stim_on, fix_off, s1), _Stim(locs2, mod, stim_on, fix_off, s2)]
    return _plan(c, T, stims, fix_off, _stronger(locs1, locs2, s1, s2),
                 {"fix1": (None, stim_on), "stim1": (stim_on, fix_off), "go1": (fix_off, None)},
                 dict(stim1_locs=locs1, stim2_locs=locs2, stim1_strengths=s1,
                      stim2_strengths=s2, stim_mod=np.full(locs1.shape[0], mod),
                      stim_on=stim_on, fix_off=fix_off))


def _attended(attend, s1m1, s2m1, s1m2, s2m2):
    """Strengths the decision is based on: one modality, or the sum ('both')."""
    if attend == 1:
        return s1m1, s2m1
    if attend == 2:
        return s1m2, s2m2
    return s1m1 + s1m2, s2m1 + s2m2


def _both_mod_strengths(c, B, attend, cohs):
    """Random strengths in both modalities: independent pairs (Ctx) or one pair
    split across modalities (MultSen)."""
    if attend in (1, 2):
        s1m1, s2m1 = _genstim(c, B, cohs)
        s1m2, s2m2 = _genstim(c, B, cohs)
    else:
        s1, s2 = _genstim(c, B, cohs)
        s1m1, s1m2 = _split_modalities(c, s1)
        s2m1, s2m2 = _split_modalities(c, s2)
    return s1m1, s2m1, s1m2, s2m2


def _ctx_test_strengths(ks1, ks2):
    s1m1 = 0.4 * ks1 / 5 + 0.8
    s1m2 = 0.4 * ks2 / 5 + 0.8
    return s1m1, 2 - s1m1, s1m2, 2 - s1m2


_CTX_KEYS = ("stim1_mod1_strengths", "stim2_mod1_strengths",
             "stim1_mod2_strengths", "stim2_mod2_strengths")


def _four_stims(locs1, locs2, st, on1, off1, on2, off2):
    """Both stimuli in both modalities, in the original's order of addition."""
    s1m1, s2m1, s1m2, s2m2 = st
    return [_Stim(locs1, 1, on1, off1, s1m1), _Stim(locs2, 1, on2, off2, s2m1),
            _Stim(locs1, 2, on1, off1, s1m2), _Stim(locs2, 2, on2, off2, s2m2)]


def _contextdm(c, attend):
    """Ctx DM 1/2 (attend one modality) and MultSen DM (attend 'both')."""
    if c.mode == "random":
        B = c.batch_size
        locs1, locs2 = _two_locs(c, B)
        st = _both_mod_strengths(c, B, attend, _dm_cohs(c))
        stim_on = c.ms(c.rng.uniform(100, 400))
        stim_off = stim_on + c.ms(c.pick((400, 800, 1600)))
        fix_off = stim_off
        T = fix_off + c.ms(500)
    elif c.mode == "test":
        k, ks1, ks2 = _grid(20, 5, 5)
        locs1 = _test_loc(k, 20)
        locs2 = (locs1 + np.pi) % (2 * np.pi)
        st = _ctx_test_strengths(ks1, ks2)
        stim_on, stim_off, fix_off, T = c.ms(500), c.ms(1500), c.ms(1500), c.ms(2000)
    else:
        (locs1, locs2, *st), B = c.psy_batch("stim1_locs", "stim2_locs", *_CTX_KEYS)
        stim_on = c.ms(500)
        stim_off = fix_off = stim_on + c.ms(c.p["stim_time"])
        T = c.ms(500) + fix_off
    stims = _four_stims(locs1, locs2, st, stim_on, stim_off, stim_on, stim_off)
    return _plan(c, T, stims, fix_off, _stronger(locs1, locs2, *_attended(attend, *st)),
                 {"fix1": (None, stim_on), "stim1": (stim_on, stim_off), "go1": (fix_off, None)},
                 dict(zip(_CTX_KEYS, st), stim1_locs=locs1, stim2_locs=locs2,
                      stim_on=stim_on, stim_off=stim_off, fix_off=fix_off))


def _delay_timing(c):
    """Random sequential-stimulus timing (delayed DM and DMS/DMC families)."""
    on1 = c.ms(c.pick((200, 400, 600)))
    off1 = on1 + c.ms(c.pick((200, 400, 600)))
    on2 = off1 + c.ms(c.pick((200, 400, 800, 1600)))
    return on1, off1, on2


def _delaydm_epochs(on1, off1, on2, off2, fix_off):
    return {"fix1": (None, on1), "stim1": (on1, off1), "delay1": (off1, on2),
            "stim2": (on2, off2), "delay2": (off2, fix_off), "go1": (fix_off, None)}


def _delaydm(c, mod):
    """Dly DM 1/2: two sequential stimuli in one modality; pick the stronger."""
    if c.mode == "random":
        B = c.batch_size
        locs1, locs2 = _two_locs(c, B)
        s1, s2 = _genstim(c, B, _delaydm_cohs(c))
        on1, off1, on2 = _delay_timing(c)
        off2 = on2 + c.ms(c.pick((200, 400, 600)))
        fix_off = off2 + c.ms(c.rng.uniform(100, 300))
        T = fix_off + c.ms(500)
    elif c.mode == "test":
        k, ks = _grid(20, 5)
        locs1 = _test_loc(k, 20)
        locs2 = (locs1 + np.pi) % (2 * np.pi)
        s1 = 1.0 * ks / 5 + 0.5
        s2 = 2 - s1
        on1, off1, on2, off2 = c.ms(500), c.ms(1000), c.ms(2000), c.ms(2500)
        fix_off, T = c.ms(2700), c.ms(3000)
    else:
        (locs1, locs2, s1, s2), B = c.psy_batch("stim1_locs", "stim2_locs",
                                                "stim1_strengths", "stim2_strengths")
        on1, off1 = c.ms(c.p["stim1_ons"]), c.ms(c.p["stim1_offs"])
        on2, off2 = c.ms(c.p["stim2_ons"]), c.ms(c.p["stim2_offs"])
        fix_off = c.ms(200) + off2
        T = c.ms(300) + fix_off
    stims = [_Stim(locs1, mod, on1, off1, s1), _Stim(locs2, mod, on2, off2, s2)]
    return _plan(c, T, stims, fix_off, _stronger(locs1, locs2, s1, s2),
                 _delaydm_epochs(on1, off1, on2, off2, fix_off),
                 dict(stim1_locs=locs1, stim2_locs=locs2, stim1_strengths=s1,
                      stim2_strengths=s2, stim_mod=np.full(locs1.shape[0], mod),
                      stim1_on=on1, stim1_off=off1, stim2_on=on2, stim2_off=off2,
                      fix_off=fix_off))


def _contextdelaydm(c, attend):
    """Ctx Dly DM 1/2 and MultSen Dly DM: sequential stimuli in both modalities."""
    if c.mode == "random":
        B = c.batch_size
        locs1, locs2 = _two_locs(c, B)
        st = _both_mod_strengths(c, B, attend, _delaydm_cohs(c))
        on1, off1, on2 = _delay_timing(c)
        off2 = on2 + c.ms(c.pick((200, 400, 600)))
        fix_off = off2 + c.ms(c.rng.uniform(100, 300))
        T = fix_off + c.ms(500)
    elif c.mode == "test":
        k, ks1, ks2 = _grid(20, 5, 5)
        locs1 = _test_loc(k, 20)
        locs2 = (locs1 + np.pi) % (2 * np.pi)
        st = _ctx_test_strengths(ks1, ks2)
        on1, off1, on2, off2 = c.ms(500), c.ms(1000), c.ms(2000), c.ms(2500)
        fix_off, T = c.ms(3000), c.ms(3500)
    else:
        (locs1, locs2, *st), B = c.psy_batch("stim1_locs", "stim2_locs", *_CTX_KEYS)
        on1, off1 = c.ms(300), c.ms(600)
        on2 = c.ms(c.p["stim_time"]) + off1
        off2 = c.ms(300) + on2
        fix_off = c.ms(200) + off2
        T = c.ms(300) + fix_off
    stims = _four_stims(locs1, locs2, st, on1, off1, on2, off2)
    return _plan(c, T, stims, fix_off, _stronger(locs1, locs2, *_attended(attend, *st)),
                 _delaydm_epochs(on1, off1, on2, off2, fix_off),
                 dict(zip(_CTX_KEYS, st), stim1_locs=locs1, stim2_locs=locs2,
                      stim1_on=on1, stim1_off=off1, stim2_on=on2, stim2_off=off2,
                      fix_off=fix_off))


def _match_plan(c, T, locs1, locs2, mods1, mods2, on1, off1, on2, match, go_on_match):
    """Shared tail of DMS/DNMS/DMC/DNMC/Freedman-DMC: stim2 stays on to the end,
    fixation input never off, respond (to stim2) iff match == go_on_match."""
    B = locs1.shape[0]
    match = np.asarray(match).astype(bool)
    stims = [_Stim(locs1, mods1, on1, off1), _Stim(locs2, mods2, on2)]
    return _plan(c, T, stims, on2, locs2,
                 {"fix1": (None, on1), "stim1": (on1, off1), "delay1": (off1, on2),
                  "go1": (on2, None)},
                 dict(stim1_locs=locs1, stim2_locs=locs2,
                      stim1_mod=np.broadcast_to(mods1, (B,)).copy(),
                      stim2_mod=np.broadcast_to(mods2, (B,)).copy(),
                      match=match, stim1_on=on1, stim1_off=off1, stim2_on=on2),
                 fix_in_off=None, respond=match == go_on_match)


def _match_test_grid(c):
    """'test' grid and timing shared by DMS/DNMS/DMC/DNMC: 20 locations x mod1 x mod2, stim1 500-1000 ms,
    stim2 from 2200 ms, T 2700 ms. Returns (k, mod1, mod2, on1, off1, on2, T)."""
    k, m1, m2 = _grid(20, 2, 2)
    on1 = c.ms(500)
    off1 = on1 + c.ms(500)
    on2 = off1 + c.ms(1200)
    return k, m1 + 1, m2 + 1, on1, off1, on2, on2 + c.ms(500)


def _match_psychometric_timing(c):
    """'psychometric' timing of the DMS/DMC family: (T, on1, off1, on2) = (2500, 500, 800, 2000) ms."""
    return c.ms(2500), c.ms(500), c.ms(800), c.ms(2000)


def _dms(c, matchnogo):
    """DMS (go on match) / DNMS (go on non-match, matchnogo=1)."""
    if c.mode == "random":
        B = c.batch_size
        mod1, mod2 = c.pick((1, 2)), c.pick((1, 2))
        match = c.index(2, B)
        dist = c.rng.uniform(np.pi / 9, np.pi * 17. / 9., B) * c.sign(B)
        locs1 = c.rng.uniform(0, 2 * np.pi, B)
        locs2 = (locs1 + dist * (1 - match)) % (2 * np.pi)
        on1, off1, on2 = _delay_timing(c)
        T = on2 + c.ms(500)
    elif c.mode == "test":
        k, mod1, mod2, on1, off1, on2, T = _match_test_grid(c)
        locs1 = _test_loc(k, 20)
        match = (1 - matchnogo) * np.ones(k.shape[0])  # every test trial is a GO trial
        locs2 = (locs1 + np.pi * (1 - match)) % (2 * np.pi)
    else:
        (locs1, locs2), B = c.psy_batch("stim1_locs", "stim2_locs")
        match = get_dist(locs1 - locs2) < np.pi / 36.  # within 5 degrees
        mod1 = mod2 = 1
        T, on1, off1, on2 = _match_psychometric_timing(c)
    return _match_plan(c, T, locs1, locs2, mod1, mod2, on1, off1, on2, match,
                       not matchnogo)


def _dmc(c, matchnogo):
    """DMC (go on category match) / DNMC; category = angle < pi."""
    if c.mode == "random":
        B = c.batch_size
        mod1, mod2 = c.pick((1, 2)), c.pick((1, 2))
        locs1 = _TEN_LOCS[c.index(10, B)]
        locs2 = _TEN_LOCS[c.index(10, B)]
        on1, off1, on2 = _delay_timing(c)
        T = on2 + c.ms(c.pick((200, 400, 600)))  # quirk: response 200-600 ms
    elif c.mode == "test":
        k, mod1, mod2, on1, off1, on2, T = _match_test_grid(c)
        half = np.arange(10.0)
        locs_ = np.concatenate(((0.1 + 0.8 * half / 10.0), (1.1 + 0.8 * half / 10.0))) * np.pi
        locs1 = locs_[k]
        shift = (1 - matchnogo) * np.ones(k.shape[0])  # every test trial is a GO trial
        locs2 = (locs1 + np.pi * (1 - shift)) % (2 * np.pi)
    else:
        (locs1, locs2), B = c.psy_batch("stim1_locs", "stim2_locs")
        mod1 = mod2 = 1
        T, on1, off1, on2 = _match_psychometric_timing(c)
    match = (locs1 < np.pi) == (locs2 < np.pi)
    return _match_plan(c, T, locs1, locs2, mod1, mod2, on1, off1, on2, match,
                       not matchnogo)


def _quirk_128_locs():
    """oic/dmc 'test' locations: 256 are built, the first 128 (angle < pi) used."""
    a = 128
    locs = np.concatenate(((0.1 + 0.8 * np.arange(a) / a), (1.1 + 0.8 * np.arange(a) / a))) * np.pi
    return locs[:a]


def oic(c):
    """1IC (oicdmc): ring-1 cue; at fix_off, ring-2 and ring-3 targets appear; go to
    the ring-2 target if cue angle >= pi else to the ring-3 target."""
    if c.mode == "random":
        B = c.batch_size
        locs1 = _TEN_LOCS[c.index(10, B)]
        locs2 = c.rng.uniform(0, 2 * np.pi, B)
        on1 = c.ms(c.rng.uniform(100, 600))
    elif c.mode == "test":
        locs1 = _quirk_128_locs()
        locs2 = locs1
        on1 = c.ms(500)
    else:
        (locs1, locs2, locs3), B = c.psy_batch("stim1_locs", "stim2_locs", "stim3_locs")
        on1 = c.ms(500)
    if c.mode != "psychometric":
        locs3 = (locs2 + np.pi) % (2 * np.pi)
    fix_off = on1 + c.ms(1000)
    T = fix_off + c.ms(500)
    stims = [_Stim(locs1, 1, on1), _Stim(locs2, 2, fix_off), _Stim(locs3, 3, fix_off)]
    return _plan(c, T, stims, fix_off, _Either(locs1 < np.pi, locs3, locs2),
                 {"fix1": (None, on1), "stim1": (on1, fix_off), "go1": (fix_off, None)},
                 dict(stim1_locs=locs1, stim2_locs=locs2, stim3_locs=locs3,
                      stim1_on=on1, fix_off=fix_off), fix_in_off=None)


def dmc(c):
    """Freedman DMC (oicdmc): ring 1 only, 1000 ms sample, 1000 ms delay, go on
    category match."""
    if c.mode == "random":
        B = c.batch_size
        locs1 = _TEN_LOCS[c.index(10, B)]
        locs2 = _TEN_LOCS[c.index(10, B)]
        on1 = c.ms(c.rng.uniform(100, 600))
        off1 = on1 + c.ms(1000)
        on2 = off1 + c.ms(1000)
        T = on2 + c.ms(500)
    elif c.mode == "test":
        locs1 = _quirk_128_locs()
        locs2 = locs1
        on1 = c.ms(500)
        off1 = on1 + c.ms(1000)
        on2 = off1 + c.ms(c.rng.uniform(800, 1200))  # quirk: random even in 'test'
        T = on2 + c.ms(500)
    else:
        (locs1, locs2), B = c.psy_batch("stim1_locs", "stim2_locs")
        T, on1, off1, on2 = c.ms(3000), c.ms(500), c.ms(1500), c.ms(2500)
    match = (locs1 < np.pi) == (locs2 < np.pi)
    return _match_plan(c, T, locs1, locs2, 1, 1, on1, off1, on2, match, True)


def fdgo(c): return _go(c, anti=False)  # noqa: E704
def fdanti(c): return _go(c, anti=True)  # noqa: E704
def reactgo(c): return _react(c, anti=False)  # noqa: E704
def reactanti(c): return _react(c, anti=True)  # noqa: E704
def delaygo(c): return _delay(c, anti=False)  # noqa: E704
def delayanti(c): return _delay(c, anti=True)  # noqa: E704
def dm1(c): return _dm(c, 1)  # noqa: E704
def dm2(c): return _dm(c, 2)  # noqa: E704
def contextdm1(c): return _contextdm(c, 1)  # noqa: E704
def contextdm2(c): return _contextdm(c, 2)  # noqa: E704
def multidm(c): return _contextdm(c, "both")  # noqa: E704
def delaydm1(c): return _delaydm(c, 1)  # noqa: E704
def delaydm2(c): return _delaydm(c, 2)  # noqa: E704
def contextdelaydm1(c): return _contextdelaydm(c, 1)  # noqa: E704
def contextdelaydm2(c): return _contextdelaydm(c, 2)  # noqa: E704
def multidelaydm(c): return _contextdelaydm(c, "both")  # noqa: E704
def dmsgo(c): return _dms(c, 0)  # noqa: E704
def dmsnogo(c): return _dms(c, 1)  # noqa: E704
def dmcgo(c): return _dmc(c, 0)  # noqa: E704
def dmcnogo(c): return _dmc(c, 1)  # noqa: E704


_RULE_FUNCS = {
    "fdgo": fdgo, "reactgo": reactgo, "delaygo": delaygo,
    "fdanti": fdanti, "reactanti": reactanti, "delayanti": delayanti,
    "dm1": dm1, "dm2": dm2, "contextdm1": contextdm1, "contextdm2": contextdm2,
    "multidm": multidm, "delaydm1": delaydm1, "delaydm2": delaydm2,
    "contextdelaydm1": contextdelaydm1, "contextdelaydm2": contextdelaydm2,
    "multidelaydm": multidelaydm, "dmsgo": dmsgo, "dmsnogo": dmsnogo,
    "dmcgo": dmcgo, "dmcnogo": dmcnogo, "oic": oic, "dmc": dmc,
}

#: Every rule accepted by generate_trials (testinit is in no ruleset).
ALL_RULES = ("testinit",) + tuple(_RULE_FUNCS)

_NUM_RINGS_USED = {"oic": 3}


# ----------------------------------------------------------------------------
# Builder: plan -> arrays
# ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _pref(n_eachring):
    """Preferred angles of a ring, computed exactly as the original (arange)."""
    pref = np.arange(0, 2 * np.pi, 2 * np.pi / n_eachring)
    pref.setflags(write=False)
    return pref


def _ring_dist(locs, n_eachring):
    """(B, n_eachring) circular distance of each location to each preferred angle."""
    d = np.abs(np.asarray(locs, dtype=np.float64)[:, None] - _pref(n_eachring))
    return np.minimum(d, 2 * np.pi - d)


def _ring_bump(locs, n_eachring):
    """(B, n_eachring) float64 bump 0.8*exp(-0.5*(d/(pi/8))^2) (same operation order
    as the original, so float32 results match bit for bit)."""
    d = _ring_dist(locs, n_eachring)
    d /= np.pi / 8
    return 0.8 * np.exp(-d ** 2 / 2)


class _Bumps:
    """Ring bumps of location arrays, computed once per array within one build
    (the original recomputes identical values, so reuse is bit-exact)."""

    def __init__(self, n_each):
        self.n_each, self._cache = n_each, {}

    def __call__(self, locs):
        hit = self._cache.get(id(locs))
        if hit is None:
            hit = self._cache[id(locs)] = (locs, _ring_bump(locs, self.n_each))
        return hit[1]


def _clip(t, T):
    return T if t is None else min(max(int(t), 0), T)


def _contributions(stims, bumps, T):
    """(ring 0-based, (B, n_each) float64 pattern, on, off) per stimulus, in the
    original order; a per-trial ring array is split into one masked pattern per ring."""
    out = []
    for s in stims:
        pat = bumps(s.locs)
        if s.strengths is not None:
            pat = pat * np.asarray(s.strengths, dtype=np.float64)[:, None]
        on, off = _clip(s.on, T), _clip(s.off, T)
        if np.ndim(s.ring) == 0:
            out.append((int(s.ring) - 1, pat, on, off))
        else:
            rings = np.asarray(s.ring)
            for k in np.unique(rings):
                out.append((int(k) - 1, np.where((rings == k)[:, None], pat, 0.0), on, off))
    return out


def _input_segments(plan, bumps, n_each, n_in, T, rule_cols, rule_span):
    """The noise-free inputs as [(start, end, (B, n_in) float32 row)], rows constant over [start, end) and the
    segments a partition of [0, T): fixation 1 until fixation offset, the ring stimuli, and rule column ``col`` =
    ``strength`` for (col, strength) in ``rule_cols`` during ``rule_span`` (a later entry for the same column
    wins, as the original's assignments do). Within a segment the active stimuli of a ring are summed in the
    original order with float32 rounding after each addition (the original's ``x[...] += pattern``)."""
    contribs = _contributions(plan.stims, bumps, T)
    fix_end = T if plan.fix_in_off is None else _clip(plan.fix_in_off, T)
    r_on, r_off = rule_span
    cuts = sorted({0, T, fix_end, r_on, r_off, *[t for _, _, on, off in contribs for t in (on, off)]})
    B = plan.batch_size
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        row = np.zeros((B, n_in), dtype=np.float32)
        if a < fix_end:
            row[:, 0] = 1
        acc = {}
        for k, pat, on, off in contribs:
            if on <= a and b <= off:
                acc[k] = pat.astype(np.float32) if k not in acc else (acc[k] + pat).astype(np.float32)
        for k, val in acc.items():
            row[:, 1 + k * n_each:1 + (k + 1) * n_each] = val
        if r_on <= a and b <= r_off:
            for col, strength in rule_cols:
                row[:, col] = strength
        out.append((a, b, row))
    return out


def _targets(plan, T, B, n_out, bumps, lsq):
    """y (T,B,n_out) float32 and y_loc (T,B) float32 from a plan."""
    go = _clip(plan.go_on, T)
    base = 0.05 if lsq else 0.0
    fix_val = 0.8 if lsq else 1.0
    respond = np.ones(B, bool) if plan.respond is None else plan.respond
    if lsq:
        src = plan.response_src
        bump = (bumps(plan.response_locs) if src is None
                else np.where(src.cond[:, None], bumps(src.a), bumps(src.b)))
        resp = (bump + np.float64(np.float32(0.05))).astype(np.float32)
    else:
        d = _ring_dist(plan.response_locs, bumps.n_each)
        resp = np.zeros((B, bumps.n_each), dtype=np.float32)
        resp[np.arange(B), np.argmin(d, axis=1)] = 1.0
    block = np.empty((B, n_out), dtype=np.float32)
    block[:, 0] = fix_val
    block[:, 1:] = base
    y = np.empty((T, B, n_out), dtype=np.float32)
    y[:go] = block
    block[:, 0] = np.where(respond, base, fix_val)
    block[:, 1:] = np.where(respond[:, None], resp, np.float32(base))
    y[go:] = block
    y_loc = np.empty((T, B), dtype=np.float32)
    y_loc[:go] = -1
    y_loc[go:] = np.where(respond, plan.response_locs, -1).astype(np.float32)
    return y, y_loc


def _cost_mask(go_on, T, B, n_out, dt, lsq):
    """c_mask: 0 for the first 100 ms, 1 until go, 0 for 100 ms grace, 5 after;
    lsq: (T,B,n_out) with the fixation column doubled; else (T,B) / its mean."""
    pre_on, pre_off, post_on = int(100 / dt), go_on, go_on + int(100 / dt)
    m = np.zeros(T, dtype=np.float32)
    m[post_on:] = 5.0
    m[pre_on:pre_off] = 1.0
    if not lsq:
        c = np.empty((T, B), dtype=np.float32)
        c[:] = m[:, None]
        c /= c.reshape(-1).mean()
        return c
    row = np.ones((B, n_out), dtype=np.float32)
    row[:, 0] = 2.0  # fixation output counts double
    c = np.empty((T, B, n_out), dtype=np.float32)
    cuts = [0, *np.flatnonzero(np.diff(m)) + 1, T]  # piecewise-constant segments
    for a, b in zip(cuts[:-1], cuts[1:]):
        c[a:b] = row * m[a]
    return c


def _noise_seed(rng):
    """One 63-bit draw from ``rng``: the key of a batch's input-noise stream."""
    return int(rng.integers(0, 2**63 - 1))


def _add_input_noise(x, std, rng):
    """In place: x += N(0, std^2) (float32), i.i.d. over every element.

    The normals come from rate_rnn's counter-based stream (much faster than numpy's generator), keyed by one
    63-bit draw from ``rng``, with x viewed as one flat row: still a pure function of the seeded generator.
    """
    import torch

    from rate_rnn.ops import add_normal_

    add_normal_(torch.from_numpy(x).view(-1), float(std), _noise_seed(rng))
    return x


def _start_input_noise(x, std, rng):
    """Start writing x = N(0, std^2) noise in the background: the stream ``_add_input_noise`` would add to a zero
    x, same draw from ``rng``. Returns the pending work: x is valid after its ``wait()``."""
    import torch

    from rate_rnn.ops import add_normal_start

    return add_normal_start(torch.from_numpy(x), float(std), _noise_seed(rng), overwrite=True)


# ----------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------

_REQUIRED_HP = ("dt", "n_eachring", "n_input", "n_output", "loss_type", "sigma_x",
                "alpha", "ruleset", "rule_start")


def _get_rng(hp):
    """hp['rng'] as a Generator; an int seed is replaced in hp by a Generator."""
    rng = hp.get("rng")
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None and "seed" in hp:
        rng = hp["seed"]
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        gen = np.random.default_rng(int(rng))
        hp["rng"] = gen
        return gen
    raise TypeError("hp['rng'] must be a numpy.random.Generator or an int seed "
                    f"(got {type(rng).__name__}); e.g. hp['rng'] = np.random.default_rng(0)")


def _check_choice(value, valid, what):
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; valid {what}s: {list(valid)}")


def _testinit(hp):
    """testinit: 10 s, one trial, fixation input for 800 ms, nothing else (quirk 10).
    Returns (x, y, y_loc, c_mask, epochs, params)."""
    dt = hp["dt"]
    T, fix_off = int(10000 / dt), int(800 / dt)
    x = np.zeros((T, 1, hp["n_input"]), dtype=np.float32)
    x[:fix_off, 0, 0] = 1
    lsq = hp["loss_type"] == "lsq"
    y = np.full((T, 1, hp["n_output"]), 0.05 if lsq else 0.0, dtype=np.float32)
    y_loc = -np.ones((T, 1), dtype=np.float32)
    c_mask = np.zeros((T, 1, hp["n_output"]) if lsq else (T, 1), dtype=np.float32)
    return x, y, y_loc, c_mask, {"fix1": (None, fix_off), "go1": (fix_off, None)}, \
        {"fix_off": fix_off}


def _rule_inputs(rule, replace_rule, rule_strength):
    """Rules and strengths to write (original semantics, stricter checks)."""
    rules = rule if replace_rule is None else replace_rule
    if isinstance(rules, (str, numbers.Integral)):
        rules = [rules]
        if rule_strength is None:
            strengths = [1.0]
        elif np.ndim(rule_strength) == 0:
            strengths = [float(rule_strength)]
        else:
            strengths = list(rule_strength)
    else:
        rules = list(rules)
        strengths = [1.0] * len(rules) if rule_strength is None else list(np.atleast_1d(rule_strength))
    if len(strengths) != len(rules):
        raise ValueError(f"rule_strength has {len(strengths)} entries for {len(rules)} rule(s) {rules}")
    return rules, strengths


def generate_trials(rule, hp, mode, noise_on=True, batch_size=None, device=None, *,
                    params=None, rule_on=None, rule_off=None, replace_rule=None,
                    rule_strength=None):
    """Generate one batch of trials of ``rule``.

    Args:
        rule: one of ``ALL_RULES``.
        hp: hyperparameter dict (see ``multitask.hparams.get_default_hp``); uses
            dt, n_eachring, n_input, n_output, loss_type, sigma_x, alpha, ruleset,
            rule_start, optional easy_task, and rng (Generator or int seed; if
            absent, hp['seed']).  An int seed is replaced in hp by a Generator.
        mode: 'random' | 'test' | 'psychometric'.
        noise_on: add input noise N(0, (sigma_x*sqrt(2/alpha))^2) to every input.
        batch_size: trials in 'random' mode (default hp['batch_size_train']); in
            the other modes the batch size is fixed by the grid / params and a
            different value raises.
        device: None -> numpy arrays; a torch device or string -> torch tensors.
        params: dict for 'psychometric' mode (keys in ``PSYCHOMETRIC_KEYS``).
        rule_on, rule_off: step range of the rule input (None = trial start/end).
        replace_rule: str / int or list of them: rule unit(s) to drive instead.
        rule_strength: number or list (one per rule; may be negative).

    Returns:
        Trial (see its docstring for shapes and units).
    """
    _check_choice(rule, ALL_RULES, "rule")
    _check_choice(mode, MODES, "mode")
    missing = [k for k in _REQUIRED_HP if k not in hp]
    if missing:
        raise ValueError(f"hp lacks key(s) {missing}; start from hparams.get_default_hp(ruleset)")
    if mode == "psychometric":
        if not isinstance(params, dict):
            raise ValueError("'psychometric' mode needs params=dict with keys "
                             f"{list(PSYCHOMETRIC_KEYS.get(rule, ()))}")
        lacking = [k for k in PSYCHOMETRIC_KEYS.get(rule, ()) if k not in params]
        if lacking:
            raise ValueError(f"psychometric params for {rule!r} lack {lacking}; "
                             f"required: {list(PSYCHOMETRIC_KEYS[rule])}")
    elif params is not None:
        raise ValueError(f"params= is only used in 'psychometric' mode, not {mode!r}")
    if mode == "random":
        if batch_size is None:
            batch_size = hp.get("batch_size_train", 64)
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        batch_size = int(batch_size)
    rng = _get_rng(hp)
    rules, strengths = _rule_inputs(rule, replace_rule, rule_strength)

    # Original: `if rule is 'testinit': return trial` after replace_rule -> no rule input, no noise.
    no_inputs = len(rules) == 1 and rules[0] == "testinit"
    rule_inputs = [] if no_inputs else list(zip(rules, strengths))
    noise_std = hp["sigma_x"] * np.sqrt(2 / hp["alpha"]) if noise_on and not no_inputs else 0.0

    if rule == "testinit":
        x, y, y_loc, c_mask, epochs, trial_params = _testinit(hp)
        for name, strength in rule_inputs:
            x[rule_on:rule_off, :, get_rule_index(name, hp)] = strength
        if noise_std > 0:
            _add_input_noise(x, noise_std, rng)
    else:
        x, y, y_loc, c_mask, epochs, trial_params = _build(rule, hp, mode, rng, batch_size, params,
                                                          rule_inputs, rule_on, rule_off, noise_std)
    T, B = x.shape[:2]
    if mode != "random" and batch_size is not None and batch_size != B:
        raise ValueError(f"{mode!r} mode of {rule!r} has batch size {B}; got batch_size={batch_size}")

    trial = Trial(rule, mode, x, y, y_loc, c_mask, epochs, B, T, hp["dt"], trial_params)
    return trial.to(device) if device is not None else trial


def _build(rule, hp, mode, rng, batch_size, params, rule_inputs, rule_on, rule_off, noise_std):
    """Arrays of a (non-testinit) rule: (x, y, y_loc, c_mask, epochs, params).

    ``rule_inputs``: [(rule name, strength)] driven during x[rule_on:rule_off]; ``noise_std`` > 0 adds input
    noise. The noise is drawn into x in the background from the moment T is known, while the inputs, y and the
    cost mask are built; the inputs are then added to it, a few whole (B, n_input) rows over contiguous spans.
    """
    n_each, n_in, n_out = hp["n_eachring"], hp["n_input"], hp["n_output"]
    n_ring = (hp["rule_start"] - 1) // n_each
    if _NUM_RINGS_USED.get(rule, 2) > n_ring:
        raise ValueError(f"rule {rule!r} needs {_NUM_RINGS_USED[rule]} input rings but hp "
                         f"(ruleset {hp['ruleset']!r}) has {n_ring}; use ruleset 'oicdmc'")
    rule_cols = [(get_rule_index(name, hp), strength) for name, strength in rule_inputs]
    plan = _RULE_FUNCS[rule](_Ctx(hp, rng, mode, batch_size, params))
    T, B = plan.tdim, plan.batch_size
    lsq = hp["loss_type"] == "lsq"
    x = np.empty((T, B, n_in), dtype=np.float32)
    pending = _start_input_noise(x, noise_std, rng) if noise_std > 0 else None
    try:
        bumps = _Bumps(n_each)
        rule_span = slice(rule_on, rule_off).indices(T)[:2]  # the original's x[rule_on:rule_off] semantics
        segments = _input_segments(plan, bumps, n_each, n_in, T, rule_cols, rule_span)
        y, y_loc = _targets(plan, T, B, n_out, bumps, lsq)
        c_mask = _cost_mask(plan.go_on, T, B, n_out, hp["dt"], lsq)
    finally:
        if pending is not None:
            pending.wait()
    for a, b, row in segments:
        if pending is None:
            x[a:b] = row
        else:
            x[a:b] += row
    return x, y, y_loc, c_mask, plan.epochs, plan.params


def trial_length_stats(rule, hp, n=1000, seed=0):
    """Trial length T (steps) in 'random' mode over ``n`` batches.

    Uses its own Generator(seed) (hp['rng'] is not advanced).
    Returns {'mean': float, 'min': int, 'max': int, 'n': n}.
    """
    hp_local = dict(hp, rng=np.random.default_rng(seed))
    lengths = np.array([generate_trials(rule, hp_local, "random", noise_on=False,
                                        batch_size=1).tdim for _ in range(int(n))])
    return {"mean": float(lengths.mean()), "min": int(lengths.min()),
            "max": int(lengths.max()), "n": int(n)}


def plot_trial(rule, hp, mode="test", trial_index=0, noise_on=False, trial=None,
               batch_size=None, params=None, figsize=(4.0, 6.0)):
    """Figure of one trial's inputs and targets (the paper's Fig. 1 panels).

    Panels: fixation input; ring 1 and ring 2 (and ring 3 for 'oicdmc') inputs;
    rule inputs; fixation target; response-ring target.  Time axis in ms.
    Uses ``matplotlib.figure.Figure`` directly (no pyplot state; safe with Agg).
    Pass ``trial=`` to plot an existing Trial.  Returns the Figure.
    """
    from matplotlib.figure import Figure

    if trial is None:
        trial = generate_trials(rule, hp, mode, noise_on=noise_on, batch_size=batch_size,
                                params=params)
    x, y = np.asarray(_to_numpy(trial.x)), np.asarray(_to_numpy(trial.y))
    if not 0 <= trial_index < trial.batch_size:
        raise ValueError(f"trial_index {trial_index} outside 0..{trial.batch_size - 1}")
    x, y = x[:, trial_index], y[:, trial_index]
    n_each = hp["n_eachring"]
    n_ring = (hp["rule_start"] - 1) // n_each
    t_end = trial.tdim * trial.dt
    panels = [("Fix. in", "line", x[:, 0])]
    for k in range(n_ring):
        panels.append((f"Mod {k + 1}", "image", x[:, 1 + k * n_each:1 + (k + 1) * n_each]))
    panels += [("Rule", "image", x[:, hp["rule_start"]:]),
               ("Fix. out", "line", y[:, 0]), ("Out", "image", y[:, 1:])]
    heights = [1 if kind == "line" else 2 for _, kind, _ in panels]
    fig = Figure(figsize=figsize)
    axes = fig.subplots(len(panels), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    times = (np.arange(trial.tdim) + 0.5) * trial.dt
    for ax, (label, kind, data) in zip(axes, panels):
        if kind == "line":
            ax.plot(times, data, color="tab:green" if label == "Fix. out" else "tab:blue")
            ax.set_ylim(-0.1, 1.2)
            ax.set_yticks([0, 1])
        else:
            ax.imshow(data.T, aspect="auto", origin="lower", cmap="Purples",
                      vmin=0, vmax=1, extent=(0, t_end, 0, data.shape[1]),
                      interpolation="nearest")
            ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    axes[0].set_title(rule_name.get(trial.rule, trial.rule), fontsize=9)
    axes[-1].set_xlabel("Time (ms)")
    axes[-1].set_xlim(0, t_end)
    fig.tight_layout()
    return fig


def _to_numpy(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return a
