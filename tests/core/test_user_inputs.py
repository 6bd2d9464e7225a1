"""What users bring and see: index lists and labels in the forms the field writes them (text, ``.npy``, cryoDRGN's
pickled ``ind.pkl`` / ``labels.pkl``), warnings as one line each, and user errors raised by the API reaching the
command line as one line with exit status 2 (one case per message).

The CLI cases run ``tomodrgn.cli.main`` in this process (:func:`_cli_inprocess.run_cli`); one warning case runs the
real command in a subprocess, where Python's own warning display would print the module path and source line.
"""

import os
import pickle
import re
import subprocess
import sys
import threading
import warnings

import mrcfile
import numpy as np
import pytest
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.io.errors import InputError
from tomodrgn.io.index_lists import read_index_list, read_labels, read_values
from tomodrgn.io.particles import read_particles
from tomodrgn.io.user_warnings import warnings_to
from tomodrgn.runs import TrainConfig
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import train

PY_WARNING = re.compile(r"\.py:\d+:|Warning: |^\s+\w+ = ", re.M)  # Python's display: path:line: Category: + source


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("inputs") / "sim", n_particles=10, box_size=16, n_tilts=5, seed=3)


@pytest.fixture
def cli_in(capsys):
    return lambda *argv: run_cli(capsys, *argv)


# --- index lists and labels -----------------------------------------------------------------------------------


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)  # what cryoDRGN / the published tomoDRGN write: utils.save_pkl
    return path


@pytest.mark.parametrize(
    "name, obj",
    [
        ("ind.pkl", np.array([7, 2, 5], dtype=np.int64)),  # cryoDRGN's ind.pkl: a numpy int array
        ("ind32.pkl", np.array([7, 2, 5], dtype=np.int32)),
        ("ind_list.pkl", [7, 2, 5]),
        ("ind.npy", np.array([7, 2, 5])),
        ("ind.txt", "7\n2  # a comment\n5\n"),
    ],
)
def test_index_list_forms(tmp_path, name, obj):
    p = tmp_path / name
    if name.endswith(".pkl"):
        _pickle(p, obj)
    elif name.endswith(".npy"):
        np.save(p, obj)
    else:
        p.write_text(obj)
    got = read_index_list(p)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [7, 2, 5])


def test_labels_and_values_from_pickles(tmp_path):
    np.testing.assert_array_equal(read_labels(_pickle(tmp_path / "labels.pkl", np.array([0, 1, 1, 0]))), [0, 1, 1, 0])
    np.testing.assert_allclose(read_values(_pickle(tmp_path / "v.pkl", np.array([0.5, 1.5]))), [0.5, 1.5])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    "name, write, culprit",
    [
        ("dict.pkl", lambda p: _pickle(p, {"ind": [1, 2]}), "holds a dict, not an array or list"),
        ("code.pkl", lambda p: _pickle(p, _Evil()), "not a pickled array"),
        ("garbage.pkl", lambda p: p.write_bytes(b"\x00\x01 not a pickle"), "not a pickled array"),
        ("float.pkl", lambda p: _pickle(p, np.array([1.5, 2.0])), "not a whole number"),
        ("matrix.npy", lambda p: np.save(p, np.zeros((2, 3), dtype=int)), "shape (2, 3)"),
        ("binary.txt", lambda p: p.write_bytes(pickle.dumps(np.arange(3))), "not a text file"),
        ("words.txt", lambda p: p.write_text("1\nfoo\n"), "line 2"),
    ],
)
def test_index_list_wrong_content_names_the_file(tmp_path, monkeypatch, name, write, culprit):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / name
    write(p)
    with pytest.raises(InputError, match=re.escape(culprit)) as e:
        read_index_list(p)
    assert name in str(e.value)
    assert not (tmp_path / "pwned").exists()  # a pickle is never run


def test_filter_star_indices_pkl_keeps_exactly_those_particles(sim, tmp_path, cli_in):
    ind = np.array([8, 1, 4])
    _pickle(tmp_path / "ind.pkl", ind)
    res = cli_in("filter_star", sim.star_path, "-o", tmp_path / "sub.star", "--ind", tmp_path / "ind.pkl")
    assert res.returncode == 0, res.stderr
    full, sub = read_particles(sim.star_path), read_particles(tmp_path / "sub.star")
    assert sub.particle_names == [full.particle_names[i] for i in sorted(ind)]

    labels = np.arange(full.n_particles) % 3
    _pickle(tmp_path / "labels.pkl", labels)
    res = cli_in("filter_star", sim.star_path, "-o", tmp_path / "l.star", "--labels", tmp_path / "labels.pkl")
    assert_user_error(res, "--keep")
    res = cli_in(
        "filter_star", sim.star_path, "-o", tmp_path / "l.star", "--labels", tmp_path / "labels.pkl", "--keep", "2"
    )
    assert res.returncode == 0, res.stderr
    got = read_particles(tmp_path / "l.star").particle_names
    assert got == [full.particle_names[i] for i in np.flatnonzero(labels == 2)]


def test_filter_star_wrong_index_file_is_one_line(sim, tmp_path, cli_in):
    _pickle(tmp_path / "ind.pkl", {"not": "indices"})
    assert_user_error(cli_in("filter_star", sim.star_path, "-o", tmp_path / "x.star", "--ind", tmp_path / "ind.pkl"))
    res = cli_in("filter_star", sim.star_path, "-o", tmp_path / "x.star", "--ind", tmp_path / "ind.pkl")
    assert "ind.pkl" in res.stderr
    _pickle(tmp_path / "far.pkl", np.array([0, 99]))
    assert_user_error(
        cli_in("filter_star", sim.star_path, "-o", tmp_path / "x.star", "--ind", tmp_path / "far.pkl"), "99"
    )
    assert not (tmp_path / "x.star").exists()


# --- warnings ---------------------------------------------------------------------------------------------------


def test_warnings_to_one_line_each_kind_once_with_a_count():
    lines: list[str] = []
    with warnings_to(lines.append):
        warnings.simplefilter("always")
        for i in range(4):
            warnings.warn(f"/data/stack_{i}.mrcs: header pixel size 3.{i} Å differs", stacklevel=2)
        warnings.warn("another kind\n  over two lines", RuntimeWarning, stacklevel=2)
    assert lines[0] == "warning: /data/stack_0.mrcs: header pixel size 3.0 Å differs"
    assert lines[1] == "warning: another kind over two lines"
    assert lines[2] == "warning: 3 more warnings of the same kind as above not shown"
    assert len(lines) == 3


def test_warnings_of_other_threads_do_not_reach_the_sink():
    lines: list[str] = []
    other: list = []

    def elsewhere():
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            warnings.warn("from another thread", stacklevel=2)
        other.extend(rec)

    with warnings_to(lines.append):
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
    assert lines == []
    assert [str(w.message) for w in other] == ["from another thread"]


def _mismatched_header(sim, tmp_path):
    """A copy of the simulated set whose MRC headers say another pixel size than the STAR."""
    import shutil

    root = tmp_path / "set"
    shutil.copytree(sim.star_path.parent, root)
    for stack in root.rglob("*.mrcs"):
        with mrcfile.open(stack, mode="r+") as m:
            m.voxel_size = 2 * float(m.voxel_size.x)
    return root / sim.star_path.name


def test_cli_warning_is_one_line_without_module_path(sim, tmp_path):
    star = _mismatched_header(sim, tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "tomodrgn.cli", "backproject", str(star), "-o", str(tmp_path / "bp"), "--first", "4"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 1 and "differs from" in warned[0] and "MRC header" in warned[0], res.stderr
    assert not PY_WARNING.search(res.stderr), res.stderr
    assert "_pixel_size(" not in res.stderr  # no source line


# --- user errors from the API: one line, exit 2 -----------------------------------------------------------------


@pytest.fixture(scope="module")
def run(sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("inputs") / "run"
    cfg = TrainConfig(batch_size=4, n_tilts=5, dec_arch="16x2", enc_arch_a="16x1", zdim=2, device="cpu", epochs=1)
    train(sim.star_path, out, cfg, progress=False)
    return out


def test_embed_other_box_is_one_line(sim, run, tmp_path, cli_in):
    other = simulate_dataset(tmp_path / "big", n_particles=4, box_size=20, n_tilts=5, seed=4)
    res = cli_in("eval_images", run, other.star_path, "-o", tmp_path / "z.npy")
    assert_user_error(res, "box 20", "16")


def _api_errors():
    from tomodrgn.analysis import latent, metrics
    from tomodrgn.models.names import parse_arch
    from tomodrgn.physics.lattice import Lattice
    from tomodrgn.simulate.geometry import tilt_series

    z = np.zeros((5, 2))
    return [
        ("arch", lambda: parse_arch("256-3"), "'256-3'"),
        ("box", lambda: Lattice(15), "15"),
        ("tilts", lambda: tilt_series(99, 60.0, 3.0, 3.0), "n_tilts=99"),
        ("fsc shapes", lambda: metrics.fsc(np.zeros((4, 4, 4)), np.zeros((6, 6, 6))), "(6, 6, 6)"),
        ("cc mask", lambda: metrics.cc(np.ones((4, 4, 4)), np.ones((4, 4, 4)), np.zeros((4, 4, 4), bool)), "mask"),
        ("labels", lambda: metrics.confusion_matrix(np.zeros(3), np.zeros(4)), "differ in length"),
        ("z nan", lambda: latent.pca(np.full((5, 2), np.nan)), "NaN"),
        ("z shape", lambda: latent.pca(np.zeros(5)), "(n_particles, zdim)"),
        ("path", lambda: latent.path_between(z[0], np.zeros(3), 4), "differ in shape"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_api_user_errors_are_input_errors_with_one_line(case):
    from tomodrgn.io.errors import user_error_message

    name, call, culprit = _api_errors()[case]
    with pytest.raises(InputError) as e:
        call()
    line = user_error_message(e.value)
    assert line is not None and "\n" not in line and culprit in line, (name, line)


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["--dec-arch", "big"], "'big'"),
        (["--dec-arch", "0x3"], "'0x3'"),
        (["--enc-mask", "50"], "enc_mask"),
    ],
)
def test_bad_architecture_is_one_line(sim, tmp_path, cli_in, argv, culprit):
    res = cli_in("train_vae", sim.star_path, "-o", tmp_path / "r", "--epochs", "1", "--device", "cpu", *argv)
    assert_user_error(res, culprit)
    assert not (tmp_path / "r" / "weights.1.pt").exists()


def test_cc_of_maps_of_different_shape_is_one_line(tmp_path, cli_in):
    from tomodrgn.io.mrc import write_mrc

    write_mrc(tmp_path / "a.mrc", np.zeros((8, 8, 8), np.float32), 1.0)
    write_mrc(tmp_path / "b.mrc", np.zeros((10, 10, 10), np.float32), 1.0)
    res = cli_in("fsc", tmp_path / "a.mrc", tmp_path / "b.mrc")
    assert_user_error(res, "(8, 8, 8)", "(10, 10, 10)")


def test_pc_that_does_not_exist_is_one_line(run, tmp_path, cli_in):
    res = cli_in("pc_traversal", run, "--pc", "7", "-o", tmp_path / "t")
    assert_user_error(res, "PC7")


def test_first_and_ind_follow_one_rule_everywhere(tmp_path):
    """--ind picks particles in its order, --first then keeps the first N of them: the same in training, embedding
    and back-projection (io.selection.chosen_indices), with errors naming the option or file."""
    from tomodrgn.io.selection import chosen_indices
    from tomodrgn.reconstruct.pipeline import _particles_to_use
    from tomodrgn.runs.config import TrainConfig

    assert chosen_indices(10, first=2, ind=np.array([5, 3, 7])).tolist() == [5, 3]
    assert chosen_indices(10, first=3).tolist() == [0, 1, 2]
    assert chosen_indices(4).tolist() == [0, 1, 2, 3]
    (tmp_path / "ind.txt").write_text("7\n1\n4\n")
    assert chosen_indices(10, first=2, ind=tmp_path / "ind.txt").tolist() == [7, 1]
    assert _particles_to_use(10, tmp_path / "ind.txt", 2).tolist() == [7, 1]
    cfg = TrainConfig(first=2, ind=str(tmp_path / "ind.txt"))  # both together are accepted now
    assert cfg.first == 2 and cfg.ind.endswith("ind.txt")
    for kwargs, words in (
        (dict(ind=np.array([3, 12])), "--ind: particle index 12 out of range 0..9"),
        (dict(first=0), "--first must be an integer ≥ 1"),
        (dict(ind=tmp_path / "ind.txt", first=True), "--first must be an integer ≥ 1"),
    ):
        with pytest.raises(InputError, match=words):
            chosen_indices(10, **kwargs)


def test_stacks_are_found_in_one_order_for_every_flavour(tmp_path, monkeypatch):
    """io.particle_series.resolve_stack (Warp/M rows and RELION 5 sets alike): absolute, then --datadir (as written,
    then by name), then next to the STAR (as written, by name), then the STAR folder's parents (RELION's project
    folder), then the working directory."""
    from tomodrgn.io.particle_series import resolve_stack

    project = tmp_path / "project"
    star_dir = project / "Extract" / "job010"
    star_dir.mkdir(parents=True)
    (project / "stacks").mkdir()
    in_project = project / "stacks" / "a.mrcs"
    in_project.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert resolve_stack("stacks/a.mrcs", star_dir, None) == in_project.resolve()  # project-relative (RELION)
    beside = star_dir / "a.mrcs"
    beside.write_bytes(b"")
    assert resolve_stack("stacks/a.mrcs", star_dir, None) == beside.resolve()  # by name next to the STAR first
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.mrcs").write_bytes(b"")
    assert resolve_stack("stacks/a.mrcs", star_dir, data) == (data / "a.mrcs").resolve()  # --datadir wins
    assert resolve_stack(str(in_project), star_dir, None) == in_project.resolve()
    assert resolve_stack("stacks/missing.mrcs", star_dir, None) is None
