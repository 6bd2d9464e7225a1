"""Iso-surfaces of decoded volumes and the populated tomogram (core :mod:`tomodrgn.analysis.surfaces`).

The pose check is independent of our pose code: the expected marker positions come from the STAR's Euler angles
through scipy (RELION's matrix is the inverse of scipy's intrinsic ZYZ rotation of (rot, tilt, psi)).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tomodrgn.analysis.overlay import particle_overlay
from tomodrgn.analysis.surfaces import iso_surface, populated_surfaces, surface_threshold
from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import read_particles

D, PS = 40, 2.0  # box (voxels) and voxel size (Å) of the phantom
# chiral phantom: a central ball and three markers at different distances along reference +x, +y, +z (Å)
MARKERS = {"x": (np.array([12.0, 0, 0]), (7.5, 16.5)), "y": (np.array([0, 21.0, 0]), (16.5, 25.5)),
           "z": (np.array([0, 0, 30.0]), (25.5, 35))}  # fmt: skip


def phantom() -> np.ndarray:
    zz, yy, xx = (np.mgrid[:D, :D, :D] - D // 2) * PS  # Å
    vol = (zz**2 + yy**2 + xx**2 < 6.0**2).astype(np.float32)
    for xyz, _ in MARKERS.values():
        vol += ((xx - xyz[0]) ** 2 + (yy - xyz[1]) ** 2 + (zz - xyz[2]) ** 2 < 3.0**2).astype(np.float32)
    return vol


def test_iso_surface_of_a_ball_has_its_radius():
    zz, yy, xx = (np.mgrid[:D, :D, :D] - D // 2) * PS
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    vol = np.clip(10.0 - r, 0, None).astype(np.float32)  # level 10 − 8 = 2 ↔ radius 8 Å
    mesh = iso_surface(vol, 2.0, PS)
    dist = np.linalg.norm(mesh.vertices, axis=1)
    assert mesh.n_vertices > 100 and len(mesh.faces) > 100
    np.testing.assert_allclose(dist, 8.0, atol=0.05)
    assert iso_surface(vol, 1e6, PS).n_vertices == 0
    assert iso_surface(vol, 2.0, PS, step=2).n_vertices < mesh.n_vertices / 2


def test_threshold_from_mass_encloses_that_volume():
    zz, yy, xx = (np.mgrid[:D, :D, :D] - D // 2) * PS
    vol = np.exp(-(zz**2 + yy**2 + xx**2) / (2 * 8.0**2)).astype(np.float32)
    mass = 30.0  # kDa → 36,900 Å³ → 4,612 voxels of 8 Å³
    level = surface_threshold(vol, PS, mass_kda=mass)
    enclosed = (vol > level).sum() * PS**3
    np.testing.assert_allclose(enclosed, mass * 1000 * 1.23, rtol=0.02)
    sigma_level = surface_threshold(vol)
    assert vol.min() < sigma_level < vol.max()
    with pytest.raises(InputError, match="constant"):
        surface_threshold(np.zeros((4, 4, 4)))


def test_populated_surfaces_put_each_marker_where_the_star_pose_says(tiny_star):
    """Every particle's chiral phantom lands at its STAR position with each marker on the side its pose gives."""
    series = read_particles(tiny_star.star, tomogram_pixel_size=tiny_star.tomogram_pixel_size)
    labels = np.array([0, 1, 0, 1, 2])
    ov = particle_overlay(series, labels=labels, tomogram_pixel_size=tiny_star.tomogram_pixel_size)
    vol = phantom()
    surfaces = populated_surfaces(
        (vol for _ in ov.particle_indices), ov.positions, ov.rotations, PS, ov.pixel_size,
        labels=ov.labels, colors=ov.colors, particle_indices=ov.particle_indices, threshold=0.5,
    )  # fmt: skip
    assert [s.label for s in surfaces] == [0, 1, 2]
    for s in surfaces:
        np.testing.assert_array_equal(s.particle_indices, np.flatnonzero(labels == s.label))
        np.testing.assert_allclose(s.color, ov.colors[s.particle_indices[0]])
        assert s.mesh.faces.max() < s.mesh.n_vertices
        for k, p in enumerate(s.particle_indices):
            verts = s.mesh.vertices[s.vertex_particle == k].astype(np.float64)
            pos_zyx = tiny_star.coords_px[p][::-1]  # the STAR's _rlnCoordinateZ/Y/X, tomogram pixels
            d_xyz = (verts - pos_zyx)[:, ::-1] * tiny_star.tomogram_pixel_size  # Å from the particle centre
            a = Rotation.from_euler("ZYZ", tiny_star.eulers[p], degrees=True).inv().as_matrix()  # RELION A
            r = np.linalg.norm(d_xyz, axis=1)
            for axis, (xyz, (r0, r1)) in MARKERS.items():
                marker = d_xyz[(r > r0) & (r < r1)]
                assert len(marker) > 20, (p, axis)
                np.testing.assert_allclose(marker.mean(0), a @ xyz, atol=1.0, err_msg=f"particle {p} marker {axis}")
                assert np.linalg.norm(marker.mean(0) + a @ xyz) > np.linalg.norm(xyz)  # not on the mirror side


def test_populated_tomogram_of_1000_particles_stays_small():
    """1,000 particles in a 1024×1024×300 tomogram: meshes only, far below a tomogram-sized array and 4 GiB."""
    rng = np.random.default_rng(0)
    n, shape = 1000, (300, 1024, 1024)
    positions = rng.uniform([20, 20, 20], np.array(shape) - 20, size=(n, 3))
    rotations = Rotation.random(n, random_state=0).as_matrix()
    labels = rng.integers(0, 4, n)
    base = phantom()
    calls = []

    def volumes():
        for i in range(n):
            yield base * (1.0 + 0.1 * (i % 7))  # one volume at a time, as decoding in chunks gives them

    tracemalloc.start()
    surfaces = populated_surfaces(
        volumes(), positions, rotations, PS, 8.0 * PS, labels=labels, progress=lambda k, t: calls.append((k, t))
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tomogram_bytes = int(np.prod(shape)) * 4
    assert peak < tomogram_bytes / 10 and peak < 4 * 2**30, peak
    assert sum(len(s.particle_indices) for s in surfaces) == n and len(surfaces) == 4
    assert calls[-1] == (n, n) and len(calls) == n
    for s in surfaces:
        assert np.all(s.mesh.vertices >= 0) and np.all(s.mesh.vertices < np.array(shape))
