"""Reference-frame encoder: tilt pixels land on the volume-frame voxels of the central-slice convention; training,
checkpoint and embedding work with it, with any number of tilts."""

import itertools

import numpy as np
import pytest
import torch

from tomodrgn.models import ReferenceFrameEncoder, TomoDRGN
from tomodrgn.models.encoder import reference_frame_radius
from tomodrgn.physics.hartley import ht3_center
from tomodrgn.physics.lattice import Lattice
from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import train

D = 16
RADIUS = 5


def signed_permutations() -> list[np.ndarray]:
    """The 24 rotations with entries in {0, ±1}: they map lattice points exactly onto voxels."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.isclose(np.linalg.det(m), 1.0):
                out.append(m)
    return out


def slices_of(h: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Central slices (T, D+1, D+1) of a centred 3-D Hartley volume h [z, y, x] at image-lattice points k @ R."""
    lat = Lattice(D)
    k = np.rint(lat.coords * D).astype(int)  # (P, 3) px, z = 0
    images = np.zeros((len(rotations), (D + 1) ** 2))
    inside = lat.radius_px < D // 2
    for t, r in enumerate(rotations):
        p = np.rint(k @ r).astype(int) + D // 2
        images[t, inside] = h[p[inside, 2], p[inside, 1], p[inside, 0]]
    return images.reshape(len(rotations), D + 1, D + 1)


def expected_grid(h: np.ndarray, rotations: np.ndarray, enc: ReferenceFrameEncoder) -> np.ndarray:
    """Independent expectation: volume value at every voxel hit by a pixel within the radius, 0 elsewhere."""
    lat = Lattice(D)
    k = np.rint(lat.coords * D).astype(int)
    use = (lat.radius_px > 0) & (lat.radius_px <= RADIUS)
    hit = set()
    for r in rotations:
        hit |= {tuple(p) for p in np.rint(k[use] @ r).astype(int)}
    side = 2 * RADIUS + 1
    vox = enc.voxel_index.numpy()
    vz, vy, vx = vox // side**2 - RADIUS, (vox // side) % side - RADIUS, vox % side - RADIUS
    return np.array([h[z + D // 2, y + D // 2, x + D // 2] if (x, y, z) in hit else 0.0 for x, y, z in zip(vx, vy, vz)])


def test_grid_places_pixels_at_their_volume_frame_voxels():
    rng = np.random.default_rng(0)
    h = ht3_center(rng.normal(size=(D, D, D)))
    enc = ReferenceFrameEncoder(D, zdim=2, radius=RADIUS, arch=(8, 1))
    rots = np.stack(signed_permutations()[::5])  # 5 different poses of one particle
    images = torch.from_numpy(slices_of(h, rots)).float()[None]
    grid = enc.grid(images, torch.from_numpy(rots).float()[None])[0].numpy()
    expected = expected_grid(h, rots, enc)
    assert np.count_nonzero(expected) > 0.3 * len(expected)  # the three coordinate planes through the sphere
    np.testing.assert_allclose(grid, expected, atol=1e-5)


def test_grid_is_pose_invariant_and_averages_repeated_voxels():
    """Two particles of the same structure seen at different poses give the same values where both see a voxel;
    the order of the tilts does not matter; a voxel seen twice holds the mean."""
    rng = np.random.default_rng(1)
    h = ht3_center(rng.normal(size=(D, D, D)))
    enc = ReferenceFrameEncoder(D, zdim=2, radius=RADIUS, arch=(8, 1))
    perms = signed_permutations()
    rots = torch.from_numpy(np.stack([np.stack(perms[:6]), np.stack(perms[6:12])])).float()
    images = torch.from_numpy(np.stack([slices_of(h, r.numpy()) for r in rots])).float()
    g = enc.grid(images, rots)
    both = (g[0] != 0) & (g[1] != 0)
    assert both.sum() > 50
    torch.testing.assert_close(g[0][both], g[1][both])
    order = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(enc.grid(images[:, order], rots[:, order]), g)
    twice = torch.cat([images[:1, :1], images[:1, :1] + 2.0], dim=1)  # one pose twice, values a and a + 2
    g2 = enc.grid(twice, rots[:1, :1].expand(1, 2, 3, 3))
    g1 = enc.grid(images[:1, :1], rots[:1, :1])
    seen = g1[0] != 0
    torch.testing.assert_close(g2[0][seen], g1[0][seen] + 1.0)


def test_reference_frame_model_needs_rotations_and_radius_bounds():
    model = TomoDRGN(D, zdim=3, n_tilts=4, enc_arch_a=(16, 1), encoder="reference-frame")
    images = torch.randn(2, 4, D + 1, D + 1)
    with pytest.raises(ValueError, match="rotations"):
        model.encode(images)
    rots = torch.from_numpy(np.stack(signed_permutations()[:4])).float().expand(2, 4, 3, 3)
    mu, logvar = model.encode(images, rots)
    assert mu.shape == (2, 3) and logvar.shape == (2, 3)
    assert reference_frame_radius(64) == 12 and reference_frame_radius(16) == 4 and reference_frame_radius(32, 6) == 6
    with pytest.raises(ValueError, match="enc_mask"):
        reference_frame_radius(16, 9)
    with pytest.raises(ValueError, match="encoder must be"):
        TrainConfig(encoder="per-particle")
    with pytest.raises(ValueError, match="any number of tilts"):
        TrainConfig(encoder="per-tilt", z_all_tilts=True)  # concatenate pooling needs a fixed tilt count
    assert TrainConfig(encoder="per-tilt", z_all_tilts=True, pooling="max").resolved_z_all_tilts
    assert not TrainConfig(encoder="per-tilt").resolved_z_all_tilts
    assert TrainConfig().encoder == "reference-frame" and TrainConfig().resolved_z_all_tilts
    # a config.json / checkpoint from before the option existed describes a per-tilt model
    old = TrainConfig().to_dict()
    del old["encoder"], old["z_all_tilts"]
    assert TrainConfig.from_dict(old).encoder == "per-tilt"


def test_train_and_embed_with_reference_frame_encoder(tmp_path):
    sim = simulate_dataset(tmp_path / "sim", "4-class", n_particles=12, box_size=16, n_tilts=9, max_tilt=24, seed=0)
    cfg = TrainConfig(
        encoder="reference-frame",
        zdim=3,
        enc_arch_a="16x1",
        dec_arch="32x2",
        n_tilts=5,
        epochs=2,
        batch_size=4,
        device="cpu",
        backend="torch",
    )
    result = train(sim.star_path, tmp_path / "run", cfg, progress=False)
    assert result.epochs_completed == 2
    z = np.load(tmp_path / "run" / "z.npy")
    assert z.shape == (12, 3) and np.isfinite(z).all() and z.std(0).min() > 0
    model = load_model(tmp_path / "run")
    assert model.config.encoder == "reference-frame" and model.config.resolved_z_all_tilts
    # the written latents come from all 9 tilts of each particle (not the 5 sampled for training)
    mu_all, lv_all = model.embed(sim.star_path, n_tilts=None)
    np.testing.assert_allclose(z, mu_all, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "run" / "z.logvar.npy"), lv_all, rtol=1e-4, atol=1e-5)
    mu9, _ = model.embed(sim.star_path, n_tilts=9)  # more tilts than in training: any number works
    mu3, _ = model.embed(sim.star_path, n_tilts=3)
    assert mu9.shape == mu3.shape == (12, 3)
    assert not np.allclose(mu9, mu3)
