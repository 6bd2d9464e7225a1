"""``filter_star`` on the inputs users bring (issue 32, item 7): an empty selection is one line and writes nothing,
``-o`` naming a folder or an input file is one line and leaves no ``.tmp``, the stacks need not exist (only STAR rows
are filtered, 2-D stack sets too), and relative image names stay relative and still resolve from the output's folder
(read back with ``tomodrgn.api.read_particles``). Real files, the real command line in this process."""

import shutil

import numpy as np
import pytest
import starfile
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.api import InputError, filter_star, read_particles
from tomodrgn.simulate import simulate_dataset

pytestmark = pytest.mark.filterwarnings("always::UserWarning")  # warning lines are tested (also under -W ignore)


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    """A simulated Warp-style set: ``sim/particles.star`` naming ``k@particles/NAME.mrcs`` relative to it."""
    sim = simulate_dataset(tmp_path_factory.mktemp("fs") / "sim", n_particles=6, box_size=16, n_tilts=3, seed=5)
    return sim.star_path.parent


@pytest.fixture
def sim(sim_dir, tmp_path):
    """A fresh copy of the set under ``tmp_path/sim`` (tests move, delete and write beside it)."""
    shutil.copytree(sim_dir, tmp_path / "sim")
    return tmp_path / "sim" / "particles.star"


@pytest.fixture
def cli(capsys):
    return lambda *argv: run_cli(capsys, *argv)


def _rows(star):
    blocks = starfile.read(star, always_dict=True)
    return next(df for df in blocks.values() if "rlnImageName" in getattr(df, "columns", []))


def _same_images(out, full, chosen):
    sub = read_particles(out)
    assert sub.particle_names == [full.particle_names[i] for i in chosen]
    rows = np.concatenate([full.image_indices[i] for i in chosen])
    np.testing.assert_array_equal(sub.read_images(np.arange(sub.n_images)), full.read_images(rows))


def test_empty_selection_is_one_line_and_writes_nothing(sim, tmp_path, cli):
    np.save(tmp_path / "labels.npy", np.arange(6) % 3)
    out = tmp_path / "sel" / "f.star"
    msg = assert_user_error(
        cli("filter_star", sim, "-o", out, "--labels", tmp_path / "labels.npy", "--keep", "99"),
        "--keep 99",
        "no particle of",
        str(sim),
        "labels present: 0, 1, 2",
        "nothing written",
    )
    assert "labels.npy" in msg
    assert_user_error(  # the complement of every label: also nothing
        cli("filter_star", sim, "-o", out, "--labels", tmp_path / "labels.npy", "--keep", "0", "1", "2", "--exclude"),
        "every particle of",
        "nothing written",
    )
    (tmp_path / "none.txt").write_text("# no particle\n")
    assert_user_error(cli("filter_star", sim, "-o", out, "--ind", tmp_path / "none.txt"), "keeps no particle")
    assert not out.exists() and not out.with_name("f.star.tmp").exists()
    with pytest.raises(InputError, match="keeps no particle"):  # the API too
        filter_star(sim, out, indices=[])
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_output_that_is_a_folder_is_one_line_and_leaves_no_tmp(sim, tmp_path, cli):
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    (tmp_path / "ind.txt").write_text("0\n2\n")
    res = cli("filter_star", sim, "-o", folder, "--ind", tmp_path / "ind.txt")
    assert_user_error(res, f"-o {folder}", "is a folder", "particles.star")
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    assert not list(tmp_path.glob("*.tmp")) and not list(folder.glob("*.tmp"))
    res = cli("filter_star", sim, "-o", folder / "sub.star", "--ind", tmp_path / "ind.txt")  # a file name in it
    assert res.returncode == 0, res.stderr
    _same_images(folder / "sub.star", read_particles(sim), [0, 2])


def test_stacks_need_not_exist_and_names_are_kept(sim, tmp_path, cli):
    full_rows = _rows(sim)
    shutil.rmtree(sim.parent / "particles")  # no stack at all
    (tmp_path / "ind.txt").write_text("4\n1\n")
    chosen_names = list(dict.fromkeys(full_rows["rlnGroupName"]))
    chosen_names = [chosen_names[1], chosen_names[4]]
    expected = full_rows[full_rows["rlnGroupName"].isin(chosen_names)].reset_index(drop=True)

    res = cli("filter_star", sim, "-o", sim.parent / "sub.star", "--ind", tmp_path / "ind.txt")  # beside it
    assert res.returncode == 0 and "warning:" not in res.stderr, res.stderr
    got = _rows(sim.parent / "sub.star")
    assert list(got.columns) == list(full_rows.columns)
    assert list(got["rlnImageName"]) == list(expected["rlnImageName"])  # relative names, verbatim
    np.testing.assert_allclose(got["rlnDefocusU"], expected["rlnDefocusU"])

    res = cli("filter_star", sim, "-o", tmp_path / "other" / "sub.star", "--ind", tmp_path / "ind.txt")
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and warning[0].startswith("warning: 2 image stack(s) named in"), res.stderr
    assert "not found" in warning[0] and str(tmp_path / "other") in warning[0]
    assert list(_rows(tmp_path / "other" / "sub.star")["rlnImageName"]) == list(expected["rlnImageName"])


def test_relative_names_stay_relative_and_resolve_from_the_output(sim, tmp_path, cli, monkeypatch):
    full = read_particles(sim)
    (tmp_path / "ind.txt").write_text("5\n0\n3\n")
    chosen = [0, 3, 5]
    # below the input's folder: the names resolve through its parents, kept as written
    out = sim.parent / "Select" / "job002" / "sub.star"
    assert cli("filter_star", sim, "-o", out, "--ind", tmp_path / "ind.txt").returncode == 0
    names = list(_rows(out)["rlnImageName"])
    assert all(n.split("@")[1].startswith("particles/") for n in names), names[:2]
    _same_images(out, full, chosen)

    # elsewhere, run from the common project folder: relative to it (RELION's project-relative form)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "Select" / "job003" / "sub.star"
    assert cli("filter_star", sim, "-o", out, "--ind", tmp_path / "ind.txt").returncode == 0
    names = list(_rows(out)["rlnImageName"])
    assert all(n.split("@")[1].startswith("sim/particles/") for n in names), names[:2]
    monkeypatch.chdir(out.parent)  # read back from another working directory: found through the output's parents
    _same_images(out, full, chosen)

    # outside the input's tree, run from a folder that does not hold the stacks: no relative name resolves from
    # the output's folder, so absolute
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    out = tmp_path / "far" / "sub.star"
    assert cli("filter_star", sim, "-o", out, "--ind", tmp_path / "ind.txt").returncode == 0
    names = list(_rows(out)["rlnImageName"])
    assert all(n.split("@")[1].startswith(str(sim.parent.resolve()) + "/particles/") for n in names), names[:2]
    _same_images(out, full, chosen)


def test_relion_project_names_stay_project_relative(sim, tmp_path, cli, monkeypatch):
    """A RELION project: names relative to the project folder, the output in another job folder of the project."""
    project = tmp_path / "project"
    job = project / "Extract" / "job001"
    job.mkdir(parents=True)
    shutil.move(sim.parent / "particles", job / "particles")
    rows = _rows(sim)
    rows["rlnImageName"] = [n.replace("@particles/", "@Extract/job001/particles/") for n in rows["rlnImageName"]]
    blocks = starfile.read(sim, always_dict=True)
    blocks[next(k for k, v in blocks.items() if "rlnImageName" in getattr(v, "columns", []))] = rows
    star = job / "particles.star"
    starfile.write(blocks, star)
    full = read_particles(star)
    monkeypatch.chdir(project)
    out = project / "Select" / "job002" / "particles.star"
    np.save(tmp_path / "labels.npy", np.arange(6) % 2)
    res = cli("filter_star", star, "-o", out, "--labels", tmp_path / "labels.npy", "--keep", "1")
    assert res.returncode == 0, res.stderr
    names = list(_rows(out)["rlnImageName"])
    assert all(n.split("@")[1].startswith("Extract/job001/particles/") for n in names), names[:2]
    monkeypatch.chdir(tmp_path)
    _same_images(out, full, [1, 3, 5])


@pytest.fixture(scope="module")
def stack_set_dir(tmp_path_factory):
    """A simulated RELION 5 / WarpTools 2-D stack set: ``sim/optimisation_set.star`` → ``relion5_particles.star``
    naming ``particles/NAME.mrcs`` relative to it, and ``tomograms.star``."""
    sim = simulate_dataset(tmp_path_factory.mktemp("fs5") / "sim", preset="homogeneous", n_particles=4, box_size=16,
                           n_tilts=5, drop_tilts=2, format="relion5", seed=2)  # fmt: skip
    return sim.star_path.parent


def _particle_table(star):
    return starfile.read(star, always_dict=True)["particles"]


def test_stack_set_is_filtered_without_its_stacks(stack_set_dir, tmp_path, cli, monkeypatch):
    shutil.copytree(stack_set_dir, tmp_path / "sim")
    opt = tmp_path / "sim" / "optimisation_set.star"
    full = read_particles(opt)
    full_images = full.read_images(np.arange(full.n_images))
    rows = _particle_table(tmp_path / "sim" / "relion5_particles.star")
    shutil.move(tmp_path / "sim" / "particles", tmp_path / "elsewhere")  # the stacks are not where the STAR says
    (tmp_path / "ind.txt").write_text("3\n1\n")
    monkeypatch.chdir(tmp_path)

    res = cli("filter_star", opt, "-o", tmp_path / "sel" / "optimisation_set.star", "--ind", tmp_path / "ind.txt")
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "2 image stack(s) named in" in warning[0] and "not found" in warning[0], res.stderr
    got = _particle_table(tmp_path / "sel" / "particles.star")
    assert list(got.columns) == list(rows.columns)
    assert list(got["rlnTomoParticleName"]) == [full.particle_names[1], full.particle_names[3]]
    assert list(got["rlnImageName"]) == [rows["rlnImageName"][1], rows["rlnImageName"][3]]  # kept as written

    # with --datadir the stacks are found, so their names are re-pointed and the subset reads back whole
    out = tmp_path / "sel2" / "optimisation_set.star"
    res = cli("filter_star", opt, "-o", out, "--ind", tmp_path / "ind.txt", "--datadir", tmp_path / "elsewhere")
    assert res.returncode == 0 and "warning:" not in res.stderr, res.stderr
    sub = read_particles(out)
    assert sub.particle_names == [full.particle_names[1], full.particle_names[3]]
    chosen = np.concatenate([full.image_indices[1], full.image_indices[3]])
    np.testing.assert_array_equal(sub.read_images(np.arange(sub.n_images)), full_images[chosen])


def test_output_that_would_replace_an_input_is_one_line(sim, stack_set_dir, tmp_path, cli):
    (tmp_path / "ind.txt").write_text("0\n")
    before = sim.read_bytes()
    assert_user_error(cli("filter_star", sim, "-o", sim, "--ind", tmp_path / "ind.txt"), f"-o {sim}",
                      "would replace the input", str(sim))  # fmt: skip
    assert sim.read_bytes() == before
    shutil.copytree(stack_set_dir, tmp_path / "set")
    opt = tmp_path / "set" / "optimisation_set.star"
    particles = tmp_path / "set" / "relion5_particles.star"
    before = particles.read_bytes()
    out = tmp_path / "set" / "relion5_optimisation_set.star"  # whose particles STAR would be the input's
    assert_user_error(cli("filter_star", opt, "-o", out, "--ind", tmp_path / "ind.txt"), "would replace the input",
                      str(particles))  # fmt: skip
    assert particles.read_bytes() == before and not out.exists()
