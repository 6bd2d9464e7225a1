"""simulate → read STAR + stacks → dataset: every particle's tilts, doses, angles, CTF and poses equal the truth."""

import numpy as np
import pytest
import torch

from tomodrgn.data.dataset import TiltSeriesDataset, collate
from tomodrgn.io.particles import read_particles
from tomodrgn.physics.dose import dose_per_tilt
from tomodrgn.physics.hartley import ht2_center, symmetrize_ht
from tomodrgn.physics.tilt_scheme import dose_symmetric
from tomodrgn.simulate import simulate_dataset


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate_dataset(out, preset="4-class", n_particles=24, box_size=16, drop_tilts=4, shift_std=5.0, seed=3)


def test_reader_matches_ground_truth(sim):
    truth = np.load(sim.truth_path, allow_pickle=True)
    series = read_particles(sim.star_path)
    assert series.flavour == "warp"
    assert series.particle_names == list(sim.particle_names)
    assert series.pixel_size == pytest.approx(sim.pixel_size)
    assert series.box_size == sim.box_size
    counts = series.tilt_counts
    np.testing.assert_array_equal(counts, truth["n_tilts"])
    assert counts.min() < 41  # ragged: some particles lost tilts
    np.testing.assert_allclose(series.dose, truth["image_dose"], atol=1e-4)
    np.testing.assert_allclose(series.tilt, np.abs(truth["image_tilt"]), atol=1e-3)
    np.testing.assert_allclose(series.rotation, truth["image_rotation"], atol=1e-5)
    np.testing.assert_allclose(series.shift, truth["image_shift"], atol=1e-4)
    particle = truth["image_particle"]
    np.testing.assert_allclose(series.defocus_u, truth["defocus_u"][particle], atol=1e-2)
    np.testing.assert_allclose(series.defocus_v, truth["defocus_v"][particle], atol=1e-2)
    np.testing.assert_allclose(series.defocus_angle, truth["defocus_angle"][particle], atol=1e-3)
    assert set(np.unique(series.voltage)) == {300.0}
    # doses are the dose-symmetric scheme's (i + 1)·3 e⁻/Å² at the simulated acquisition indices
    scheme = dose_symmetric()
    np.testing.assert_allclose(np.abs(scheme[truth["image_tilt_index"]]), series.tilt, atol=1e-3)
    np.testing.assert_allclose(series.dose, 3.0 * (truth["image_tilt_index"] + 1), atol=1e-4)


def test_dataset_items_match_ground_truth(sim):
    truth = np.load(sim.truth_path, allow_pickle=True)
    series = read_particles(sim.star_path)
    ds = TiltSeriesDataset(series, n_tilts=int(series.tilt_counts.min()), seed=0)
    D = sim.box_size
    for i in range(ds.n_particles):
        item = ds[i]
        rows = item["tilt_index"].numpy()
        assert len(set(rows.tolist())) == len(rows) == ds.n_tilts  # without replacement
        assert set(rows.tolist()) <= set(series.image_indices[i].tolist())  # this particle's own tilts
        np.testing.assert_allclose(item["rotation"].numpy(), truth["image_rotation"][rows], atol=1e-5)
        np.testing.assert_allclose(item["dose"].numpy(), truth["image_dose"][rows], atol=1e-3)
        np.testing.assert_allclose(
            item["tilt_weight"].numpy(), np.cos(np.deg2rad(truth["image_tilt"][rows])), atol=1e-5
        )
        own = dose_per_tilt(series.dose[series.image_indices[i]])
        lookup = dict(zip(series.image_indices[i].tolist(), own))
        np.testing.assert_allclose(
            item["mid_dose"].numpy(), truth["image_dose"][rows] - [lookup[r] / 2 for r in rows], atol=1e-3
        )
        ctf = item["ctf"].numpy()
        np.testing.assert_allclose(ctf[:, 0], truth["defocus_u"][i], atol=1e-2)
        np.testing.assert_allclose(ctf[:, 3], 300.0)
        np.testing.assert_allclose(ctf[:, 4], 2.7)
        assert item["images"].shape == (ds.n_tilts, D + 1, D + 1)
    # the Hartley images are the stacks' images transformed and normalised
    item = ds[0]
    raw = series.read_images(item["tilt_index"].numpy())
    expected = symmetrize_ht(ht2_center(raw.astype(np.float64))) / ds.norm[1]
    np.testing.assert_allclose(item["images"].numpy(), expected, rtol=1e-4, atol=1e-4)
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["images"].shape == (3, ds.n_tilts, D + 1, D + 1) and batch["index"].tolist() == [0, 1, 2]
    assert torch.isfinite(batch["images"]).all()
