"""Overlay core (tomodrgn.analysis.overlay) and the overlay layers in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from tomodrgn.analysis.overlay import (
    cluster_colors,
    particle_overlay,
    place_volumes,
    reference_z_axis,
)
from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import read_particles
from tomodrgn.physics.pose import euler_to_matrix


def expected_direction_xyz(rot: float, tilt: float, psi: float) -> np.ndarray:
    """Reference z axis in the tomogram frame for x_tomo = A x_ref: rot spins about z first, so only tilt, psi act.

    Closed form of A[:, 2] for RELION A = Rz(psi)·Ry(tilt)·Rz(rot) (passive): (−cos ψ sin θ, sin ψ sin θ, cos θ).
    """
    t, p = np.deg2rad(tilt), np.deg2rad(psi)
    return np.array([-np.cos(p) * np.sin(t), np.sin(p) * np.sin(t), np.cos(t)])


@pytest.mark.parametrize(
    ("angles", "zyx"),
    [
        ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
        ((0.0, 90.0, 0.0), (0.0, 0.0, -1.0)),
        ((45.0, 90.0, 0.0), (0.0, 0.0, -1.0)),
        ((0.0, 90.0, 90.0), (0.0, 1.0, 0.0)),
        ((0.0, 180.0, 0.0), (-1.0, 0.0, 0.0)),
    ],
)
def test_direction_known_angles(angles, zyx):
    d = reference_z_axis(euler_to_matrix(*angles))
    np.testing.assert_allclose(d[0], zyx, atol=1e-12)


def test_direction_maps_back_to_reference_z():
    """A direction d must satisfy Aᵀ d = e_z (it is the reference z axis seen from the tomogram), for any pose."""
    rng = np.random.default_rng(3)
    angles = rng.uniform([-180, 0, -180], [180, 180, 180], size=(20, 3))
    a = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    d_xyz = reference_z_axis(a)[:, ::-1]
    back = np.einsum("nji,nj->ni", a, d_xyz)
    np.testing.assert_allclose(back, np.tile([0.0, 0.0, 1.0], (20, 1)), atol=1e-12)
    np.testing.assert_allclose(d_xyz, [expected_direction_xyz(*x) for x in angles], atol=1e-12)


def test_particle_overlay_from_star(tiny_star):
    series = read_particles(tiny_star.star, tomogram_pixel_size=tiny_star.tomogram_pixel_size)
    ov = particle_overlay(series, tomogram_pixel_size=tiny_star.tomogram_pixel_size)
    # positions: tomogram voxels in (z, y, x)
    np.testing.assert_allclose(ov.positions, tiny_star.coords_px[:, ::-1])
    # directions: from the 0° image's pose (written second in the file), not the tilted ones
    expected = np.array([expected_direction_xyz(*e)[::-1] for e in tiny_star.eulers])
    np.testing.assert_allclose(ov.directions, expected, atol=1e-5)
    vec = ov.vectors(length=4.0)
    assert vec.shape == (5, 2, 3)
    np.testing.assert_allclose(vec[:, 1], 4.0 * expected, atol=1e-4)
    np.testing.assert_array_equal(ov.particle_indices, np.arange(5))


def test_particle_overlay_tomogram_and_labels(tiny_star):
    series = read_particles(tiny_star.star, tomogram_pixel_size=tiny_star.tomogram_pixel_size)
    labels = np.array([0, 1, 1, 2, 0])
    ov = particle_overlay(series, labels=labels, tomogram="tomoB", tomogram_pixel_size=4.0)
    np.testing.assert_array_equal(ov.particle_indices, [2, 3, 4])
    np.testing.assert_allclose(ov.positions, tiny_star.coords_px[2:, ::-1] * 2.0)  # 8 Å coords on a 4 Å tomogram
    np.testing.assert_array_equal(ov.labels, [1, 2, 0])
    np.testing.assert_allclose(ov.colors, cluster_colors(np.array([1, 2, 0])))
    assert len({tuple(c) for c in ov.colors}) == 3
    with pytest.raises(InputError, match="tomoC"):
        particle_overlay(series, tomogram="tomoC")
    with pytest.raises(InputError, match="3 cluster labels"):
        particle_overlay(series, labels=np.array([0, 1, 2]))


def test_place_volumes_blob_follows_direction():
    """A blob on the reference +z axis lands at position + r·direction in the tomogram (and scaling is honoured)."""
    d, r = 16, 5
    vol = np.zeros((d, d, d), dtype=np.float32)
    zz, yy, xx = np.mgrid[:d, :d, :d] - d // 2
    vol[:] = np.exp(-((zz - r) ** 2 + yy**2 + xx**2) / 2.0)
    for angles in [(0, 0, 0), (0, 90, 0), (10, 60, 45), (-70, 120, 200)]:
        a = euler_to_matrix(*angles)
        pos = np.array([20.0, 21.0, 19.0])
        for vol_ps, tomo_ps in [(2.0, 2.0), (2.0, 4.0)]:
            tomo = place_volumes([vol], pos[None], a[None], (40, 42, 38), vol_ps, tomo_ps)
            peak = np.array(np.unravel_index(np.argmax(tomo), tomo.shape), dtype=float)
            target = pos + r * vol_ps / tomo_ps * reference_z_axis(a)[0]
            assert np.linalg.norm(peak - target) <= 0.9, (angles, peak, target)


def test_place_volumes_matches_simulated_tomogram(sim_dataset, tmp_path):
    """Placing the ground-truth class volumes at the STAR poses reproduces the simulator's noiseless tomogram
    (the simulator pastes v(Rᵀx) independently, with torch grid_sample)."""
    from tomodrgn.io.mrc import read_mrc
    from tomodrgn.simulate import simulate_tomogram

    tomo_path = simulate_tomogram(sim_dataset, "tomo00", noise=0.0, out_path=tmp_path / "t.mrc")
    expected, ps = read_mrc(tomo_path)
    series = read_particles(sim_dataset.star_path)
    ov = particle_overlay(series, tomogram="tomo00", tomogram_pixel_size=sim_dataset.pixel_size)
    class_vols = [read_mrc(p)[0] for p in sim_dataset.volume_paths]
    vols = [class_vols[k] for k in sim_dataset.labels[ov.particle_indices]]
    placed = place_volumes(vols, ov.positions, ov.rotations, expected.shape, ps, ps)
    cc = np.corrcoef(placed.ravel(), expected.ravel())[0, 1]
    assert cc > 0.99, cc
    np.testing.assert_allclose(placed.sum(), expected.sum(), rtol=0.02)


def test_cluster_colors_distinct_hues_for_20_clusters():
    """Up to 10 clusters get 10 different hues, and 20 clusters 20 different colours (no adjacent dark/light pair)."""
    import colorsys

    rgba = cluster_colors(np.arange(20))
    assert len({tuple(c) for c in rgba}) == 20
    hues = [round(colorsys.rgb_to_hsv(*c[:3])[0], 2) for c in rgba[:10]]
    assert len(set(hues)) >= 9  # tab20 grey has no hue; the other nine are different
    for a, b in zip(rgba[:-1], rgba[1:]):  # consecutive labels: visibly different colours
        assert np.abs(a[:3] - b[:3]).max() > 0.15, (a, b)


def test_volume_beside_and_translate_put_the_volume_next_to_the_particle():
    from tomodrgn.analysis.overlay import volume_beside, volume_translate

    pos = np.array([100.0, 200.0, 300.0])  # Å (z, y, x)
    d, ps = 16, 4.0
    centre = volume_beside(pos, d * ps)
    assert centre[0] == pos[0] and centre[1] == pos[1] and centre[2] - pos[2] == pytest.approx(1.25 * d * ps)
    t = volume_translate(centre, (d, d, d), ps)
    np.testing.assert_allclose(t + ps * (d // 2), centre)  # voxel D/2 (the rotation origin) lands on the centre
    lo_x = t[2]
    assert lo_x > pos[2]  # the volume does not cover its particle
    np.testing.assert_allclose(volume_beside(pos, 10.0, index=2) - pos, [0, 0, 37.5])


def test_selection_maps_between_points_and_particles():
    from tomodrgn.analysis.overlay import particles_of_points, points_of_particles

    point_particles = np.array([7, 3, 9, 3, 12])  # particle index of each point
    np.testing.assert_array_equal(points_of_particles(point_particles, [3, 12]), [1, 3, 4])
    np.testing.assert_array_equal(particles_of_points(point_particles, {0, 1, 3}), [3, 7])
    assert particles_of_points(point_particles, set()).size == 0


def test_particle_quantity(tiny_star):
    from tomodrgn.analysis.overlay import particle_quantity

    series = read_particles(tiny_star.star)
    tomo, cats = particle_quantity(series, "tomogram")
    assert cats == ["tomoA", "tomoB"] and list(tomo) == [0, 0, 1, 1, 1]
    defocus, none = particle_quantity(series, "defocus")
    assert none is None and np.allclose(defocus, 20000.0)
    z = np.random.default_rng(0).normal(size=(5, 3)) * [5.0, 1.0, 0.1]
    pc1, _ = particle_quantity(series, "PC1", z=z)
    assert abs(np.corrcoef(pc1, z[:, 0])[0, 1]) > 0.95
    labels, names = particle_quantity(series, "cluster", labels=np.array([0, 2, 1, 0, 2]))
    assert names == ["cluster 0", "cluster 1", "cluster 2"]
    with pytest.raises(InputError, match="no latent z"):
        particle_quantity(series, "PC2")
    with pytest.raises(InputError, match="unknown quantity"):
        particle_quantity(series, "mass")
