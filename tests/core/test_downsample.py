"""``tomodrgn downsample``: every new image is the Fourier crop of the original, and the new STAR (same flavour, all
columns) reads back with the same poses, CTF, doses and shifts (Å) at twice the pixel size."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from tomodrgn.io.downsample import MANIFEST, downsample_particles
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import LegacyMrcHeaderWarning, read_mrc_header
from tomodrgn.io.particles import ParticleSeries, read_particles
from tomodrgn.physics.hartley import fourier_crop
from tomodrgn.simulate import simulate_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim64(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim64")
    return simulate_dataset(out, "4-class", n_particles=4, box_size=64, n_tilts=5, seed=4)


def _same_geometry(a: ParticleSeries, b: ParticleSeries) -> None:
    assert b.particle_names == a.particle_names and b.n_images == a.n_images
    np.testing.assert_allclose(b.rotation, a.rotation, atol=1e-6)
    np.testing.assert_allclose(b.shift, a.shift, atol=1e-5)
    np.testing.assert_allclose(b.ctf_params(), a.ctf_params(), rtol=1e-6)
    np.testing.assert_allclose(b.dose, a.dose, atol=1e-6)
    np.testing.assert_allclose(b.tilt, a.tilt, atol=1e-4)
    np.testing.assert_array_equal(b.stack_index, a.stack_index)


def _images_are_crops(a: ParticleSeries, b: ParticleSeries, box: int) -> None:
    rows = np.arange(a.n_images)
    expected = fourier_crop(a.read_images(rows).astype(np.float64), box)
    got = b.read_images(rows)
    assert got.shape == (a.n_images, box, box)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=1e-6 * scale, rtol=1e-5)


def test_downsample_warp(sim64, tmp_path):
    out_star = downsample_particles(sim64.star_path, 32, tmp_path / "d32")
    a, b = read_particles(sim64.star_path), read_particles(out_star)
    assert out_star == tmp_path / "d32" / "particles.star"
    assert b.flavour == "warp" and b.box_size == 32
    assert b.pixel_size == pytest.approx(2 * a.pixel_size)
    _same_geometry(a, b)
    _images_are_crops(a, b, 32)
    assert all(Path(p).is_relative_to(tmp_path / "d32" / "particles") for p in b.stack_path)
    assert read_mrc_header(b.stack_path[0]).pixel_size == pytest.approx(2 * a.pixel_size, rel=1e-5)
    blocks = starfile.read(out_star, always_dict=True)  # plain starfile reads it too
    old = starfile.read(sim64.star_path, always_dict=True)
    assert list(blocks) == list(old)
    for name in old:
        assert list(blocks[name].columns) == list(old[name].columns)  # every column kept
    assert blocks["optics"]["rlnImageSize"].tolist() == [32]
    assert blocks["optics"]["rlnImagePixelSize"].iloc[0] == pytest.approx(2 * a.pixel_size, rel=1e-5)
    pd.testing.assert_series_equal(blocks["particles"]["rlnGroupName"], old["particles"]["rlnGroupName"])
    assert (tmp_path / "d32" / MANIFEST).is_file()


def _relion30_pixel_shifts(sim, folder: Path) -> Path:
    """The simulated set as a RELION 3.0-style STAR: one block, _rlnDetectorPixelSize + _rlnMagnification, origins in
    pixels, and stacks with legacy headers (no MAP id, zero machine stamp) as older Warp / tomoDRGN wrote them."""
    blocks = starfile.read(sim.star_path, always_dict=True)
    optics, df = blocks["optics"], blocks["particles"].drop(columns=["rlnOpticsGroup"])
    px = float(optics["rlnImagePixelSize"].iloc[0])
    for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        df[col] = optics[col].iloc[0]
    df["rlnDetectorPixelSize"] = px
    df["rlnMagnification"] = 10000.0
    for a in "XY":
        df[f"rlnOrigin{a}"] = df.pop(f"rlnOrigin{a}Angst") / px
    folder.mkdir()
    (folder / "particles").mkdir()
    for src in (sim.star_path.parent / "particles").glob("*.mrcs"):
        raw = bytearray(src.read_bytes())
        raw[208:216] = bytes(8)
        (folder / "particles" / src.name).write_bytes(bytes(raw))
    starfile.write({"": df}, folder / "old.star", overwrite=True)
    return folder / "old.star"


def test_downsample_relion30_pixel_origins_and_legacy_stacks(sim64, tmp_path):
    star = _relion30_pixel_shifts(sim64, tmp_path / "in")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out_star = downsample_particles(star, 32, tmp_path / "out")
    assert len([x for x in w if issubclass(x.category, LegacyMrcHeaderWarning)]) == 4  # one per input stack
    a, b = read_particles(star), read_particles(out_star)
    assert b.pixel_size == pytest.approx(2 * a.pixel_size) and b.box_size == 32
    _same_geometry(a, b)  # shifts in Å unchanged: the pixel origins were halved
    _images_are_crops(a, b, 32)
    new, old = starfile.read(out_star), starfile.read(star)
    np.testing.assert_allclose(new["rlnOriginX"], old["rlnOriginX"] / 2, atol=1e-5)
    assert (new["rlnMagnification"] == 10000).all()
    assert not read_mrc_header(b.stack_path[0]).legacy  # written with a standard header


def test_downsample_nextpyp(sim64, tmp_path):
    blocks = starfile.read(sim64.star_path, always_dict=True)
    df = blocks["particles"]
    df["rlnGroupNumber"] = pd.factorize(df.pop("rlnGroupName"))[0] + 1
    df["rlnTiltIndex"] = df["rlnImageName"].str.split("@").str[0].astype(int) - 1
    starfile.write(blocks, sim64.star_path.parent / "np.star", overwrite=True)
    out_star = downsample_particles(sim64.star_path.parent / "np.star", 48, tmp_path / "np48")
    a, b = read_particles(sim64.star_path.parent / "np.star"), read_particles(out_star)
    assert a.flavour == b.flavour == "nextpyp" and b.box_size == 48
    assert b.pixel_size == pytest.approx(a.pixel_size * 64 / 48)
    _same_geometry(a, b)
    _images_are_crops(a, b, 48)


@pytest.mark.parametrize(
    ("box", "message"), [(33, "must be even"), (6, "must be ≥ 8"), (64, "must be smaller"), (96, "must be smaller")]
)
def test_bad_box_refused(sim64, tmp_path, box, message):
    with pytest.raises(InputError, match=f"-D {box} {message}"):
        downsample_particles(sim64.star_path, box, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_existing_set_refused_unless_overwrite(sim64, tmp_path):
    out = tmp_path / "d"
    downsample_particles(sim64.star_path, 16, out)
    first = (out / "particles.star").read_bytes()
    with pytest.raises(InputError, match="already holds a downsampled set"):
        downsample_particles(sim64.star_path, 32, out)
    assert (out / "particles.star").read_bytes() == first  # untouched
    assert read_particles(downsample_particles(sim64.star_path, 32, out, overwrite=True)).box_size == 32
    with pytest.raises(InputError, match="would overwrite an input file"):  # never the input, even with overwrite
        downsample_particles(sim64.star_path, 32, sim64.star_path.parent, overwrite=True)


def test_cli_bad_box_one_line(sim64, tmp_path):
    env = {"PYTHONPATH": str(ROOT / "packages" / "tomodrgn-core" / "src"), "OMP_NUM_THREADS": "1", "PATH": ""}
    cmd = [sys.executable, "-m", "tomodrgn.cli", "downsample", str(sim64.star_path), "-D", "31", "-o", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["tomodrgn downsample: error: new box size -D 31 must be even"]


def test_pixel_size_written_when_the_star_had_none(sim64, tmp_path):
    blocks = starfile.read(sim64.star_path, always_dict=True)
    blocks["optics"] = blocks["optics"].drop(columns=["rlnImagePixelSize"])
    star = sim64.star_path.parent / "nopx.star"
    starfile.write(blocks, star, overwrite=True)
    assert read_particles(star).pixel_size == pytest.approx(sim64.pixel_size, rel=1e-6)  # from the MRC headers
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = downsample_particles(star, 32, tmp_path / "o", pixel_size=7.0)  # the override wins
        b = read_particles(out)
    assert starfile.read(out, always_dict=True)["optics"]["rlnImagePixelSize"].tolist() == [14.0]
    assert b.pixel_size == 14.0 and read_mrc_header(b.stack_path[0]).pixel_size == pytest.approx(14.0)
    assert not [x for x in w if "MRC header" in str(x.message)]  # STAR and headers agree
