"""Weight averaging (training.averaging): the saved model for evaluation is an EMA of the trained weights."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.runs.checkpoint import load_checkpoint
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import iter_train, train
from tomodrgn.training.averaging import averaging_horizon, ema_weight, weight_average
from tomodrgn.training.loop import StepEvent

TINY = dict(enc_arch_a="16x1", enc_arch_b="16x1", embed_dim=8, dec_arch="32x2", device="cpu", backend="torch")


def test_ema_weight_warms_up_then_settles_at_one_over_the_horizon():
    assert ema_weight(0, 200) == pytest.approx(0.9)  # the first updates follow the weights closely
    assert ema_weight(10, 200) == pytest.approx(1 - 11 / 20)
    assert ema_weight(10_000, 200) == pytest.approx(1 / 200)
    assert ema_weight(5, 1) == 1.0  # horizon 1: no averaging
    assert weight_average(torch.nn.Linear(2, 2), 0) is None
    assert averaging_horizon(200, 2500) == 200 and averaging_horizon(200, 1999) == 0  # short runs: off


def test_weight_average_is_the_warmed_up_ema_of_the_parameters():
    model = torch.nn.Linear(1, 1, bias=False)
    avg = weight_average(model, 4)
    values = [1.0, 3.0, -2.0, 5.0]
    expected = None
    for n, v in enumerate(values):
        model.weight.data.fill_(v)
        avg.update_parameters(model)
        expected = v if expected is None else expected + ema_weight(n, 4) * (v - expected)
    assert avg.module.weight.item() == pytest.approx(expected)
    assert avg.module.weight.item() != pytest.approx(values[-1])


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate_dataset(out, preset="4-class", n_particles=16, box_size=16, n_tilts=9, max_tilt=24, snr=1.0, seed=0)


def test_checkpoints_hold_the_average_and_evaluation_uses_it(sim, tmp_path):
    # 3 epochs × 8 steps: at least ten times a 2-step horizon, so averaging is on
    cfg = TrainConfig(zdim=2, epochs=3, batch_size=2, lr=1e-3, seed=1, weight_average_steps=2, **TINY)
    train(sim.star_path, tmp_path / "run", cfg, progress=False)
    state = load_checkpoint(tmp_path / "run" / "weights.2.pt")
    assert state["ema_updates"] == 24
    differs = [k for k in state["model"] if not torch.equal(state["model"][k], state["model_ema"][k])]
    assert any(k.startswith("decoder.body") for k in differs)
    loaded = load_model(tmp_path / "run").model.state_dict()
    assert all(torch.equal(loaded[k], state["model_ema"][k]) for k in loaded)


def test_resume_continues_the_average_exactly(sim, tmp_path):
    cfg = TrainConfig(zdim=2, epochs=3, batch_size=2, lr=1e-3, seed=1, weight_average_steps=2, **TINY)
    list(iter_train(sim.star_path, tmp_path / "a", cfg))
    stop = threading.Event()
    for ev in iter_train(sim.star_path, tmp_path / "b", cfg, stop_event=stop):
        if isinstance(ev, StepEvent) and ev.epoch == 1 and ev.step == 3:
            stop.set()
    train(sim.star_path, tmp_path / "b", resume=True, progress=False)
    a, b = (load_checkpoint(tmp_path / r / "weights.2.pt") for r in ("a", "b"))
    assert a["ema_updates"] == b["ema_updates"] == 24
    for k in a["model_ema"]:
        torch.testing.assert_close(a["model_ema"][k], b["model_ema"][k], rtol=0, atol=0, msg=k)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "z.2.npy"), np.load(tmp_path / "b" / "z.2.npy"))


def test_runs_saved_before_averaging_load_their_trained_weights(sim, tmp_path):
    cfg = TrainConfig(zdim=2, epochs=1, batch_size=2, seed=1, weight_average_steps=0, **TINY)
    train(sim.star_path, tmp_path / "run", cfg, progress=False)
    path = tmp_path / "run" / "weights.0.pt"
    state = load_checkpoint(path)
    for key in ("model_ema", "ema_updates"):
        state.pop(key, None)
    state["config"].pop("weight_average_steps")
    torch.save(state, path)
    assert TrainConfig.from_dict(state["config"]).weight_average_steps == 0
    loaded = load_model(tmp_path / "run").model.state_dict()
    assert all(torch.equal(loaded[k], state["model"][k]) for k in loaded)
