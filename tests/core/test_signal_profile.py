"""The data's signal amplitude per shell (training.signal_profile) and the decoder's measured envelope.

The profile is checked against the ground truth: the per-shell rms of the simulated map's Hartley transform in the
dataset's normalised units (ht3_center(map) / norm std, the decoder's output units).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomodrgn.io.mrc import read_mrc
from tomodrgn.models.decoder import HartleyDecoder
from tomodrgn.physics.hartley import ht3_center
from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.runs.model import make_dataset
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import train
from tomodrgn.training.signal_profile import envelope_profile, signal_profile


def truth_shell_rms(vol: np.ndarray, std: float) -> np.ndarray:
    h = ht3_center(vol.astype(np.float64)) / std
    d = vol.shape[0]
    ax = np.arange(d) - d // 2
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    shell = np.rint(np.sqrt(xx**2 + yy**2 + zz**2))
    return np.array([np.sqrt(np.mean(h[shell == r] ** 2)) for r in range(d // 2 + 1)])


@pytest.fixture(scope="module")
def homogeneous(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    return simulate_dataset(root / "s", "homogeneous", n_particles=200, box_size=24, n_tilts=41, snr=0.05, seed=3)


def test_profile_matches_the_truth_on_measured_shells(homogeneous):
    ds = make_dataset(homogeneous.star_path, TrainConfig(mode="homogeneous", n_tilts=11))
    amplitude, measured = signal_profile(ds, 300.0, dose_filter=True)
    truth = truth_shell_rms(read_mrc(homogeneous.volume_paths[0])[0], ds.norm[1])
    shells = np.flatnonzero(measured[1:]) + 1
    assert len(shells) >= 5 and shells[0] == 1, measured  # the low shells hold clear signal at SNR 0.05
    strong = shells[truth[shells] >= 0.01 * truth[1]]
    ratio = amplitude[strong] / truth[strong]
    assert np.all((ratio > 0.7) & (ratio < 1.3)), ratio  # the windowed images lose a little power, no more
    # near the detection limit (3 standard errors of the cross-power) the estimate is rough, not wild
    assert np.all(amplitude[shells] < 2.5 * truth[shells]), amplitude[shells] / truth[shells]
    # shells where the truth is below a thousandth of its low-shell level are not called measured
    assert not np.any(measured[truth < 1e-3 * truth[1]])


def test_no_signal_gives_no_profile(tmp_path):
    # 6 particles at SNR 1e-5: nothing in the half-set back-projections stands out of the noise
    sim = simulate_dataset(tmp_path / "s", "homogeneous", n_particles=6, box_size=16, n_tilts=11, snr=1e-5, seed=1)
    ds = make_dataset(sim.star_path, TrainConfig(mode="homogeneous"))
    amplitude, measured = signal_profile(ds, 300.0)
    assert not measured[1:].any() and envelope_profile(amplitude, measured) is None
    train(sim.star_path, tmp_path / "run", TrainConfig(mode="homogeneous", epochs=1, dec_arch="16x2"), progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "decoder envelope: fixed (no shell with measurable signal" in log
    dec = load_model(tmp_path / "run").model.decoder
    assert dec.envelope_gain.item() == 10.0 and torch.all(dec.envelope_profile == 1.0)


def test_envelope_profile_fills_gaps_and_continues_the_decay_beyond_the_last_measured_shell():
    amplitude = np.array([30.0, 20.0, 0.0, 5.0, 1.0, 0.3, 0.0, 0.05, 0.2])
    measured = np.array([False, True, False, True, True, True, False, False, False])
    p = envelope_profile(amplitude, measured)
    assert p[[1, 3, 4, 5]] == pytest.approx([20.0, 5.0, 1.0, 0.3])
    assert p[2] == pytest.approx(10.0)  # log-linear between shells 1 and 3
    # beyond the last measured shell: the decay of the last three measured shells continued (not the noise there),
    # down to a tenth of the last measured amplitude
    slope = np.polyfit([3, 4, 5], np.log([5.0, 1.0, 0.3]), 1)[0]
    assert p[6] == pytest.approx(0.3 * np.exp(slope)) and p[7:] == pytest.approx([0.03] * 2)
    flat = envelope_profile(np.array([9.0, 4.0, 4.5, 0.0]), np.array([False, True, True, False]))
    assert flat[3] == pytest.approx(4.5)  # no decay measured: the last amplitude continues
    assert p[0] == 30.0
    assert envelope_profile(amplitude, np.zeros(9, dtype=bool)) is None


def test_decoder_envelope_interpolates_the_profile_and_old_checkpoints_load_without_one():
    dec = HartleyDecoder(16, 0, (16, 2))
    profile = np.linspace(9.0, 1.0, 9)
    dec.set_envelope_profile(profile)
    k = torch.tensor([[0.0, 0.0, 0.0], [3 / 16, 0.0, 0.0], [0.0, -3.5 / 16, 0.0], [0.4, 0.4, 0.0]])
    e = dec.envelope(k)
    assert torch.allclose(e, torch.tensor([9.0, 6.0, 5.5, 1.0]), atol=1e-5), e  # |k|·D > 8 px: the last value
    with pytest.raises(ValueError):
        dec.set_envelope_profile(np.zeros(9))
    old = {key: v for key, v in dec.state_dict().items() if key != "envelope_profile"}
    loaded = HartleyDecoder(16, 0, (16, 2))
    loaded.load_state_dict(old)
    assert torch.all(loaded.envelope_profile == 1.0) and loaded.envelope_gain.item() == 1.0


def test_a_measured_run_logs_its_envelope_and_resume_keeps_it(homogeneous, tmp_path):
    cfg = TrainConfig(mode="homogeneous", n_tilts=11, epochs=1, dec_arch="16x2", first=40)
    train(homogeneous.star_path, tmp_path / "run", cfg, progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "decoder envelope: measured, signal to shell" in log
    saved = load_model(tmp_path / "run").model.decoder.envelope_profile.clone()
    assert saved[1] > 10 * saved[-1] and saved[-1] > 0
    cfg2 = TrainConfig.from_dict({**cfg.to_dict(), "epochs": 2})
    train(homogeneous.star_path, tmp_path / "run", cfg2, resume=True, progress=False)
    assert torch.equal(load_model(tmp_path / "run").model.decoder.envelope_profile, saved)
