"""Decoded maps carry no artefact at the box centre (issue "Trustworthy runs", item 1).

The value of a decoded map at the box centre is the sum of its spectrum over the ball (all phases are 0 there), so
any error common to many Fourier voxels lands on that one voxel. Three causes were found and fixed: the decoder's
common offset beyond the information limit (fixed by the measured output envelope, models.decoder /
training.signal_profile), the optimisation's step-to-step fluctuation, which is concentrated at the centre (the saved
model is a weight average, training.averaging), and the simulator's uncorrected trilinear interpolation, which made
simulated images too bright at the centre (simulate.forward.trilinear_apodisation).
Residual = decoded map − best linear fit (a·truth + c) of the ground truth, in σ of the residual map.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomodrgn.demo import run_demo
from tomodrgn.io.mrc import read_mrc
from tomodrgn.models.decoder import HartleyDecoder
from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import train


def residual_map(vol: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """vol − (a·truth + c) with (a, c) the least-squares fit."""
    design = np.stack([truth.ravel(), np.ones(truth.size)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, vol.ravel().astype(np.float64), rcond=None)
    return vol - (design @ coef).reshape(vol.shape)


def centre_stats(vol: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Residual at the centre voxel, centre minus the mean of its 26 neighbours, and the largest residual elsewhere
    among voxels as dense as the centre's neighbourhood, all in units of the residual map's σ."""
    r = residual_map(vol, truth)
    sigma = r.std()
    c = vol.shape[0] // 2
    block = r[c - 1 : c + 2, c - 1 : c + 2, c - 1 : c + 2] / sigma
    neighbours = np.delete(block.ravel(), 13)
    far = np.ones(r.shape, dtype=bool)
    far[c - 1 : c + 2, c - 1 : c + 2, c - 1 : c + 2] = False
    dense = far & (truth >= truth[c - 1 : c + 2, c - 1 : c + 2, c - 1 : c + 2].min())
    return {
        "centre": float(block[1, 1, 1]),
        "spike": float(block[1, 1, 1] - neighbours.mean()),
        "block_max": float(np.abs(block).max()),
        "dense_elsewhere_max": float(np.abs(r[dense]).max() / sigma),
    }


def high_shell_offset(decoder: HartleyDecoder) -> float:
    """Mean of the decoded Hartley values over the shells D/4 < |k| ≤ D/2, in units of their std."""
    ht = decoder.hartley_volume(None).double().numpy()
    D = ht.shape[0]
    ax = np.arange(D) - D // 2
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    rad = np.sqrt(xx**2 + yy**2 + zz**2)
    shells = (rad > D / 4) & (rad <= D / 2)
    return float(ht[shells].mean() / ht[shells].std())


def test_homogeneous_map_has_no_centre_spike(tmp_path):
    sim = simulate_dataset(tmp_path / "s", "homogeneous", n_particles=96, box_size=16, n_tilts=41, snr=0.05, seed=5)
    truth, _ = read_mrc(sim.volume_paths[0])
    cfg = TrainConfig(
        mode="homogeneous",
        dec_arch="128x3",
        n_tilts=11,
        epochs=4,
        batch_size=8,
        lr=1e-3,
        preload=True,
        device="cpu",
        backend="torch",
    )
    train(sim.star_path, tmp_path / "run", cfg, progress=False)
    model = load_model(tmp_path / "run")
    vol = model.decode(None)[0]
    s = centre_stats(vol, truth)
    # with neither envelope nor the simulator's gridding correction: centre 10.0 σ, neighbourhood 14.1 σ vs 9.3 σ
    # elsewhere, correlation 0.75; now about 1.6 σ
    assert abs(s["centre"]) <= 3.0, s
    assert s["spike"] <= 3.0, s  # no single bright voxel above its neighbours (the real-data symptom)
    # the centre's neighbourhood is no worse than other voxels as dense (the phantom's density peaks next to it, where
    # an under-trained map's residual is largest anyway)
    assert s["block_max"] <= s["dense_elsewhere_max"] + 0.5, s
    assert abs(high_shell_offset(model.model.decoder)) <= 0.2
    assert np.corrcoef(vol.ravel(), truth.ravel())[0, 1] > 0.85


def test_envelope_is_even_fixed_and_old_checkpoints_decode_unchanged():
    torch.manual_seed(0)
    dec = HartleyDecoder(16, 0, (16, 2))
    k = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.05], [-0.1, 0.2, -0.05], [0.5, 0.0, 0.0]])
    e = dec.envelope(k)
    assert (
        e[0].item() == dec.envelope_gain.item() > 1.0 and e[1].item() == e[2].item() and abs(e[3].item() - 1.0) < 0.02
    )
    assert {"envelope_gain", "envelope_radius"} <= set(dec.state_dict())
    # a checkpoint from before the envelope (no envelope buffers) loads with E ≡ 1: the decoder it was trained as
    old = {key: v for key, v in dec.state_dict().items() if not key.startswith("envelope")}
    loaded = HartleyDecoder(16, 0, (16, 2))
    loaded.load_state_dict(old)
    assert torch.all(loaded.envelope(k) == 1.0)
    h_new, _ = dec(k[1:])
    h_old, _ = loaded(k[1:])
    assert torch.allclose(h_new, h_old * dec.envelope(k[1:]))


@pytest.mark.slow
def test_demo_problem_has_no_centre_artefact(tmp_path):
    """The demo's problem (4 classes, 2,000 particles, D = 32, SNR 0.05, its default training settings) trained for
    15 epochs: the map decoded at each class's median latent has no artefact at the box centre.

    15 rather than the demo's 10 epochs: at 10 the seed-0 class-2 map is still under-fitted at the phantoms' density
    peak, which touches the centre (centre −6.0 σ, −2.7 σ at 15; the other seven class maps of two seeds were within
    ±2.2 σ at 10). The centre's 26 neighbours hold the phantoms' densest voxels (3.9 at (17, 16, 15) [z, y, x]), whose
    residual is the map's resolution limit, negative (the peak comes out smoother than the phantom) and as large at
    equally dense voxels elsewhere: the neighbourhood is held to "no worse than elsewhere", the centre voxel and its
    excess over its 26 neighbours (the artefact's signature) to 3 σ. Measured (this test, 600 s on 2 cores): centre
    −2.0 / −0.1 / −2.0 / +0.0 σ, excess ≤ 2.0 σ, neighbourhood 3.6–6.1 σ vs 7.3–9.7 σ elsewhere; before this issue's
    fixes (10 epochs) the centre was +15.9 / −1.4 / +9.6 / +15.2 σ, the residual map's largest value, with an excess
    over its neighbours up to 16 σ.
    """
    res = run_demo(tmp_path / "demo", epochs=15, analyze=False, progress=False)
    model = load_model(res.run_dir)
    z = np.load(res.run_dir / "z.npy")
    labels = np.loadtxt(tmp_path / "demo" / "data" / "labels.txt", dtype=int)
    sim_volumes = sorted((tmp_path / "demo" / "data" / "volumes").glob("*.mrc"))
    stats = []
    for c, path in enumerate(sim_volumes):
        truth, _ = read_mrc(path)
        vol = model.decode(np.median(z[labels == c], axis=0, keepdims=True))[0]
        stats.append(centre_stats(vol, truth))
    print("demo centre statistics per class:", [{k: round(v, 2) for k, v in s.items()} for s in stats])
    assert res.ari > 0.95
    for s in stats:
        assert abs(s["centre"]) <= 3.0, stats
        assert abs(s["spike"]) <= 3.0, stats
        assert s["block_max"] <= s["dense_elsewhere_max"], stats
