"""The soft real-space window on the images (TrainConfig.window, on by default): shape, what it does to the
dataset's images, and that runs saved before the option existed keep unwindowed images."""

import numpy as np
import pytest

from tomodrgn.data.dataset import TiltSeriesDataset, soft_window
from tomodrgn.io.particles import read_particles
from tomodrgn.physics.hartley import ht2_center, iht2_center
from tomodrgn.runs import TrainConfig
from tomodrgn.runs.config import WINDOW_RADII
from tomodrgn.simulate import simulate_dataset


def test_soft_window_profile():
    w = soft_window(32, 0.75, 0.95)
    assert w.shape == (32, 32) and w[16, 16] == 1.0
    assert w[16, 16 + 12] == 1.0 and w[16, 0] == 0.0 and w[0, 0] == 0.0  # r = 0.75: 1; r = 1 and the corner: 0
    assert w[16, 16 + 15] == pytest.approx((0.95 - 15 / 16) / 0.2)  # on the linear ramp
    with pytest.raises(ValueError, match="inner < outer"):
        soft_window(32, 0.9, 0.8)


def test_dataset_images_are_windowed(tmp_path):
    sim = simulate_dataset(tmp_path / "sim", preset="2-class", n_particles=2, box_size=16, n_tilts=3, seed=2)
    series = read_particles(sim.star_path)
    norm = (0.0, 1.0)
    plain = TiltSeriesDataset(series, norm=norm)
    windowed = TiltSeriesDataset(series, norm=norm, window=WINDOW_RADII)
    a, b = plain[0]["images"].numpy(), windowed[0]["images"].numpy()
    # back to real space (drop the symmetrised edge row/column): the window is applied before the transform
    ra, rb = (iht2_center(x[:, :-1, :-1].astype(np.float64)) for x in (a, b))
    np.testing.assert_allclose(rb, ra * soft_window(16, *WINDOW_RADII), atol=1e-4 * np.abs(ra).max())
    assert np.abs(rb[:, 0, 0]).max() == pytest.approx(0.0, abs=1e-5 * np.abs(ra).max())
    assert ht2_center(rb).shape == (3, 16, 16)


def test_window_default_and_old_runs():
    assert TrainConfig().window is True and TrainConfig().window_radii == WINDOW_RADII
    old = TrainConfig.from_dict({"encoder": "per-tilt", "zdim": 2})
    assert old.window is False and old.window_radii is None
