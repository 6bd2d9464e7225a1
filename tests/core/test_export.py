"""ChimeraX placement scripts and particle selections (tomodrgn.export)."""

import re

import numpy as np
import pytest

from tomodrgn.analysis.spatial import particle_poses, particle_positions
from tomodrgn.export.chimerax import chimerax_script, placement_matrix, write_chimerax_scripts
from tomodrgn.export.selections import (
    filter_star,
    select_indices,
    write_index_list,
    write_keep_exclude,
)
from tomodrgn.io.index_lists import read_index_list
from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.particles import read_particles
from tomodrgn.physics.pose import euler_to_matrix
from tomodrgn.simulate import simulate_dataset


def _matrices(text):
    return [
        np.array([float(v) for v in m.split(",")]).reshape(3, 4)
        for m in re.findall(r"view matrix models #\d+,([-\d.,e]+)", text)
    ]


def test_chimerax_script_known_pose(tmp_path):
    vol = write_mrc(tmp_path / "vol.mrc", np.zeros((16, 16, 16)), pixel_size=2.0)
    a = euler_to_matrix(90.0, 0.0, 0.0)  # [[0,1,0],[-1,0,0],[0,0,1]]
    pos = np.array([[100.0, 200.0, 50.0], [10.0, 20.0, 30.0]])
    text = chimerax_script([vol, vol], pos, np.stack([a, np.eye(3)]), box_size=16, labels=np.array([0, 3]))
    lines = text.splitlines()
    assert lines[1] == f"open {vol.as_posix()}"
    # box centre c = 8 px × 2 Å = 16 Å; translation p − A c = (100 − 16, 200 + 16, 50 − 16)
    assert lines[2] == "view matrix models #1,0.000000,1.000000,0.000000,84.000000," + (
        "-1.000000,0.000000,0.000000,216.000000,0.000000,0.000000,1.000000,34.000000"
    )
    m = _matrices(text)
    np.testing.assert_allclose(m[1], np.hstack([np.eye(3), [[-6.0], [4.0], [14.0]]]))
    assert "volume #1 color #1f77b4" in text and "volume #2 color #d62728" in text  # clusters 0 and 3
    # the volume centre lands on the particle position, and a reference +y point on tomogram +x
    c = np.full(3, 16.0)
    np.testing.assert_allclose(m[0][:, :3] @ c + m[0][:, 3], pos[0])
    np.testing.assert_allclose(m[0][:, :3] @ (c + [0, 1, 0]) + m[0][:, 3], pos[0] + [1, 0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="2 volumes"):
        chimerax_script([vol, vol], pos[:1], np.stack([a, a]), 16)


def test_chimerax_scripts_per_tomogram_from_simulated_star(tmp_path):
    ds = simulate_dataset(tmp_path / "sim", n_particles=6, box_size=16, n_tilts=5, n_tomograms=2, seed=2)
    series = read_particles(ds.star_path)
    tomos, pos = particle_positions(series)
    rots = particle_poses(series)
    labels = np.asarray(ds.labels)
    paths = [ds.volume_paths[lab] for lab in labels]  # one ground-truth volume per class
    written = write_chimerax_scripts(tmp_path / "cxc", paths, pos, rots, tomos, ds.box_size, labels=labels)
    assert [p.stem for p in written] == list(dict.fromkeys(tomos))
    for p in written:
        idx = np.nonzero(tomos == p.stem)[0]
        m = _matrices(p.read_text())
        assert len(m) == len(idx)
        for mi, i in zip(m, idx):
            np.testing.assert_allclose(mi, placement_matrix(rots[i], pos[i], ds.box_size, ds.pixel_size), atol=1e-5)
            np.testing.assert_allclose(mi[:, :3], rots[i], atol=1e-5)

    # selections: filtered STAR with the particles of class 0 only, every column kept
    keep = np.flatnonzero(labels == labels[0])
    out = filter_star(series, tmp_path / "class.star", labels=labels, keep=[labels[0]])
    sub = read_particles(out)
    assert sub.particle_names == [series.particle_names[i] for i in keep]
    assert list(sub.images.columns) == list(series.images.columns)
    inv = read_particles(filter_star(series, tmp_path / "rest.star", indices=keep, invert=True))
    assert sub.n_particles + inv.n_particles == series.n_particles
    assert not set(sub.particle_names) & set(inv.particle_names)


def test_index_lists(tmp_path):
    p = write_index_list(tmp_path / "a.txt", [3, 1, 4], comment="three particles")
    assert p.read_text().splitlines() == ["# three particles", "3", "1", "4"]
    np.testing.assert_array_equal(read_index_list(p), [3, 1, 4])
    keep, exclude = write_keep_exclude(tmp_path, "sel", [4, 0], n_particles=6)
    np.testing.assert_array_equal(read_index_list(keep), [0, 4])
    np.testing.assert_array_equal(read_index_list(exclude), [1, 2, 3, 5])
    np.testing.assert_array_equal(select_indices(5, labels=np.array([1, 2, 1, 0, 2]), keep=[2, 0]), [1, 3, 4])
    with pytest.raises(ValueError, match="index 9 out of range"):
        select_indices(5, indices=[9])
    (tmp_path / "bad.txt").write_text("1\nx\n")
    with pytest.raises(ValueError, match="bad.txt, line 2"):
        read_index_list(tmp_path / "bad.txt")
