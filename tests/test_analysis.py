"""Analyses (spec §4): planted answers on constructed data, and a small trained network end to end (CLI)."""
import copy
import json
import math

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from scipy import stats

from multitask.__main__ import main as cli
from multitask.analysis import (ANALYSES, clustering, performance, run_analyses, standard_analysis, taskset,
                                variance, write_training_figures)
from multitask.network import Run_Model
from multitask.tasks import generate_trials, get_rule_index
from multitask.train import load_model, save_json, set_hyperparameters, train

#: Rules of the small trained network: task-set setup 1 plus the choice tasks of the psychometric analyses.
RULES = ["fdgo", "fdanti", "delaygo", "delayanti", "dm1", "contextdm1", "multidm"]
N_RNN = 64


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A 64-unit softplus network trained for 300 updates on 7 rules of the 'all' ruleset."""
    run_dir = tmp_path_factory.mktemp("analysis") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small ops: one thread is much faster on a busy 2-core machine
    try:
        hp, log, opt = set_hyperparameters(
            run_dir, hp={"n_rnn": N_RNN, "batch_size_train": 32, "batch_size_test": 32, "activation": "softplus",
                         "w_rec_init": "diag"},
            ruleset="all", rule_trains=RULES, max_steps=32 * 300, display_step=100, seed=3)
        run_model = Run_Model(hp)
        log = train(run_model, opt, hp, log, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run_dir, run_model, hp, log


@pytest.fixture(scope="session")
def analyzed_run(trained_run):
    run_dir = trained_run[0]
    rc = cli(["analyze", str(run_dir), "--quiet"])
    return run_dir, rc


# ---------------------------------------------------------------------------------------------- task variance

def test_task_variance_hand_computed():
    """TV = mean over the window of the variance over conditions: h[t, 1, i] = (i+1) t, h[t, 0, i] = 0 ->
    Var_b = ((i+1) t / 2)^2; over t in {1, 2}: (i+1)^2 (1 + 4) / 8."""
    T, N = 4, 3
    h = np.zeros((T, 2, N))
    for t in range(T):
        h[t, 1] = (np.arange(N) + 1) * t
    np.testing.assert_allclose(variance.task_variance(h, 1, 3), (np.arange(N) + 1) ** 2 * 5 / 8)
    np.testing.assert_allclose(variance.task_variance(h), (np.arange(N) + 1) ** 2 * (0 + 1 + 4 + 9) / 16)


def test_ftv_planted_units():
    """A unit active only in A -> FTV +1, only in B -> -1, equal -> 0, (0.5, 1.5) -> -0.5; an inactive unit
    (TV_A + TV_B <= 1e-3) is left out; 20 bins on [-1, 1]."""
    h_var = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 1.5], [4e-4, 4e-4]])
    ftv, active = variance.fractional_task_variance(h_var, ["A", "B"], ("A", "B"))
    np.testing.assert_array_equal(active, [0, 1, 2, 3])
    np.testing.assert_allclose(ftv, [1.0, -1.0, 0.0, -0.5])
    counts, edges = variance.ftv_histogram(ftv)
    expected = np.zeros(20, int)
    expected[[19, 0, 10, 5]] = 1
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_allclose(edges, np.linspace(-1, 1, 21))


def test_variance_matches_a_direct_noise_free_run(trained_run):
    """'rule' TV = TV from the end of fix1 to the trial end of the noise-free 'test' grid with sigma_rec = 0;
    'epoch' keys skip fixation and are sorted by epoch name; a rotation keeps the summed TV (trace)."""
    run_dir = trained_run[0]
    run_model = load_model(run_dir)
    res = variance.compute_variance(run_model, random_rotation=True)
    assert res["rule"].keys == RULES and res["rule"].h_var_all.shape == (N_RNN, len(RULES))
    for rule in ("dm1", "delaygo"):
        trial = generate_trials(rule, run_model.hp, "test", noise_on=False)
        with torch.no_grad():
            _, h = run_model.model(torch.from_numpy(trial.x), sigma_rec_override=0.0)
        h = h.numpy().astype(np.float64)
        start = trial.epochs["fix1"][1]
        np.testing.assert_allclose(res["rule"].column(rule), h[start:].var(axis=1).mean(axis=0), rtol=1e-5,
                                   atol=1e-10)
        s0, s1 = trial.epochs["stim1"]
        np.testing.assert_allclose(res["epoch"].column((rule, "stim1")), h[s0:s1].var(axis=1).mean(axis=0),
                                   rtol=1e-5, atol=1e-10)
    epoch_names = [k[1] for k in res["epoch"].keys]
    assert epoch_names == sorted(epoch_names) and not any("fix" in e for e in epoch_names)
    assert ("delaygo", "delay1") in res["epoch"].keys and ("dm1", "delay1") not in res["epoch"].keys
    np.testing.assert_allclose(res["rule_rr"].h_var_all.sum(axis=0), res["rule"].h_var_all.sum(axis=0), rtol=1e-4)
    assert not np.allclose(res["rule_rr"].h_var_all, res["rule"].h_var_all)


# ---------------------------------------------------------------------------------------------- clustering

def _two_groups(seed=0):
    rng = np.random.default_rng(seed)
    a = np.array([1, 1, 1, 0, 0, 0.0]) * rng.uniform(0.8, 1.2, (30, 1))
    b = np.array([0, 0, 0, 1, 1, 1.0]) * rng.uniform(0.2, 0.4, (20, 1))  # smaller scale: max-normalised away
    h = np.concatenate([a, b, np.zeros((5, 6))]) + rng.uniform(0, 0.01, (55, 6)) * (np.arange(55) < 50)[:, None]
    perm = rng.permutation(55)
    return h[perm], set(np.where(perm < 30)[0]), set(np.where((perm >= 30) & (perm < 50))[0])


def test_two_planted_groups_give_two_clusters():
    h_var, group_a, group_b = _two_groups()
    cl = clustering.cluster_units(h_var, list("abcdef"), k_range=range(2, 12), n_init=5)
    assert cl.n_cluster == 2
    assert np.nanargmax(cl.scores) == 0 and cl.k_values[0] == 2
    assert set(cl.ind_active) == group_a | group_b  # the 5 silent units are not active
    # clusters are numbered by preferred task: group A prefers a..c, so it is cluster 0
    assert set(cl.members(0)) == group_a and set(cl.members(1)) == group_b
    np.testing.assert_allclose(cl.h_normvar.max(axis=1), 1.0)
    assert np.all(np.diff(cl.labels) >= 0)


def test_clustering_needs_active_units():
    with pytest.raises(ValueError, match="active units"):
        clustering.cluster_units(np.zeros((10, 4)), list("abcd"))


def test_lesioned_forward_equals_lesion_units(trained_run):
    """The batched lesion pass equals lesion_units + the compiled forward (recurrent noise off)."""
    run_model = load_model(trained_run[0])
    trial = generate_trials("dm1", run_model.hp, "test", noise_on=False)
    x = torch.from_numpy(trial.x[:, :8])
    units = np.arange(0, N_RNN, 3)
    masks = np.ones((2, N_RNN), np.float32)
    masks[1, units] = 0
    logits = clustering.lesioned_forward(run_model, x, masks, sigma_rec=0.0)
    with torch.no_grad():
        intact, _ = run_model.model(x, sigma_rec_override=0.0)
        lesioned = copy.deepcopy(run_model)
        lesioned.lesion_units(units)
        cut, _ = lesioned.model(x, sigma_rec_override=0.0)
    torch.testing.assert_close(logits[:, 0], intact, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[:, 1], cut, atol=1e-5, rtol=1e-5)
    assert (intact - cut).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------- psychometrics

def test_choice_fractions_tolerance():
    """Choices within 0.3*pi of a stimulus count for it; farther away for neither."""
    s1 = np.zeros(4)
    s2 = np.full(4, np.pi)
    resp = np.array([0.29 * np.pi, 2 * np.pi - 0.29 * np.pi, 0.31 * np.pi, np.pi + 0.1])
    p1, n1, n2 = performance.choice_fractions(resp, s1, s2, (4, 1))
    assert n1.tolist() == [2] and n2.tolist() == [1]
    np.testing.assert_allclose(p1, [2 / 3])


def test_psychometric_fit_recovers_planted_observer():
    """An observer choosing 1 when x - mu + sigma*noise > 0 gives P = Phi((x - mu)/sigma); the fit through the
    choice readout recovers mu and sigma."""
    mu, sigma, n_rep = 0.004, 0.012, 20000
    x = 2 * performance.COHS
    rng = np.random.default_rng(0)
    s1 = np.repeat(2 * np.pi * np.arange(n_rep) / n_rep, len(x))
    s2 = (s1 + np.pi) % (2 * np.pi)
    xs = np.tile(x, n_rep)
    choose1 = xs - mu + sigma * rng.standard_normal(len(xs)) > 0
    resp = np.where(choose1, s1, s2) + rng.uniform(-0.2, 0.2, len(xs))  # within the 0.3*pi tolerance
    p1, _, _ = performance.choice_fractions(resp, s1, s2, (n_rep, len(x)))
    np.testing.assert_allclose(p1, stats.norm.cdf((x - mu) / sigma), atol=0.02)
    mu_hat, sigma_hat = performance.fit_cumulative_gaussian(x, p1)
    assert abs(mu_hat - mu) < 0.001 and abs(sigma_hat - sigma) < 0.1 * sigma


def test_weibull_thresholds_of_a_perfect_integrator():
    """P(correct) = 1 - 0.5 exp(-(c/a)^b) with a = 0.02 (t/200)^-0.5: the fits return a, b and slope -0.5."""
    t = performance.VARYTIME_STIM_TIMES
    cohs = performance.VARYTIME_COHS
    a = 0.02 * (t / 200.0) ** -0.5
    p = 1 - 0.5 * np.exp(-(cohs[:, None] / a[None, :]) ** 1.5)
    fit = performance.fit_thresholds({"cohs": cohs, "stim_times": t, "p_correct": p})
    np.testing.assert_allclose(fit["thresholds"], a, rtol=1e-2)
    np.testing.assert_allclose(fit["betas"], 1.5, rtol=2e-2)
    assert abs(fit["slope"] + 0.5) < 0.02
    assert abs(fit["perfect_integration_intercept"] - math.log10(0.02 * 200 ** 0.5)) < 0.01


# ---------------------------------------------------------------------------------------------- task set

def test_align_taskspace_hand_computed():
    """(0, 2) rotated onto +x; (1, -1) -> (-1, -1) -> flipped to (-1, 1); (3, 3) -> (3, -3) -> (3, 3)."""
    out = taskset.align_taskspace([[0, 2], [1, -1], [3, 3]])
    np.testing.assert_allclose(out, [[2, 0], [-1, 1], [3, 3]], atol=1e-12)


def test_replace_rule_names():
    rules = ["delayanti", "fdanti", "delaygo", "fdgo"]
    assert taskset.replace_rule_name(rules, [0, 1, 1, -1]) == "Anti + Dly Go - Go"
    assert taskset.replace_rule_name(rules, [1, 0, 0, 0]) == "Dly Anti"


def test_weight_taskspace_of_a_planted_parallelogram(trained_run):
    """Rule-input weights Go = p, Dly Go = p + d, Anti = q, Dly Anti = q + d lie in a plane: two PCs explain
    everything and the arrows Go->Dly Go and Anti->Dly Anti are equal."""
    run_model = copy.deepcopy(load_model(trained_run[0]))
    rng = np.random.default_rng(1)
    p, q, d = rng.standard_normal((3, N_RNN))
    planted = {"fdgo": p, "delaygo": p + d, "fdanti": q, "delayanti": q + d}
    with torch.no_grad():
        for rule, vec in planted.items():
            run_model.model.weight_ih[:, get_rule_index(rule, run_model.hp)] = torch.from_numpy(vec).float()
    space = taskset.compute_taskspace(run_model, 1, "weight")
    pos = dict(zip(space["rules"], space["coords"]))
    np.testing.assert_allclose(pos["delaygo"] - pos["fdgo"], pos["delayanti"] - pos["fdanti"], atol=1e-4)
    assert abs(space["explained_variance_ratio"].sum() - 1) < 1e-6
    assert taskset.parallelogram_error(space) < 1e-4


# ---------------------------------------------------------------------------------------------- figures

def test_easy_activity_plot_returns_open_figures(trained_run, tmp_path):
    """The published call easy_activity_plot(run_model, rule): 3 figures left open (a notebook shows them);
    with a run directory and save=DIR it writes 3 PNGs."""
    run_dir, run_model = trained_run[0], trained_run[1]
    figs = standard_analysis.easy_activity_plot(run_model, "dm1")
    assert len(figs) == 3 and all(plt.fignum_exists(f.number) for f in figs)
    for f in figs:
        plt.close(f)
    paths = standard_analysis.easy_activity_plot(run_dir, "dm1", save=tmp_path)
    assert len(paths) == 3 and all(p.exists() and p.stat().st_size > 1000 for p in paths)


def test_schematic_is_rebuilt_with_dt_1(trained_run):
    """The DM 1 'test' trial lasts 2500 ms: 2500 time columns at dt = 1 ms (125 at the trained dt = 20)."""
    figs = standard_analysis.schematic_plot(trained_run[1], "dm1")
    assert len(figs) == 4
    units = figs[2].axes[0].images[0].get_array()
    assert units.shape == (N_RNN, 2500)
    for f in figs:
        plt.close(f)


def test_write_training_figures(trained_run, tmp_path):
    _, run_model, hp, log = trained_run
    paths = write_training_figures(run_model, hp, log, tmp_path)
    names = {p.name for p in paths}
    assert {"learning_curves.png", "performance_progress.png", "sample_Go.png", "sample_DM1.png"} <= names
    assert len(paths) == len(RULES) + 2
    assert all(p.parent == tmp_path / "figures" and p.stat().st_size > 1000 for p in paths)


# ---------------------------------------------------------------------------------------------- end to end

def _png_has_content(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    img = mpimg.imread(path)
    assert img.std() > 0.01, f"{path} looks blank"


def test_cli_analyze_writes_figures_and_numbers(analyzed_run):
    run_dir, rc = analyzed_run
    assert rc == 0
    figdir = run_dir / "figures"
    expected = ["activity_Go_input", "connectivity_kernel", "sample_Go", "sample_MultSenDM", "activity_histogram",
                "schematic_units", "ftv_pairs", "ftv_all_pairs", "cluster_variance_rule", "cluster_variance_epoch",
                "cluster_silhouette", "cluster_embedding", "cluster_similarity", "cluster_connectivity",
                "cluster_lesions", "taskset1_rate_space", "taskset1_weight_space", "taskset1_perf",
                "learning_curves", "psychometric_dm1", "psychometric_contextdm1", "psychometric_multidm",
                "varytime_dm1"]
    for name in expected:
        _png_has_content(figdir / f"{name}.png")
    summary = json.loads((run_dir / "analysis_summary.json").read_text())
    assert set(summary) == set(ANALYSES) and all("seconds" in v and "error" not in v for v in summary.values())

    with np.load(run_dir / "variance_rule.npz") as f:
        assert f["h_var_all"].shape == (N_RNN, len(RULES)) and list(f["keys"]) == RULES
        h_var = f["h_var_all"]
    cl = json.loads((run_dir / "clustering.json").read_text())
    log = json.loads((run_dir / "log.json").read_text())
    n_active = int((h_var.sum(axis=1) > 1e-3).sum())
    assert log["n_cluster"] == cl["n_cluster"] and 2 <= cl["n_cluster"] <= min(29, n_active - 1)
    assert len(cl["ind_active"]) == len(cl["labels"]) == n_active
    assert sorted(set(cl["labels"])) == list(range(cl["n_cluster"]))
    assert cl["silhouette_scores"][cl["k_values"].index(cl["n_cluster"])] == max(
        s for s in cl["silhouette_scores"] if s is not None)
    assert np.array(cl["lesions"]["perf"]).shape == (cl["n_cluster"] + 1, len(RULES))

    ts = json.loads((run_dir / "taskset.json").read_text())
    assert "skipped" in ts["setup2"] and "skipped" in ts["setup3"]
    rr = ts["setup1"]["replace_rule"]
    assert rr["names"] == ["Dly Anti", "Anti", "Anti + Dly Go", "Anti + Dly Go - Go"]
    assert all(0 <= p <= 1 for p in rr["perfs"]) and rr["n_trials"] == 1000
    assert np.array(ts["setup1"]["rate"]["coords"]).shape == (4, 2)

    perf = json.loads((run_dir / "performance.json").read_text())
    assert len(perf["psychometric_dm1"]["curves"]["800"]) == 7
    assert set(perf["psychometric_contextdm1"]["curves"]) == {"Attend", "Ignore"}
    assert np.array(perf["varytime_dm1"]["p_correct"]).shape == (4, 8)
    assert perf["final_perf"]["dm1"] == log["perf_dm1"][-1]

    ftv = json.loads((run_dir / "ftv.json").read_text())
    assert set(ftv["pairs"]) == {"dm1/fdanti", "dm1/contextdm1"}  # the paper pairs among the trained rules
    assert sum(ftv["pairs"]["dm1/fdanti"]["counts"]) == ftv["pairs"]["dm1/fdanti"]["n_active"]


def test_cli_analyze_only_one(analyzed_run):
    run_dir, _ = analyzed_run
    before = (run_dir / "taskset.json").stat().st_mtime_ns
    assert cli(["analyze", str(run_dir), "--only", "variance", "--quiet"]) == 0
    assert (run_dir / "taskset.json").stat().st_mtime_ns == before
    summary = json.loads((run_dir / "analysis_summary.json").read_text())
    assert set(summary) == set(ANALYSES)  # earlier entries kept


def test_unknown_analysis_name_lists_valid_ones(analyzed_run):
    with pytest.raises(ValueError, match="valid names.*standard"):
        run_analyses(analyzed_run[0], only=["variance", "bogus"])


def test_clear_errors_for_a_directory_without_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="hp.json"):
        run_analyses(tmp_path)
    save_json({"seed": 0}, tmp_path / "hp.json")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        run_analyses(tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        standard_analysis.easy_activity_plot(tmp_path / "nope", "dm1")
