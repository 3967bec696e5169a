"""Tests of the task suite against the specification (Yang et al. 2019 code).

Expected values are written out by hand from the spec (section 1 and 2.1) or
come from arrays produced by the original task.py (tests/data/golden_tasks.npz,
see tests/data/README.md); none are computed with the code under test.
"""

import json
import math
import os

import numpy as np
import pytest

from multitask import tasks
from multitask.hparams import DEFAULT_KEYS, get_default_hp, update_hp, validate_hp

ALL20 = ["fdgo", "reactgo", "delaygo", "fdanti", "reactanti", "delayanti",
         "dm1", "dm2", "contextdm1", "contextdm2", "multidm",
         "delaydm1", "delaydm2", "contextdelaydm1", "contextdelaydm2", "multidelaydm",
         "dmsgo", "dmsnogo", "dmcgo", "dmcnogo"]
OICDMC = ["oic", "dmc"]
TWO_PI = 2 * math.pi
NOISE_STD = 0.01 * math.sqrt(2 / 0.2)  # sigma_x * sqrt(2/alpha) = 0.0316

# Rules whose fixation input never turns off (spec 1.6).
FIX_ALWAYS_ON = {"reactgo", "reactanti", "dmsgo", "dmsnogo", "dmcgo", "dmcnogo", "oic", "dmc"}

# 'random'-mode trial length range in steps at dt = 20 ms, worked out from the
# spec's timing distributions (int(ms/dt) truncation).
T_RANGE = {
    "fdgo": (65, 133), "fdanti": (65, 133),
    "reactgo": (50, 149), "reactanti": (50, 149),
    "delaygo": (60, 170), "delayanti": (60, 170),
    **{r: (50, 124) for r in ("dm1", "dm2", "contextdm1", "contextdm2", "multidm")},
    **{r: (70, 209) for r in ("delaydm1", "delaydm2", "contextdelaydm1",
                              "contextdelaydm2", "multidelaydm")},
    "dmsgo": (55, 165), "dmsnogo": (55, 165),
    "dmcgo": (40, 170), "dmcnogo": (40, 170),
    "oic": (80, 104), "dmc": (130, 154),
}

# 'test' mode: (B, T, go step) from spec 1.5 (ms / 20).
TEST_GRID = {
    "fdgo": (40, 100, 75), "fdanti": (40, 100, 75),
    "reactgo": (40, 125, 100), "reactanti": (40, 125, 100),
    "delaygo": (40, 125, 100), "delayanti": (40, 125, 100),
    "dm1": (100, 125, 100), "dm2": (100, 125, 100),
    "contextdm1": (500, 100, 75), "contextdm2": (500, 100, 75), "multidm": (500, 100, 75),
    "delaydm1": (100, 150, 135), "delaydm2": (100, 150, 135),
    "contextdelaydm1": (500, 175, 150), "contextdelaydm2": (500, 175, 150),
    "multidelaydm": (500, 175, 150),
    "dmsgo": (80, 135, 110), "dmsnogo": (80, 135, 110),
    "dmcgo": (80, 135, 110), "dmcnogo": (80, 135, 110),
    "oic": (128, 100, 75),
}

EPOCHS = {
    **{r: {"fix1", "stim1", "go1"} for r in ("fdgo", "fdanti", "dm1", "dm2", "contextdm1",
                                            "contextdm2", "multidm", "oic")},
    **{r: {"fix1", "go1"} for r in ("reactgo", "reactanti")},
    **{r: {"fix1", "stim1", "delay1", "go1"} for r in ("delaygo", "delayanti", "dmsgo", "dmsnogo",
                                                      "dmcgo", "dmcnogo", "dmc")},
    **{r: {"fix1", "stim1", "delay1", "stim2", "delay2", "go1"}
       for r in ("delaydm1", "delaydm2", "contextdelaydm1", "contextdelaydm2", "multidelaydm")},
}


def make_hp(ruleset="all", seed=0, **kw):
    hp = get_default_hp(ruleset)
    hp.update(kw)
    hp["rng"] = np.random.default_rng(seed)
    return hp


def ruleset_of(rule):
    return "oicdmc" if rule in OICDMC else "all"


def circ_dist(a, b):
    d = np.abs(np.asarray(a, float) - np.asarray(b, float)) % TWO_PI
    return np.minimum(d, TWO_PI - d)


def bump(locs, strengths=1.0):
    """Spec 1.2: s * 0.8 * exp(-0.5 (d/(pi/8))^2) on 32 units at 2*pi*k/32."""
    pref = TWO_PI * np.arange(32) / 32
    d = circ_dist(np.asarray(locs, float)[:, None], pref[None, :])
    return np.asarray(strengths, float).reshape(-1, 1) * 0.8 * np.exp(-0.5 * (d / (math.pi / 8)) ** 2)


def ring(x, k):
    """Input ring k (1-based) of x (T, B, n_in)."""
    return x[..., 1 + 32 * (k - 1):1 + 32 * k]


def go_step(trial):
    return trial.epochs["go1"][0]


@pytest.fixture(scope="module")
def random_trials():
    """One noise-free 64-trial 'random' batch per rule (seeded)."""
    out = {}
    for i, rule in enumerate(ALL20 + OICDMC):
        hp = make_hp(ruleset_of(rule), seed=100 + i)
        out[rule] = tasks.generate_trials(rule, hp, "random", noise_on=False, batch_size=64)
    return out


# --------------------------------------------------------------------------- hparams

def test_default_hp_values_from_spec():
    hp = get_default_hp("all")
    expected = dict(batch_size_train=64, batch_size_test=512, in_type="normal",
                    rnn_type="LeakyRNN", use_separate_input=False, loss_type="lsq",
                    optimizer="adam", activation="relu", tau=100, dt=20, alpha=0.2,
                    sigma_rec=0.05, sigma_x=0.01, w_rec_init="randortho", l1_h=0, l2_h=0,
                    l1_weight=0, l2_weight=0, l2_weight_init=0, p_weight_train=None,
                    target_perf=1.0, n_eachring=32, num_ring=2, n_rule=20, rule_start=65,
                    n_input=85, n_output=33, n_rnn=256, ruleset="all", save_name="test",
                    learning_rate=0.001, c_intsyn=0, ksi_intsyn=0, easy_task=False,
                    mix_rule=False)
    # every spec default present with the spec's value (other modules may add keys)
    assert {k: hp.get(k, "<missing>") for k in expected} == expected
    assert set(expected) <= set(DEFAULT_KEYS)


@pytest.mark.parametrize("ruleset,n_rule,num_ring,rule_start,n_input",
                         [("all", 20, 2, 65, 85), ("mante", 2, 2, 65, 67), ("oicdmc", 2, 3, 97, 99)])
def test_default_hp_sizes(ruleset, n_rule, num_ring, rule_start, n_input):
    hp = get_default_hp(ruleset)
    assert (hp["n_rule"], hp["num_ring"], hp["rule_start"], hp["n_input"], hp["n_output"]) == \
        (n_rule, num_ring, rule_start, n_input, 33)
    validate_hp(hp)


def test_hp_errors_and_update():
    with pytest.raises(ValueError, match="mante"):
        get_default_hp("nope")
    hp = get_default_hp("all")
    with pytest.raises(KeyError, match="learning_rate"):  # message lists valid keys
        update_hp(hp, learnig_rate=0.01)
    bad = dict(hp, typo_key=1)
    with pytest.raises(KeyError, match="typo_key"):
        validate_hp(bad)
    with pytest.raises(ValueError, match="LeakyGRU"):
        update_hp(hp, rnn_type="Elman")
    with pytest.raises(ValueError, match="inconsistent"):
        validate_hp(dict(hp, n_input=80))
    new = update_hp(hp, ruleset="oicdmc", dt=10, seed=3)
    assert (new["n_input"], new["rule_start"], new["num_ring"]) == (99, 97, 3)
    assert new["alpha"] == pytest.approx(0.1)
    assert hp["n_input"] == 85  # original untouched


# --------------------------------------------------------------------------- names

def test_rulesets_and_names():
    assert tasks.rules_dict["all"] == ALL20
    assert tasks.rules_dict["mante"] == ["contextdm1", "contextdm2"]
    assert tasks.rules_dict["oicdmc"] == ["oic", "dmc"]
    assert tasks.rule_name["fdgo"] == "Go" and tasks.rule_name["multidelaydm"] == "MultSen Dly DM"
    assert tasks.rule_name["dmcnogo"] == "DNMC" and tasks.rule_name["oic"] == "1IC"
    assert len({tasks.rule_name[r] for r in ALL20}) == 20


# --------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("rule", ALL20 + OICDMC)
def test_shapes_dtypes_epochs(rule, random_trials):
    tr = random_trials[rule]
    n_in = 99 if rule in OICDMC else 85
    T = tr.tdim
    assert tr.batch_size == 64 and tr.x.shape == (T, 64, n_in)
    assert tr.y.shape == (T, 64, 33) and tr.y_loc.shape == (T, 64) and tr.c_mask.shape == (T, 64, 33)
    for a in (tr.x, tr.y, tr.y_loc, tr.c_mask):
        assert a.dtype == np.float32
    assert set(tr.epochs) == EPOCHS[rule]
    assert tr.epochs["fix1"][0] is None and tr.epochs["go1"][1] is None
    lo, hi = T_RANGE[rule]
    assert lo <= T <= hi


@pytest.mark.parametrize("rule", ALL20 + OICDMC)
def test_random_lengths_within_spec(rule):
    hp = make_hp(ruleset_of(rule))
    stats = tasks.trial_length_stats(rule, hp, n=300)
    lo, hi = T_RANGE[rule]
    assert lo <= stats["min"] <= stats["mean"] <= stats["max"] <= hi
    assert stats["max"] - stats["min"] >= 0.6 * (hi - lo)  # spread over the range


def test_cross_entropy_shapes_and_mask_mean():
    hp = make_hp(loss_type="cross_entropy")
    tr = tasks.generate_trials("dm1", hp, "random", noise_on=False, batch_size=16)
    assert tr.c_mask.shape == (tr.tdim, 16)
    assert tr.c_mask.mean() == pytest.approx(1.0, rel=1e-5)
    go = go_step(tr)
    # pattern 0 / 1 / 0 / 5 before normalisation
    raw = tr.c_mask[:, 0] / tr.c_mask[go + 5, 0] * 5
    np.testing.assert_allclose(raw[:5], 0)
    np.testing.assert_allclose(raw[5:go], 1, rtol=1e-6)
    np.testing.assert_allclose(raw[go:go + 5], 0)
    # targets: baseline 0, fixation 1, one-hot (sum 1) at the nearest ring unit
    assert np.all(tr.y[:go, :, 0] == 1) and np.all(tr.y[:go, :, 1:] == 0)
    last = tr.y[-1]
    assert np.all(last[:, 0] == 0) and np.all(last[:, 1:].sum(1) == 1)
    nearest = np.argmin(circ_dist(tr.y_loc[-1][:, None], TWO_PI * np.arange(32) / 32), axis=1)
    assert np.all(np.argmax(last[:, 1:], axis=1) == nearest)


# --------------------------------------------------------------------------- fixation / mask

@pytest.mark.parametrize("rule", ALL20 + OICDMC)
def test_fixation_targets_and_mask(rule, random_trials):
    tr = random_trials[rule]
    go = go_step(tr)
    respond = tr.params["respond"]
    fix_in = tr.x[:, :, 0]
    if rule in FIX_ALWAYS_ON:  # quirk: fixation input never turns off
        assert np.all(fix_in == 1)
    else:
        assert np.all(fix_in[:go] == 1) and np.all(fix_in[go:] == 0)
    assert np.all(tr.y[:go, :, 0] == np.float32(0.8))
    assert np.all(tr.y[:go, :, 1:] == np.float32(0.05))
    assert np.all(tr.y[go:, respond, 0] == np.float32(0.05))
    assert np.all(tr.y[go:, ~respond, 0] == np.float32(0.8))  # no-go: keep fixating
    assert np.all(tr.y[go:, ~respond, 1:] == np.float32(0.05))
    assert np.all(tr.y_loc[:go] == -1) and np.all(tr.y_loc[go:, ~respond] == -1)
    # cost mask: 0 first 100 ms, 1 until go, 0 grace 100 ms, 5 after; fixation x2
    cm = tr.c_mask
    assert np.all(cm[:5] == 0)
    assert np.all(cm[5:go, :, 1:] == 1) and np.all(cm[5:go, :, 0] == 2)
    assert np.all(cm[go:go + 5] == 0)
    assert np.all(cm[go + 5:, :, 1:] == 5) and np.all(cm[go + 5:, :, 0] == 10)


@pytest.mark.parametrize("rule", [r for r in ALL20 + OICDMC if r != "dmc"])
def test_test_mode_grid_and_go_time(rule):
    B, T, go = TEST_GRID[rule]
    tr = tasks.generate_trials(rule, make_hp(ruleset_of(rule)), "test", noise_on=False)
    assert (tr.batch_size, tr.tdim, go_step(tr)) == (B, T, go)
    assert tr.x.shape[:2] == (T, B)
    if rule in FIX_ALWAYS_ON:
        assert np.all(tr.x[:, :, 0] == 1)
    else:
        assert np.all(tr.x[:go, :, 0] == 1) and np.all(tr.x[go:, :, 0] == 0)
    assert np.all(tr.y_loc[:go] == -1) and np.all(tr.y_loc[go:] >= 0)  # every test trial is GO


def test_test_mode_values():
    hp = make_hp()
    dm = tasks.generate_trials("dm1", hp, "test", noise_on=False)
    np.testing.assert_allclose(np.unique(np.round(dm.params["stim1_strengths"], 12)),
                               [0.8, 0.88, 0.96, 1.04, 1.12])
    np.testing.assert_allclose(dm.params["stim1_strengths"] + dm.params["stim2_strengths"], 2)
    np.testing.assert_allclose(np.unique(dm.params["stim1_locs"]), TWO_PI * np.arange(20) / 20)
    ddm = tasks.generate_trials("delaydm1", hp, "test", noise_on=False)
    np.testing.assert_allclose(np.unique(np.round(ddm.params["stim1_strengths"], 12)),
                               [0.5, 0.7, 0.9, 1.1, 1.3])
    # oic quirk: only the first 128 of 256 locations, all category 1 (< pi)
    oic = tasks.generate_trials("oic", make_hp("oicdmc"), "test", noise_on=False)
    np.testing.assert_allclose(oic.params["stim1_locs"], (0.1 + 0.8 * np.arange(128) / 128) * math.pi)
    # dmc (Freedman) quirk: stim2 onset random in 'test' mode: 1500 ms + U(800,1200)
    dmc = tasks.generate_trials("dmc", make_hp("oicdmc"), "test", noise_on=False)
    assert dmc.batch_size == 128 and 75 + 40 <= go_step(dmc) <= 75 + 59


# --------------------------------------------------------------------------- stimuli and targets

def test_go_family_encoding_and_targets(random_trials):
    for rule in ("fdgo", "fdanti", "reactgo", "reactanti", "delaygo", "delayanti"):
        tr = random_trials[rule]
        p, go = tr.params, go_step(tr)
        mods = p["stim_mod"]
        assert len(set(mods)) == 1  # modality drawn once per batch
        m = int(mods[0])
        on = tr.epochs["stim1"][0] if "stim1" in tr.epochs else go
        off = tr.epochs["stim1"][1] if rule.startswith("delay") else tr.tdim
        expect = bump(p["stim_locs"])
        np.testing.assert_allclose(ring(tr.x, m)[on:off], np.broadcast_to(expect, (off - on, 64, 32)),
                                   rtol=1e-6, atol=1e-7)
        assert np.all(ring(tr.x, m)[:on] == 0) and np.all(ring(tr.x, m)[off:] == 0)
        assert np.all(ring(tr.x, 3 - m) == 0)
        resp = p["stim_locs"] + (math.pi if "anti" in rule else 0)
        np.testing.assert_allclose(circ_dist(tr.y_loc[-1], resp), 0, atol=1e-5)
        np.testing.assert_allclose(tr.y[-1, :, 1:], 0.05 + bump(p["response_locs"]), atol=1e-7)


def test_dm_families(random_trials):
    for rule in ("dm1", "dm2", "delaydm1", "delaydm2"):
        tr = random_trials[rule]
        p = tr.params
        s1, s2 = p["stim1_strengths"], p["stim2_strengths"]
        cohs = [0.01, 0.02, 0.04, 0.08] if rule.startswith("dm") else [0.08, 0.16, 0.32]
        coh = np.abs(s1 - s2) / 2
        assert np.all(np.min(np.abs(coh[:, None] - np.array(cohs)), axis=1) < 1e-9)
        assert np.all(((s1 + s2) / 2 >= 0.8) & ((s1 + s2) / 2 <= 1.2))
        dist = circ_dist(p["stim1_locs"], p["stim2_locs"])
        assert np.all((dist >= 0.5 * math.pi - 1e-9) & (dist <= math.pi + 1e-9))
        target = np.where(s1 > s2, p["stim1_locs"], p["stim2_locs"])
        np.testing.assert_allclose(circ_dist(tr.y_loc[-1], target), 0, atol=1e-5)
        m = 1 if rule.endswith("1") else 2
        assert np.all(ring(tr.x, 3 - m) == 0)
        if rule.startswith("dm"):
            on, off = tr.epochs["stim1"]
            expect = bump(p["stim1_locs"], s1) + bump(p["stim2_locs"], s2)
            np.testing.assert_allclose(ring(tr.x, m)[on], expect, rtol=1e-6, atol=1e-7)
            assert np.all(ring(tr.x, m)[off:] == 0)  # off at fixation offset
        else:
            on1, off1 = tr.epochs["stim1"]
            on2, off2 = tr.epochs["stim2"]
            np.testing.assert_allclose(ring(tr.x, m)[on1], bump(p["stim1_locs"], s1), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(ring(tr.x, m)[on2], bump(p["stim2_locs"], s2), rtol=1e-6, atol=1e-7)
            assert np.all(ring(tr.x, m)[off1:on2] == 0) and np.all(ring(tr.x, m)[off2:] == 0)


def test_context_and_multisensory(random_trials):
    for rule in ("contextdm1", "contextdm2", "multidm",
                 "contextdelaydm1", "contextdelaydm2", "multidelaydm"):
        tr = random_trials[rule]
        p = tr.params
        a1, b1 = p["stim1_mod1_strengths"], p["stim2_mod1_strengths"]
        a2, b2 = p["stim1_mod2_strengths"], p["stim2_mod2_strengths"]
        on = tr.epochs["stim1"][0]
        for k, (sa, sb) in ((1, (a1, b1)), (2, (a2, b2))):
            if "delay" in rule:
                expect = bump(p["stim1_locs"], sa)
            else:
                expect = bump(p["stim1_locs"], sa) + bump(p["stim2_locs"], sb)
            np.testing.assert_allclose(ring(tr.x, k)[on], expect, rtol=1e-6, atol=1e-7)
        if rule.endswith("1"):
            sa, sb = a1, b1
        elif rule.endswith("2"):
            sa, sb = a2, b2
        else:
            sa, sb = a1 + a2, b1 + b2
            # each stimulus split across modalities: |m1 - m2| / mean in [0.2, 0.8]
            frac = np.abs(a1 - a2) / ((a1 + a2) / 2)
            assert np.all((frac >= 0.2 - 1e-9) & (frac <= 0.8 + 1e-9))
        target = np.where(sa > sb, p["stim1_locs"], p["stim2_locs"])
        np.testing.assert_allclose(circ_dist(tr.y_loc[-1], target), 0, atol=1e-5)
    # Ctx DM: modalities conflict in roughly half of the trials
    hp = make_hp(seed=5)
    tr = tasks.generate_trials("contextdm1", hp, "random", noise_on=False, batch_size=2000)
    p = tr.params
    conflict = (p["stim1_mod1_strengths"] > p["stim2_mod1_strengths"]) != \
        (p["stim1_mod2_strengths"] > p["stim2_mod2_strengths"])
    assert 0.45 < conflict.mean() < 0.55


def test_easy_task_scales_coherence():
    hp = make_hp(easy_task=True)
    tr = tasks.generate_trials("dm1", hp, "random", noise_on=False, batch_size=200)
    coh = np.abs(tr.params["stim1_strengths"] - tr.params["stim2_strengths"]) / 2
    assert set(np.round(coh, 9)) <= {0.1, 0.2, 0.4, 0.8}
    tr = tasks.generate_trials("delaydm1", hp, "random", noise_on=False, batch_size=200)
    coh = np.abs(tr.params["stim1_strengths"] - tr.params["stim2_strengths"]) / 2
    assert set(np.round(coh, 9)) <= {0.16, 0.32, 0.64}


def test_match_tasks():
    hp = make_hp(seed=9)
    for rule in ("dmsgo", "dmsnogo", "dmcgo", "dmcnogo"):
        tr = tasks.generate_trials(rule, hp, "random", noise_on=False, batch_size=256)
        p, go = tr.params, go_step(tr)
        l1, l2 = p["stim1_locs"], p["stim2_locs"]
        if rule.startswith("dms"):
            d = circ_dist(l1, l2)
            match = d < 1e-9
            assert np.all(match | (d >= math.pi / 9 - 1e-9))  # non-match >= 20 degrees apart
        else:
            ten = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9]) * math.pi
            assert np.all(np.min(np.abs(l1[:, None] - ten), 1) < 1e-12)
            match = (l1 < math.pi) == (l2 < math.pi)
        go_trials = match if rule.endswith("sgo") or rule.endswith("cgo") else ~match
        assert 0.3 < go_trials.mean() < 0.7
        np.testing.assert_array_equal(tr.params["respond"], go_trials)
        np.testing.assert_allclose(tr.y_loc[-1, go_trials], l2[go_trials], atol=1e-5)
        assert np.all(tr.y_loc[:, ~go_trials] == -1)
        # stim2 stays on until the trial end; modality drawn once per batch
        m2 = int(p["stim2_mod"][0])
        assert len(set(p["stim2_mod"])) == 1
        np.testing.assert_allclose(ring(tr.x, m2)[-1], bump(l2), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ring(tr.x, m2)[go], bump(l2), rtol=1e-6, atol=1e-7)


def test_oic_targets():
    tr = tasks.generate_trials("oic", make_hp("oicdmc"), "random", noise_on=False, batch_size=128)
    p = tr.params
    np.testing.assert_allclose(circ_dist(p["stim3_locs"], p["stim2_locs"]), math.pi, atol=1e-9)
    target = np.where(p["stim1_locs"] >= math.pi, p["stim2_locs"], p["stim3_locs"])
    np.testing.assert_allclose(circ_dist(tr.y_loc[-1], target), 0, atol=1e-5)
    go = go_step(tr)
    np.testing.assert_allclose(ring(tr.x, 2)[go], bump(p["stim2_locs"]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ring(tr.x, 3)[go], bump(p["stim3_locs"]), rtol=1e-6, atol=1e-7)
    assert np.all(ring(tr.x, 2)[:go] == 0)


def test_testinit_quirks():
    hp = make_hp()
    tr = tasks.generate_trials("testinit", hp, "random")  # noise_on default True
    assert tr.x.shape == (500, 1, 85)
    assert np.all(tr.x[:40, 0, 0] == 1) and np.all(tr.x[40:, 0, 0] == 0)
    assert np.all(tr.x[:, :, 1:] == 0)  # no rule input, no noise
    assert np.all(tr.y_loc == -1)


# --------------------------------------------------------------------------- noise / determinism

def test_noise_std_on_all_channels():
    a = tasks.generate_trials("contextdm1", make_hp(seed=4), "test", noise_on=True)
    b = tasks.generate_trials("contextdm1", make_hp(seed=4), "test", noise_on=False)
    noise = (a.x - b.x).astype(np.float64)
    for cols in (slice(0, 1), slice(1, 65), slice(65, 85)):  # fixation, rings, rules
        assert noise[..., cols].std() == pytest.approx(NOISE_STD, rel=0.03)
    assert abs(noise.mean()) < 1e-3
    assert np.array_equal(a.y, b.y) and np.array_equal(a.c_mask, b.c_mask)


@pytest.mark.parametrize("rule", ["fdgo", "contextdelaydm1", "dmcnogo"])
def test_input_noise_is_the_documented_stream(rule):
    """x = noise-free x + sigma * the flat noise stream keyed by the generator's next draw after the plan,
    checked against the pure-torch twin of the stream (the generator adds it in the background)."""
    import rate_rnn

    a = tasks.generate_trials(rule, make_hp(seed=5), "random", noise_on=True, batch_size=48)
    hp = make_hp(seed=5)
    b = tasks.generate_trials(rule, hp, "random", noise_on=False, batch_size=48)
    seed = int(hp["rng"].integers(0, 2**63 - 1))
    twin = NOISE_STD * rate_rnn.standard_normal_ref(seed, (b.x.size,)).numpy().reshape(b.x.shape)
    np.testing.assert_allclose(a.x, b.x + twin, rtol=0, atol=2e-6)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.c_mask, b.c_mask)


@pytest.mark.parametrize("rule", ALL20 + OICDMC)
def test_determinism_per_seed(rule):
    rs = ruleset_of(rule)
    a = tasks.generate_trials(rule, make_hp(rs, seed=11), "random", batch_size=16)
    b = tasks.generate_trials(rule, make_hp(rs, seed=11), "random", batch_size=16)
    c = tasks.generate_trials(rule, make_hp(rs, seed=12), "random", batch_size=16)
    assert a.tdim == b.tdim and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert a.x.shape != c.x.shape or not np.array_equal(a.x, c.x)


def test_int_seed_is_accepted_and_advances():
    hp = get_default_hp("all")
    hp["rng"] = 7
    a = tasks.generate_trials("dm1", hp, "random", batch_size=8)
    assert isinstance(hp["rng"], np.random.Generator)
    b = tasks.generate_trials("dm1", hp, "random", batch_size=8)
    hp2 = dict(get_default_hp("all"), rng=7)
    a2 = tasks.generate_trials("dm1", hp2, "random", batch_size=8)
    assert np.array_equal(a.x, a2.x)
    assert a.x.shape != b.x.shape or not np.array_equal(a.x, b.x)


# --------------------------------------------------------------------------- rule inputs

def test_rule_input_columns():
    tr = tasks.generate_trials("dm1", make_hp(), "test", noise_on=False)
    rules = tr.x[:, :, 65:]
    assert np.all(rules[:, :, 6] == 1)  # dm1 is rule 6 -> column 71, whole trial
    assert np.all(np.delete(rules, 6, axis=2) == 0)
    tr = tasks.generate_trials("contextdm2", make_hp("mante"), "test", noise_on=False)
    assert tr.x.shape[2] == 67 and np.all(tr.x[:, :, 66] == 1) and np.all(tr.x[:, :, 65] == 0)
    tr = tasks.generate_trials("dmc", make_hp("oicdmc"), "test", noise_on=False)
    assert np.all(tr.x[:, :, 98] == 1) and np.all(tr.x[:, :, 97] == 0)


def test_replace_rule_and_strength():
    hp = make_hp()
    tr = tasks.generate_trials("delayanti", hp, "test", noise_on=False,
                               replace_rule=["delayanti", "fdanti", "delaygo", "fdgo"],
                               rule_strength=[0, 1, 1, -1])
    r = tr.x[:, :, 65:]
    expected = np.zeros(20)
    expected[[5, 3, 2, 0]] = [0, 1, 1, -1]
    assert np.all(r == expected)
    tr = tasks.generate_trials("delayanti", hp, "test", noise_on=False,
                               replace_rule="fdgo", rule_strength=0.5, rule_on=10, rule_off=30)
    r = tr.x[:, :, 65:]
    assert np.all(r[10:30, :, 0] == 0.5) and np.all(r[:10] == 0) and np.all(r[30:] == 0)
    assert np.all(r[:, :, 1:] == 0)
    with pytest.raises(ValueError, match="rule_strength"):
        tasks.generate_trials("fdgo", hp, "test", replace_rule=["fdgo", "dm1"], rule_strength=[1.0])
    with pytest.raises(ValueError, match="contextdm1"):  # not a rule of 'mante'
        tasks.generate_trials("contextdm1", make_hp("mante"), "test", replace_rule="fdgo")


# --------------------------------------------------------------------------- psychometric

def test_psychometric_timings():
    hp = make_hp()
    locs = np.array([0.0, 1.0, 2.0, 4.0])
    tr = tasks.generate_trials("fdgo", hp, "psychometric", noise_on=False,
                               params={"stim_locs": locs, "stim_time": 600})
    assert (tr.epochs["stim1"], tr.tdim) == ((15, 45), 65)
    tr = tasks.generate_trials("reactanti", hp, "psychometric", noise_on=False,
                               params={"stim_locs": locs})
    assert (go_step(tr), tr.tdim) == (50, 70)
    np.testing.assert_allclose(tr.y_loc[-1], (locs + math.pi) % TWO_PI, atol=1e-6)
    tr = tasks.generate_trials("delaygo", hp, "psychometric", noise_on=False,
                               params={"stim_locs": locs, "stim_ons": 200, "stim_offs": 600,
                                       "delay_time": 1000})
    assert (tr.epochs["stim1"], go_step(tr), tr.tdim) == ((10, 30), 80, 100)
    s = np.array([0.9, 1.1, 1.0, 1.2])
    tr = tasks.generate_trials("dm2", hp, "psychometric", noise_on=False,
                               params={"stim1_locs": locs, "stim2_locs": locs + 3,
                                       "stim1_strengths": s, "stim2_strengths": 2 - s,
                                       "stim_time": 400})
    assert (tr.epochs["stim1"], tr.tdim) == ((15, 35), 55)
    np.testing.assert_allclose(tr.y_loc[-1], [3.0, 1.0, 5.0, 4.0], atol=1e-6)  # tie -> stim 2
    ctx = {"stim1_locs": locs, "stim2_locs": locs + 3, "stim1_mod1_strengths": s,
           "stim2_mod1_strengths": 2 - s, "stim1_mod2_strengths": 2 - s,
           "stim2_mod2_strengths": s, "stim_time": 800}
    tr = tasks.generate_trials("contextdm2", hp, "psychometric", noise_on=False, params=ctx)
    assert (tr.epochs["stim1"], tr.tdim) == ((25, 65), 90)
    np.testing.assert_allclose(tr.y_loc[-1], [0.0, 4.0, 5.0, 7.0], atol=1e-6)
    tr = tasks.generate_trials("contextdelaydm1", hp, "psychometric", noise_on=False, params=ctx)
    assert (tr.epochs["stim1"], tr.epochs["stim2"], go_step(tr), tr.tdim) == \
        ((15, 30), (70, 85), 95, 110)
    tr = tasks.generate_trials("delaydm1", hp, "psychometric", noise_on=False,
                               params={"stim1_locs": locs, "stim2_locs": locs + 3,
                                       "stim1_strengths": s, "stim2_strengths": 2 - s,
                                       "stim1_ons": 200, "stim1_offs": 400, "stim2_ons": 1000,
                                       "stim2_offs": 1400})
    assert (tr.epochs["stim2"], go_step(tr), tr.tdim) == ((50, 70), 80, 95)
    # DMS psychometric: match iff within pi/36 (5 degrees)
    l2 = locs + np.array([0.0, math.pi / 40, math.pi / 30, 1.0])
    tr = tasks.generate_trials("dmsgo", hp, "psychometric", noise_on=False,
                               params={"stim1_locs": locs, "stim2_locs": l2})
    assert (tr.epochs["stim1"], go_step(tr), tr.tdim) == ((25, 40), 100, 125)
    np.testing.assert_array_equal(tr.params["respond"], [True, True, False, False])
    tr = tasks.generate_trials("dmc", make_hp("oicdmc"), "psychometric", noise_on=False,
                               params={"stim1_locs": locs, "stim2_locs": l2})
    assert (tr.epochs["stim1"], go_step(tr), tr.tdim) == ((25, 75), 125, 150)
    tr = tasks.generate_trials("oic", make_hp("oicdmc"), "psychometric", noise_on=False,
                               params={"stim1_locs": locs, "stim2_locs": l2, "stim3_locs": l2 + 1})
    assert (tr.epochs["stim1"], tr.tdim) == ((25, 75), 100)


# --------------------------------------------------------------------------- errors

def test_bad_inputs_raise_clear_errors():
    hp = make_hp()
    with pytest.raises(ValueError, match="fdgo"):
        tasks.generate_trials("fdgoo", hp, "random")
    with pytest.raises(ValueError, match="psychometric"):
        tasks.generate_trials("fdgo", hp, "sample")
    with pytest.raises(ValueError, match="stim_time"):
        tasks.generate_trials("fdgo", hp, "psychometric", params={"stim_locs": [0.0]})
    with pytest.raises(ValueError, match="params"):
        tasks.generate_trials("fdgo", hp, "psychometric")
    with pytest.raises(ValueError, match="psychometric"):
        tasks.generate_trials("fdgo", hp, "test", params={"stim_locs": [0.0]})
    with pytest.raises(ValueError, match="equal length"):
        tasks.generate_trials("dmsgo", hp, "psychometric",
                              params={"stim1_locs": [0.0, 1.0], "stim2_locs": [0.0]})
    with pytest.raises(ValueError, match="batch_size"):
        tasks.generate_trials("fdgo", hp, "random", batch_size=0)
    with pytest.raises(ValueError, match="batch size 40"):
        tasks.generate_trials("fdgo", hp, "test", batch_size=64)
    with pytest.raises(ValueError, match="oicdmc"):
        tasks.generate_trials("oic", hp, "random")
    with pytest.raises(TypeError, match="Generator"):
        tasks.generate_trials("fdgo", dict(hp, rng=np.random.RandomState(0)), "random")
    with pytest.raises(ValueError, match="dt"):
        tasks.generate_trials("fdgo", {"rng": 0}, "random")
    with pytest.raises(TypeError):
        tasks.generate_trials("fdgo", hp, "random", unknown_kw=1)


# --------------------------------------------------------------------------- golden arrays

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "golden_tasks.npz")


def _golden_cases():
    with np.load(GOLDEN) as z:
        return json.loads(str(z["meta"]))


@pytest.mark.parametrize("case", _golden_cases(), ids=lambda c: c["key"])
def test_golden_against_original(case):
    """'test' / 'psychometric' arrays equal the original code's, element for element."""
    key = case["key"]
    with np.load(GOLDEN) as z:
        g = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(key + "/")}
    params = {k.split("/", 1)[1]: v for k, v in g.items() if k.startswith("params/")}
    for k, v in params.items():
        params[k] = v.item() if v.ndim == 0 else v
    hp = make_hp(case["ruleset"], loss_type=case["loss_type"])
    tr = tasks.generate_trials(case["rule"], hp, case["mode"], noise_on=False,
                               params=params or None)
    assert (tr.tdim, tr.batch_size) == (case["T"], case["B"])
    assert tr.epochs == {k: tuple(v) for k, v in case["epochs"].items()}
    idx = g["trials"]
    for name in ("x", "y", "y_loc", "c_mask"):
        ours = getattr(tr, name)[:, idx]
        assert ours.dtype == g[name].dtype
        np.testing.assert_array_equal(ours, g[name], err_msg=f"{key}: {name}")


# --------------------------------------------------------------------------- device / plotting

def test_device_returns_torch_tensors():
    torch = pytest.importorskip("torch")
    tr = tasks.generate_trials("dm1", make_hp(seed=1), "random", batch_size=8, device="cpu")
    ref = tasks.generate_trials("dm1", make_hp(seed=1), "random", batch_size=8)
    for name in ("x", "y", "y_loc", "c_mask"):
        t = getattr(tr, name)
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
        np.testing.assert_array_equal(t.numpy(), getattr(ref, name))


def test_plot_trial_returns_figure():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    fig = tasks.plot_trial("contextdm1", make_hp(), mode="test", trial_index=3)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    fig = tasks.plot_trial("oic", make_hp("oicdmc"), mode="random", batch_size=4)
    assert len(fig.axes) == 7
