"""Output folders of every writing command (refused when used, ``--overwrite`` to write into them) and runs trained
on a particle subset (``--first`` / ``--ind``): their analyses pair each latent with its own particle.

In-process through ``tomodrgn.cli.main`` (:func:`_cli_inprocess.run_cli`): exit status 2, one stderr line naming the
culprit, no traceback."""

import numpy as np
import pytest
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.io.particles import read_particles
from tomodrgn.simulate import simulate_dataset

TINY = ["--batch-size", "4", "--n-tilts", "5", "--dec-arch", "16x2", "--enc-arch-a", "16x1", "--zdim", "2"]
TINY += ["--device", "cpu", "--epochs", "2"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("of") / "sim", n_particles=16, box_size=16, n_tilts=9, seed=2)


@pytest.fixture(scope="module")
def subset_run(sim, tmp_path_factory):
    """A VAE run trained on the first 10 of the 16 particles."""
    from tomodrgn.runs import TrainConfig
    from tomodrgn.training import train

    out = tmp_path_factory.mktemp("of") / "run"
    cfg = TrainConfig(
        batch_size=4, n_tilts=5, dec_arch="16x2", enc_arch_a="16x1", zdim=2, device="cpu", epochs=2, first=10
    )
    train(sim.star_path, out, cfg, progress=False)
    return out


@pytest.fixture
def cli(capsys):
    return lambda *argv: run_cli(capsys, *argv)


def _used(folder):
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("keep me")
    return folder


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "-o", "{out}", "--n-particles", "2", "-D", "16", "--n-tilts", "3"],
        ["eval_vol", "{run}", "-o", "{out}", "--z", "0", "0"],
        ["analyze", "{run}", "-o", "{out}", "--no-umap", "--ksample", "2"],
        ["analyze_volumes", "{run}", "-o", "{out}", "--n-volumes", "2"],
        ["pc_traversal", "{run}", "-o", "{out}", "--n-points", "2"],
        ["graph_traversal", "{run}", "-o", "{out}", "--anchors", "0", "1"],
        ["subtomo2chimerax", "-o", "{out}", "--run", "{run}"],
        ["convergence_vae", "{run}", "-o", "{out}"],
        ["convergence_nn", "{run}", "-o", "{out}"],
        ["backproject", "{star}", "-o", "{out}", "--device", "cpu"],
    ],
    ids=lambda a: a[0],
)
def test_used_output_folder_is_refused(sim, subset_run, tmp_path, cli, argv):
    out = _used(tmp_path / "used")
    res = cli(*(a.format(out=out, run=subset_run, star=sim.star_path) for a in argv))
    assert_user_error(res, str(out), "not empty", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]  # nothing written


def test_overwrite_writes_into_a_used_folder_and_keeps_other_files(subset_run, tmp_path, cli):
    out = _used(tmp_path / "v")
    res = cli("eval_vol", subset_run, "-o", out, "--z", "0", "0", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt", "vol_000.mrc"]
    assert (out / "mine.txt").read_text() == "keep me"
    out = tmp_path / "s"
    assert cli("simulate", "-o", out, "--n-particles", "2", "-D", "16", "--n-tilts", "3").returncode == 0
    assert_user_error(cli("simulate", "-o", out, "--n-particles", "2", "-D", "16", "--n-tilts", "3"), str(out))
    res = cli("simulate", "-o", out, "--n-particles", "3", "-D", "16", "--n-tilts", "3", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert read_particles(out / "particles.star").n_particles == 3


def test_eval_images_refuses_an_existing_output_file(sim, subset_run, tmp_path, cli):
    z = tmp_path / "z.npy"
    z.write_bytes(b"old")
    assert_user_error(cli("eval_images", subset_run, sim.star_path, "-o", z), str(z), "--overwrite")
    assert z.read_bytes() == b"old" and not (tmp_path / "z.logvar.npy").exists()
    res = cli("eval_images", subset_run, sim.star_path, "-o", z, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert np.load(z).shape == (16, 2)  # an explicit STAR: all of its particles


def test_subset_run_analysis_uses_only_its_particles(sim, subset_run, tmp_path, cli):
    from tomodrgn.api import TrainedModel, load_model, training_particles

    series = read_particles(sim.star_path)
    z = np.load(subset_run / "z.npy")
    assert z.shape == (10, 2)
    train_set = training_particles(subset_run)
    assert train_set.particle_names == series.particle_names[:10]

    model: TrainedModel = load_model(subset_run)
    mu, _ = model.embed()  # default: the run's training particles
    assert mu.shape == (10, 2)

    res = cli("analyze", subset_run, "-o", tmp_path / "an", "--no-umap", "--ksample", "3")
    assert res.returncode == 0, res.stderr
    stars = sorted((tmp_path / "an" / "kmeans3").glob("cluster_*.star"))
    assert len(stars) == 3  # the filtered STARs were written (no particle-count mismatch)
    names = [n for s in stars for n in read_particles(s).particle_names]
    assert sorted(names) == sorted(series.particle_names[:10])  # every selected particle once, no other
    labels = np.load(tmp_path / "an" / "kmeans3" / "labels.npy")
    for c, s in enumerate(stars):
        assert read_particles(s).particle_names == [series.particle_names[i] for i in np.flatnonzero(labels == c)]
    assert (tmp_path / "an" / "spatial" / "neighbours.csv").exists()

    res = cli("analyze_volumes", subset_run, "-o", tmp_path / "av", "--n-volumes", "4", "--ksample", "2")
    assert res.returncode == 0, res.stderr
    assert list((tmp_path / "av").rglob("*.star"))  # cluster STARs of the 10 training particles

    # labels of the 10-particle run against the 16-particle STAR: one line naming both counts
    np.save(tmp_path / "labels.npy", labels)
    res = cli(
        "filter_star", sim.star_path, "-o", tmp_path / "f.star", "--labels", tmp_path / "labels.npy", "--keep", "0"
    )
    msg = assert_user_error(res, "10 labels", "16 particles", str(tmp_path / "labels.npy"), "--first")
    assert str(sim.star_path) in msg and not (tmp_path / "f.star").exists()
