"""Particle positions, poses and nearest neighbours in tomograms (tomodrgn.analysis.spatial)."""

import numpy as np
import pytest

from tomodrgn.analysis.spatial import nearest_neighbours, neighbour_summary, particle_poses, particle_positions
from tomodrgn.io.particles import read_particles
from tomodrgn.physics.pose import euler_to_matrix
from tomodrgn.simulate import simulate_dataset


def test_nn_distances_on_known_positions():
    # tomogram A: particles on a line along x at 0, 10, 22, 35 Å; tomogram B: two particles 7 Å apart along z
    pos = np.array([[0, 0, 0], [10, 0, 0], [22, 0, 0], [35, 0, 0], [0, 0, 0], [0, 0, 7]], dtype=float)
    tomos = np.array(["A", "A", "A", "A", "B", "B"], dtype=object)
    nn = nearest_neighbours(pos, tomos)
    np.testing.assert_allclose(nn.distance, [10, 10, 12, 13, 7, 7])
    np.testing.assert_array_equal(nn.index, [1, 0, 1, 2, 5, 4])  # B's first particle coincides with A's: ignored
    np.testing.assert_allclose(nn.direction_tomo[0], [1, 0, 0])
    np.testing.assert_allclose(nn.direction_tomo[3], [-1, 0, 0])
    np.testing.assert_allclose(nn.direction_tomo[4], [0, 0, 1])
    assert np.all(np.isnan(nn.direction_ref))  # no poses given
    # neighbours restricted to the same cluster; a particle alone in its cluster has none
    labels = np.array([0, 1, 0, 0, 2, 2])
    nn2 = nearest_neighbours(pos, tomos, labels=labels)
    np.testing.assert_allclose(nn2.distance[[0, 2, 3]], [22, 13, 13])
    assert nn2.index[1] == -1 and np.isinf(nn2.distance[1])
    table = neighbour_summary(nn2, labels)
    assert table["n_particles"].tolist() == [3, 1, 2]
    assert table["nn_distance_median_A"].tolist()[0] == pytest.approx(13.0)
    assert np.isnan(table["nn_distance_median_A"].tolist()[1])
    # coincident particles are each other's neighbour at distance 0
    nn3 = nearest_neighbours(np.zeros((2, 3)))
    np.testing.assert_array_equal(nn3.index, [1, 0])
    np.testing.assert_allclose(nn3.distance, 0)


def test_known_pose_gives_known_reference_direction():
    # rot = 90°: A = Rz(90°) passive = [[0,1,0],[-1,0,0],[0,0,1]]; a neighbour along tomogram +x is along
    # reference +y (A @ (0,1,0) = (1,0,0)).
    a = euler_to_matrix(90.0, 0.0, 0.0)
    np.testing.assert_allclose(a, [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)
    pos = np.array([[0, 0, 0], [5, 0, 0]], dtype=float)
    rots = np.stack([a, np.eye(3)])
    nn = nearest_neighbours(pos, rotations=rots)
    np.testing.assert_allclose(nn.direction_ref[0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(nn.direction_ref[1], [-1, 0, 0], atol=1e-12)
    # any pose: the reference-frame direction maps back to the tomogram-frame one with A
    b = euler_to_matrix(30.0, 90.0, -20.0)
    nn = nearest_neighbours(pos, rotations=np.stack([b, b]))
    np.testing.assert_allclose(b @ nn.direction_ref[0], [1, 0, 0], atol=1e-12)  # back into the tomogram frame
    # all particles of a lattice with the same pose see their neighbour in the same reference direction
    table = neighbour_summary(nn, np.zeros(2, int))
    assert table["dir_ref_resultant"][0] == pytest.approx(0.0, abs=1e-12)  # +x and −x neighbours cancel


def test_positions_and_poses_from_simulated_star(tmp_path):
    ds = simulate_dataset(tmp_path / "sim", n_particles=8, box_size=16, n_tilts=5, n_tomograms=2, seed=1)
    series = read_particles(ds.star_path)
    truth = np.load(ds.truth_path, allow_pickle=True)
    tomos, pos = particle_positions(series)
    np.testing.assert_allclose(pos, truth["position_px"] * ds.pixel_size, atol=1e-3)
    assert tomos.tolist() == [str(truth["tomogram_names"][t]) for t in truth["tomogram"]]
    assert len(set(tomos)) == 2
    # the particle pose (reference → tomogram frame) is recovered from the tilt images
    np.testing.assert_allclose(particle_poses(series), truth["rotation"], atol=1e-6)
    nn = nearest_neighbours(pos, tomos, particle_poses(series))
    assert np.all(np.isfinite(nn.distance)) and np.all(nn.distance > 0)
    for i, j in enumerate(nn.index):
        assert tomos[i] == tomos[j]
