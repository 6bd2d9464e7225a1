"""Commands on RELION 5 / WarpTools 2-D stack sets: ``tomodrgn downsample`` writes a stack set (new stacks, particles
STAR, tomograms STAR, optimisation set) that reads back with the same geometry; ``--tomograms-star`` for every command
that reads particles, on a particles STAR whose tomograms STAR is not next to it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import starfile

from tomodrgn.cli import main
from tomodrgn.io.downsample import MANIFEST, downsample_particles
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc, read_mrc_header
from tomodrgn.io.particles import read_particles
from tomodrgn.physics.hartley import fourier_crop
from tomodrgn.simulate import simulate_dataset

D = 32


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("r5cmd")
    return simulate_dataset(out / "sim", preset="homogeneous", n_particles=8, box_size=D, n_tilts=7, snr=None,
                            drop_tilts=1, format="relion5", seed=5, n_tomograms=2)  # fmt: skip


def _same_set(a, b, box: int) -> None:
    """b is a downsampled to ``box``: same particles, poses, origins (Å), CTF and dose; images are Fourier crops."""
    assert b.stack_set is not None and b.flavour == "relion5"
    assert b.box_size == box and b.pixel_size == pytest.approx(a.pixel_size * a.box_size / box)
    assert b.particle_names == a.particle_names and b.n_images == a.n_images
    np.testing.assert_allclose(b.rotation, a.rotation, atol=1e-9)
    np.testing.assert_allclose(b.shift, a.shift, atol=1e-9)
    np.testing.assert_allclose(b.ctf_params(), a.ctf_params(), atol=1e-9)
    np.testing.assert_allclose(b.dose, a.dose, atol=1e-9)
    np.testing.assert_allclose(b.tilt, a.tilt, atol=1e-9)
    np.testing.assert_allclose(b.position, a.position, atol=1e-9)
    rows = np.arange(a.n_images)
    expected = fourier_crop(a.read_images(rows).astype(np.float64), box)
    np.testing.assert_allclose(b.read_images(rows), expected, atol=1e-6 * np.abs(expected).max())


def test_downsample_stack_set_from_its_optimisation_set(sim, tmp_path, monkeypatch):
    out = downsample_particles(sim.star_path, 16, tmp_path / "d16")
    assert out == tmp_path / "d16" / "optimisation_set.star"
    monkeypatch.chdir(tmp_path)  # read back from elsewhere
    a, b = read_particles(sim.star_path), read_particles(out)
    _same_set(a, b, 16)
    # the new stacks live in the output folder, named as in the input (relative to the project folder)
    assert all(Path(p).is_relative_to(tmp_path / "d16" / "particles") for p in b.stack_path)
    assert read_mrc_header(b.stack_path[0]).pixel_size == pytest.approx(2 * a.pixel_size, rel=1e-5)
    parts = starfile.read(tmp_path / "d16" / "relion5_particles.star", always_dict=True)
    optics, src_optics = parts["optics"], starfile.read(sim.star_path.parent / "relion5_particles.star")["optics"]
    assert optics["rlnImageSize"][0] == 16 and optics["rlnImagePixelSize"][0] == pytest.approx(2 * a.pixel_size)
    assert optics["rlnTomoTiltSeriesPixelSize"][0] == src_optics["rlnTomoTiltSeriesPixelSize"][0]
    assert optics["rlnTomoSubtomogramBinning"][0] == pytest.approx(2 * src_optics["rlnTomoSubtomogramBinning"][0])
    assert parts["particles"]["rlnImageName"][0].startswith("particles/")
    # the tomograms STAR is the input's
    tomo_in = starfile.read(sim.star_path.parent / "tomograms.star", always_dict=True)
    tomo_out = starfile.read(tmp_path / "d16" / "tomograms.star", always_dict=True)
    assert list(tomo_out) == list(tomo_in)
    for name in tomo_in:
        assert tomo_out[name].equals(tomo_in[name]), name
    opt = starfile.read(out, always_dict=True)
    entries = next(iter(opt.values()))
    assert entries["rlnTomoParticlesFile"] == "relion5_particles.star"
    assert entries["rlnTomoTomogramsFile"] == "tomograms.star"
    manifest = json.loads((tmp_path / "d16" / MANIFEST).read_text())
    assert manifest["box_size"] == 16 and set(manifest["stars"]) == {"optimisation_set.star", "relion5_particles.star",
                                                                      "tomograms.star"}  # fmt: skip
    with pytest.raises(InputError, match="already holds a downsampled set"):
        downsample_particles(sim.star_path, 16, tmp_path / "d16")


@pytest.fixture(scope="module")
def lone(sim, tmp_path_factory):
    """The simulated set's particles STAR alone in its project folder; its tomograms STAR elsewhere."""
    out = tmp_path_factory.mktemp("lone")
    project = out / "project"
    shutil.copytree(sim.star_path.parent, project)
    (project / "optimisation_set.star").unlink()
    tomograms = out / "elsewhere" / "my_tomograms.star"
    tomograms.parent.mkdir()
    (project / "tomograms.star").rename(tomograms)
    return project / "relion5_particles.star", tomograms


def test_downsample_particles_star_with_tomograms_star(sim, lone, tmp_path, capsys):
    particles, tomograms = lone
    with pytest.raises(SystemExit) as e:
        main(["downsample", str(particles), "-D", "16", "-o", str(tmp_path / "x")])
    assert e.value.code == 2 and "--tomograms-star" in capsys.readouterr().err
    main(["downsample", str(particles), "-D", "16", "-o", str(tmp_path / "d"), "--tomograms-star", str(tomograms)])
    out = tmp_path / "d" / "relion5_particles.star"
    assert (tmp_path / "d" / "my_tomograms.star").is_file() and (tmp_path / "d" / "optimisation_set.star").is_file()
    _same_set(read_particles(sim.star_path), read_particles(out), 16)  # found through the new optimisation set
    _same_set(read_particles(sim.star_path), read_particles(tmp_path / "d" / "optimisation_set.star"), 16)


def test_train_eval_backproject_with_tomograms_star(sim, lone, tmp_path, capsys):
    particles, tomograms = lone
    t = ["--tomograms-star", str(tomograms)]
    with pytest.raises(SystemExit) as e:
        main(["backproject", str(particles), "-o", str(tmp_path / "bp0"), "--device", "cpu"])
    assert e.value.code == 2
    capsys.readouterr()
    main(["backproject", str(particles), "-o", str(tmp_path / "bp"), "--device", "cpu", *t])
    vol, truth = read_mrc(tmp_path / "bp" / "backproject.mrc")[0], read_mrc(sim.volume_paths[0])[0]
    assert np.corrcoef(vol.ravel(), truth.ravel())[0, 1] > 0.5
    assert "back-projected" in capsys.readouterr().out
    small = ["--epochs", "1", "--batch-size", "4", "--device", "cpu", "--backend", "torch", "--dec-arch", "16x2"]
    main(["train_nn", str(particles), "-o", str(tmp_path / "nn"), *small, *t])
    cfg = json.loads((tmp_path / "nn" / "config.json").read_text())
    assert cfg["tomograms_star"] == str(tomograms.absolute())
    vae = [*small, "--zdim", "2", "--enc-arch-a", "16x1", "--enc-arch-b", "16x1"]
    main(["train_vae", str(particles), "-o", str(tmp_path / "vae"), *vae, *t])
    capsys.readouterr()
    main(["eval_images", str(tmp_path / "vae"), str(particles), "-o", str(tmp_path / "z.npy"), *t])
    assert np.load(tmp_path / "z.npy").shape == (8, 2)
    # the training STAR is read with the run's tomograms STAR when not given again
    main(["eval_images", str(tmp_path / "vae"), str(particles), "-o", str(tmp_path / "z2.npy")])
    np.testing.assert_allclose(np.load(tmp_path / "z2.npy"), np.load(tmp_path / "z.npy"), atol=1e-5)
