"""Model, loss, metric and trainer: short CPU runs checked against hand-computed values and the paper's rules."""
import json
import math

import numpy as np
import pytest
import torch

import multitask.train as train_mod
from multitask import network
from multitask.__main__ import main as cli
from multitask.hparams import get_default_hp
from multitask.network import Model, Run_Model, get_perf, popvec
from multitask.train import TrainingDiverged, load_checkpoint, load_model, set_hyperparameters, train

SMALL = {"n_rnn": 32, "batch_size_train": 16, "batch_size_test": 32}


def small_run(tmp_path, name="run", max_trials=16 * 30, display_step=10, **kw):
    hp, log, opt = set_hyperparameters(tmp_path / name, hp={**SMALL, **kw.pop("hp", {})}, max_steps=max_trials,
                                       display_step=display_step, **kw)
    return hp, log, opt, Run_Model(hp)


# ---------------------------------------------------------------------------------------------- metric

def test_popvec_hand_computed():
    y = np.zeros((2, 32))
    y[0, 8] = 1.0  # unit 8 prefers 8 * 2pi/32 = pi/2
    y[1, [31, 1]] = 1.0  # symmetric around unit 0 -> angle 0 (wraps)
    np.testing.assert_allclose(popvec(y) % (2 * np.pi), [np.pi / 2, 0.0], atol=1e-12)


def test_get_perf_cases():
    T = 3
    y_hat = np.full((T, 5, 33), 0.05)
    y_loc = np.full((T, 5), -1.0)
    # trial 0: should fixate, does (fix 0.9) -> 1
    y_hat[-1, 0, 0] = 0.9
    # trial 1: should fixate, breaks fixation -> 0
    y_hat[-1, 1, 0] = 0.1
    # trial 2: target 0.05*2pi... at unit 31 (angle 2pi*31/32), response at unit 0 -> 0.196 rad < 0.2pi: across the wrap
    y_loc[-1, 2] = 2 * np.pi * 31 / 32
    y_hat[-1, 2, 0] = 0.1
    y_hat[-1, 2, 1] = 1.0  # ring unit 0 = output index 1
    # trial 3: response 0.25pi away -> 0
    y_loc[-1, 3] = 0.25 * np.pi
    y_hat[-1, 3, 0] = 0.1
    y_hat[-1, 3, 1] = 1.0
    # trial 4: right location but still fixating -> 0
    y_loc[-1, 4] = 0.0
    y_hat[-1, 4, 0] = 0.7
    y_hat[-1, 4, 1] = 1.0
    np.testing.assert_array_equal(get_perf(y_hat, y_loc), [1, 0, 1, 0, 0])


# ---------------------------------------------------------------------------------------------- model

def test_initialisation_matches_the_paper():
    hp = {**get_default_hp("all"), "activation": "softplus", "w_rec_init": "diag", "seed": 3}
    model = Model(hp)
    np.testing.assert_array_equal(model.weight_hh.detach().numpy(), 0.5 * np.eye(256))
    assert abs(model.weight_ih.std().item() - 1 / math.sqrt(85)) < 0.01
    bound = math.sqrt(6 / (256 + 33))
    assert model.readout.weight.abs().max().item() <= bound and model.readout.weight.abs().max().item() > 0.9 * bound
    assert torch.all(model.readout.bias == 0) and torch.all(model.rnn.rnncell.bias == 0)
    hp["w_rec_init"] = "randortho"
    w = Model(hp).weight_hh.detach().double()
    torch.testing.assert_close(w @ w.T, 0.25 * torch.eye(256, dtype=torch.float64), atol=1e-5, rtol=0)
    assert abs(Model(hp).rnn.decay.item() - 0.8) < 1e-7
    assert abs(network.recurrent_noise_std(hp) - math.sqrt(10) * 0.05) < 1e-12
    hp["decay_mode"] = "exp"
    assert abs(Model(hp).rnn.decay.item() - math.exp(-0.2)) < 1e-7


def test_lsq_loss_squares_the_mask():
    """mean((c_mask*(y - sigmoid(z)))^2): a mask of 5 weighs an error 25x (spec §1.3)."""
    class T:
        pass
    trial = T()
    trial.y = torch.tensor([[[0.8, 0.8]]])
    trial.c_mask = torch.tensor([[[1.0, 5.0]]])
    logits = torch.zeros(1, 1, 2)  # sigmoid 0.5, error 0.3
    loss = network.task_loss(logits, trial, "lsq")
    assert abs(loss.item() - (0.3**2 + (5 * 0.3) ** 2) / 2) < 1e-6


def test_regularisers_hand_computed(tmp_path):
    hp, _, _, rm = small_run(tmp_path, hp={"l1_weight": 1.0, "l2_weight": 1.0, "l1_h": 1.0, "l2_h": 1.0})
    h = torch.full((2, 3, 32), 0.5)
    logits = torch.zeros(2, 3, hp["n_output"])

    class T:
        pass
    trial = T()
    trial.y, trial.c_mask = torch.zeros_like(logits), torch.zeros_like(logits)
    _, reg = rm.calculate_loss(logits, h, trial, hp)
    m = rm.model
    w_ih, w_hh, w_out = (w.detach().double() for w in m.weight_list())
    expected = 0.5 + (2 * 3 * 32 * 0.25) / 2
    expected += (w_ih.abs().sum() + w_hh.abs().sum()).item() / (w_ih.numel() + w_hh.numel()) + w_out.abs().mean().item()
    expected += sum((w**2).sum().item() for w in (w_ih, w_hh, w_out)) / 2
    assert abs(reg.item() - expected) < 1e-4 * expected


def test_lesion_silences_outgoing_connections():
    hp = {**get_default_hp("mante"), "n_rnn": 16, "seed": 0}
    rm = Run_Model(hp)
    rm.lesion_units([2, 5])
    assert torch.all(rm.model.weight_hh[:, [2, 5]] == 0) and torch.all(rm.model.readout.weight[:, [2, 5]] == 0)
    assert torch.any(rm.model.weight_hh[[2, 5], :] != 0)  # inputs to them are kept
    with pytest.raises(ValueError, match="units must lie in"):
        rm.lesion_units([16])


def test_foreign_layer_class_is_accepted():
    """Run_Model(hp, RNNLayer) with any class of the port's signature (here: the cell stepped in a Python loop)."""
    from rate_rnn import CellLoopLayer as PortLayer

    hp = {**get_default_hp("mante"), "n_rnn": 16, "seed": 0, "sigma_rec": 0.0}
    rm = Run_Model(hp, PortLayer)
    loss, reg, y_hat, h, trial = rm("contextdm1", batch_size=4)
    assert y_hat.shape == (trial.tdim, 4, 33) and h.shape == (trial.tdim, 4, 16) and loss.item() > 0


# ---------------------------------------------------------------------------------------------- trainer

def test_loss_falls_and_files_are_written(tmp_path):
    hp, log, opt, rm = small_run(tmp_path, max_trials=16 * 200, display_step=100, hp={"n_rnn": 64})
    train(rm, opt, hp, log, progress=False)
    costs = np.array(log["cost_contextdm1"]) + np.array(log["cost_contextdm2"])
    assert costs[-1] < 0.7 * costs[0]
    run = tmp_path / "run"
    assert json.loads((run / "log.json").read_text())["trials"] == [0, 1600, 3200]
    assert "rng" not in json.loads((run / "hp.json").read_text())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 200
    assert not list(run.glob("*.tmp"))


def test_resume_reproduces_the_uninterrupted_log(tmp_path, monkeypatch):
    hp, log, opt, rm = small_run(tmp_path, "full", max_trials=16 * 40)
    full = train(rm, opt, hp, log, progress=False)
    full_state = load_checkpoint(tmp_path / "full")

    hp, log, opt, rm = small_run(tmp_path, "cut", max_trials=16 * 40)
    calls = {"n": 0}
    original = Run_Model.run_trial

    def interrupt_at_step_25(self, trial, *a, **k):
        if self.training and torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 26:
                raise KeyboardInterrupt
        return original(self, trial, *a, **k)

    monkeypatch.setattr(Run_Model, "run_trial", interrupt_at_step_25)
    with pytest.raises(KeyboardInterrupt):
        train(rm, opt, hp, log, progress=False)
    monkeypatch.setattr(Run_Model, "run_trial", original)
    hp, log, opt = set_hyperparameters(tmp_path / "cut", resume=True)
    resumed = train(Run_Model(hp), opt, hp, log, progress=False)
    for key in full:
        if key not in ("times", "model_dir"):
            assert resumed[key] == full[key], key
    cut_state = load_checkpoint(tmp_path / "cut")
    for name, value in full_state["model"].items():
        assert torch.equal(value, cut_state["model"][name]), name


def test_existing_run_is_refused_and_bad_hp_rejected(tmp_path):
    hp, log, opt, rm = small_run(tmp_path, max_trials=16 * 2)
    train(rm, opt, hp, log, progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        set_hyperparameters(tmp_path / "run", hp=SMALL)
    with pytest.raises(KeyError, match="Valid keys"):
        set_hyperparameters(tmp_path / "other", hp={"n_rnnn": 3})
    with pytest.raises(ValueError, match="rulesets"):
        set_hyperparameters(tmp_path / "other", ruleset="everything")
    with pytest.raises(ValueError, match="activation"):
        set_hyperparameters(tmp_path / "other", hp={"activation": "elu"})
    with pytest.raises(ValueError, match="unknown rule"):
        set_hyperparameters(tmp_path / "other", rule_trains=["fdgo2"])


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    hp, log, opt, rm = small_run(tmp_path, max_trials=16 * 30)
    good = None

    def poison(module, args, output):
        if module.training and torch.is_grad_enabled():
            return output[0] * float("nan"), output[1]
        return output

    train(rm, opt, hp, log, progress=False)  # first: a clean run to step 30 with a checkpoint at 30
    good = load_checkpoint(tmp_path / "run")
    hp2, log2, opt2 = set_hyperparameters(tmp_path / "run", resume=True)
    hp2["max_steps"] = 16 * 60
    rm2 = Run_Model(hp2)
    rm2.model.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged, match="at step 30"):
        train(rm2, opt2, hp2, log2, progress=False)
    after = load_checkpoint(tmp_path / "run")
    assert after["step"] == good["step"]
    for name, value in good["model"].items():
        assert torch.equal(value, after["model"][name])


def test_published_readme_sample(tmp_path, monkeypatch):
    """The port README's three lines, with a tiny max_steps."""
    monkeypatch.chdir(tmp_path)
    from RNN_rate_dynamics import RNNLayer

    hp, log, optimizer = set_hyperparameters(model_dir="debug", hp={"learning_rate": 0.001, **SMALL},
                                             ruleset="mante", max_steps=16 * 3, display_step=2)
    run_model = Run_Model(hp, RNNLayer)
    train(run_model, optimizer, hp, log, progress=False)
    assert (tmp_path / "debug" / "checkpoint.pt").exists() and len(log["perf_min"]) == 2
    loaded = load_model("debug")  # the weights of the last evaluation (step 2), as the paper saves them
    saved = load_checkpoint("debug")
    assert saved["step"] == 2
    for name, value in saved["model"].items():
        assert torch.equal(value, loaded.model.state_dict()[name])


def test_trainables_rule_only_moves_rule_columns(tmp_path):
    hp, log, opt, rm = small_run(tmp_path, max_trials=16 * 5, trainables="rule")
    before = {k: v.clone() for k, v in rm.model.state_dict().items()}
    train(rm, opt, hp, log, progress=False)
    after = rm.model.state_dict()
    rs, nr = hp["rule_start"], hp["n_rule"]
    w0, w1 = before["rnn.rnncell.weight_ih"], after["rnn.rnncell.weight_ih"]
    assert not torch.equal(w0[:, rs:rs + nr], w1[:, rs:rs + nr])
    assert torch.equal(w0[:, :rs], w1[:, :rs])
    assert torch.equal(before["rnn.rnncell.weight_hh"], after["rnn.rnncell.weight_hh"])


def test_cli_train_then_eval(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_mod, "EVAL_REPEATS", 2)
    out = tmp_path / "cli"
    args = ["train", "--ruleset", "mante", "--out", str(out), "--max-trials", "64", "--display-step", "2",
            "--quiet", "--hp", "n_rnn=16", "batch_size_train=16", "batch_size_test=32"]
    assert cli(args) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and (out / "figures").is_dir() and any((out / "figures").glob("*.png"))
    assert cli(args) == 2  # refuses to overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert cli(["eval", str(out)]) == 0
    table = capsys.readouterr().out
    assert "Ctx DM 1" in table and "perf_min" in table


def test_train_sequential_with_intelligent_synapses(tmp_path):
    from multitask.train import train_sequential

    run_model, log = train_sequential(tmp_path / "seq", [["fdgo"], ["delaygo"]], ruleset="all",
                                      hp={**SMALL, "c_intsyn": 1.0, "ksi_intsyn": 0.01}, max_steps=16 * 6,
                                      display_step=3, progress=False)
    assert log["group"] == [0, 0, 0, 1, 1, 1]  # evaluations at steps 0, 3, 6 of each group
    assert len(log["perf_fdgo"]) == 6 and len(log["perf_delaygo"]) == 6
    assert (tmp_path / "seq" / "checkpoint.pt").exists()
