"""MRC headers as older tools write them (no 'MAP ' id string, zero machine stamp), the checks that still refuse
broken files, and the pixel size rules (STAR vs MRC header vs the user's value)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import (
    LegacyMrcHeaderWarning,
    MrcError,
    mmap_mrc,
    mrc_pixel_size,
    read_mrc,
    read_mrc_header,
    write_mrc,
)
from tomodrgn.io.particles import read_particles
from tomodrgn.runs.config import TrainConfig

PX = 3.5
pytestmark = pytest.mark.filterwarnings(
    "ignore::tomodrgn.io.mrc.LegacyMrcHeaderWarning"
)  # tests that count them record


def legacy_stack(path: Path, images: np.ndarray, pixel_size: float = PX, style: str = "cryodrgn") -> Path:
    """A stack written normally by mrcfile, then given the header older writers leave.

    ``cryodrgn``: no 'MAP ' id string (bytes 208–211) and a zero machine stamp (bytes 212–215).
    ``warp1``: as cryodrgn, and the MRC2014 fields Warp 1.x leaves at zero: origin, nlabl/labels, nversion, exttyp.
    """
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(images.astype(np.float32))
        m.set_image_stack()
        m.voxel_size = pixel_size
        if style == "warp1":
            m.header.origin = (0.0, 0.0, 0.0)
            m.header.nlabl = 0
            m.header.label[:] = b""
            m.header.nversion = 0
            m.header.exttyp = b"\0\0\0\0"
    raw = bytearray(path.read_bytes())
    raw[208:216] = bytes(8)
    path.write_bytes(bytes(raw))
    return path


def _legacy(w) -> list:
    return [x for x in w if issubclass(x.category, LegacyMrcHeaderWarning)]


@pytest.mark.parametrize("style", ["cryodrgn", "warp1"])
def test_legacy_stack_read_with_one_warning(tmp_path, style):
    images = np.random.default_rng(0).normal(size=(5, 8, 8)).astype(np.float32)
    path = legacy_stack(tmp_path / f"{style}.mrcs", images, style=style)
    with pytest.raises(ValueError, match="Map ID string not found"):  # what stopped every command before
        mrcfile.open(path, permissive=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = read_mrc_header(path)
        stack = mmap_mrc(path)
        data, px = read_mrc(path)
        assert mrc_pixel_size(path) == pytest.approx(PX)
    assert (h.nx, h.ny, h.nz, h.mode, h.ispg, h.legacy, h.byte_order) == (8, 8, 5, 2, 0, True, "<")
    assert isinstance(stack, np.memmap)  # still memory-mapped
    np.testing.assert_array_equal(stack, images)
    np.testing.assert_array_equal(data, images)
    assert h.pixel_size == pytest.approx(PX) and px == pytest.approx(PX)
    legacy = _legacy(w)
    assert len(legacy) == 1, [str(x.message) for x in w]
    assert str(path) in str(legacy[0].message) and issubclass(LegacyMrcHeaderWarning, UserWarning)


def test_standard_header_no_warning(tmp_path):
    images = np.ones((2, 8, 8), np.float32)
    path = write_mrc(tmp_path / "ok.mrcs", images, pixel_size=PX)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = read_mrc_header(path)
        np.testing.assert_array_equal(mmap_mrc(path), images)
    assert not h.legacy and not w


def test_legacy_big_endian_without_stamp(tmp_path):
    # very old files: big-endian data and no machine stamp; the mode only makes sense big-endian
    images = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    path = tmp_path / "be.mrcs"
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(images.astype(">f4"))
        m.voxel_size = PX
    raw = bytearray(path.read_bytes())
    assert raw[212:214] == b"\x11\x11"  # mrcfile wrote it big-endian
    raw[208:216] = bytes(8)
    path.write_bytes(bytes(raw))
    with pytest.warns(LegacyMrcHeaderWarning, match="big-endian"):
        h = read_mrc_header(path)
    assert h.byte_order == ">" and h.nz == 2
    np.testing.assert_array_equal(mmap_mrc(path), images)


def test_truncated_or_padded_legacy_file_refused(tmp_path):
    images = np.zeros((4, 8, 8), np.float32)
    path = legacy_stack(tmp_path / "t.mrcs", images)
    full = path.read_bytes()
    expected = 1024 + 4 * 8 * 8 * 4
    assert len(full) == expected
    path.write_bytes(full[:-100])
    with pytest.raises(MrcError, match=rf"t\.mrcs: file is {expected - 100} bytes but its header .* says {expected}"):
        mmap_mrc(path)
    path.write_bytes(full + bytes(16))  # a legacy header with extra bytes is not trusted either
    with pytest.raises(InputError, match=rf"file is {expected + 16} bytes .* says {expected}"):
        read_mrc_header(path)


def test_truncated_standard_file_refused(tmp_path):
    path = write_mrc(tmp_path / "s.mrcs", np.zeros((4, 8, 8), np.float32), pixel_size=PX)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(MrcError, match=r"s\.mrcs: file is 2047 bytes but its header .* says 2048"):
        read_mrc(path)


def _patch_header(path: Path, offset: int, value: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 4] = np.int32(value).tobytes()
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [(12, 3, "unsupported data mode 3"), (12, 77, "unsupported data mode 77"), (0, 0, "dimensions 0×8×4"),
     (8, -4, "dimensions 8×8×-4"), (92, -8, "negative extended header size")],
)  # fmt: skip
def test_broken_legacy_headers_refused(tmp_path, offset, value, message):
    path = legacy_stack(tmp_path / "b.mrcs", np.zeros((4, 8, 8), np.float32))
    _patch_header(path, offset, value)
    with pytest.raises(MrcError, match=rf"cannot read MRC header of .*b\.mrcs: {message}"):
        read_mrc_header(path)


def test_not_an_mrc_file_refused(tmp_path):
    (tmp_path / "x.mrcs").write_bytes(b"not an mrc file" * 100)
    with pytest.raises(MrcError, match=r"x\.mrcs"):
        read_mrc_header(tmp_path / "x.mrcs")
    (tmp_path / "y.mrcs").write_bytes(b"short")
    with pytest.raises(MrcError, match=r"y\.mrcs: file is 5 bytes, shorter than the 1024-byte header"):
        read_mrc_header(tmp_path / "y.mrcs")


# ------------------------------------------------------------------------------------------ through read_particles
def warp_star(folder: Path, n_particles: int = 3, n_tilts: int = 4, box: int = 8, star_px: float | None = PX,
              header_px: float = PX, legacy: bool = True) -> tuple[Path, np.ndarray]:  # fmt: skip
    """A small Warp-style image-series STAR with one stack per particle; returns (star, images in row order)."""
    rng = np.random.default_rng(1)
    (folder / "particles").mkdir(parents=True, exist_ok=True)
    images = rng.normal(size=(n_particles * n_tilts, box, box)).astype(np.float32)
    rows = []
    for p in range(n_particles):
        stack = folder / "particles" / f"TS_1_{p:03d}.mrcs"
        chunk = images[p * n_tilts : (p + 1) * n_tilts]
        if legacy:
            legacy_stack(stack, chunk, pixel_size=header_px, style="warp1")
        else:
            write_mrc(stack, chunk, pixel_size=header_px)
        for t in range(n_tilts):
            rows.append(
                {"rlnImageName": f"{t + 1}@particles/{stack.name}", "rlnGroupName": f"TS_1_{p:03d}",
                 "rlnAngleRot": 10.0 * p, "rlnAngleTilt": 90.0, "rlnAnglePsi": 3.0 * t, "rlnOriginXAngst": 1.0,
                 "rlnOriginYAngst": -2.0, "rlnDefocusU": 20000.0, "rlnDefocusV": 19500.0, "rlnDefocusAngle": 10.0,
                 "rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07,
                 "rlnCtfBfactor": -4.0 * 3.0 * (t + 1), "rlnCtfScalefactor": math.cos(math.radians(3.0 * t))}
            )  # fmt: skip
            if star_px is not None:
                rows[-1]["rlnDetectorPixelSize"] = star_px
                rows[-1]["rlnMagnification"] = 10000.0
    starfile.write({"": pd.DataFrame(rows)}, folder / "particles.star", overwrite=True)
    return folder / "particles.star", images


def test_read_particles_legacy_stacks_one_warning_per_file(tmp_path):
    star, images = warp_star(tmp_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = read_particles(star)
        got = s.read_images(np.arange(s.n_images))
        got_again = s.read_images(np.arange(s.n_images)[::-1])
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_again, images[::-1])
    legacy = _legacy(w)
    named = sorted(Path(str(x.message).split(": ")[0]).name for x in legacy)
    assert named == ["TS_1_000.mrcs", "TS_1_001.mrcs", "TS_1_002.mrcs"], [str(x.message) for x in w]
    assert s.box_size == 8 and s.pixel_size == pytest.approx(PX)


def test_read_particles_truncated_legacy_stack_named(tmp_path):
    star, _ = warp_star(tmp_path)
    stack = tmp_path / "particles" / "TS_1_002.mrcs"
    stack.write_bytes(stack.read_bytes()[:-256])
    with pytest.raises(InputError, match=r"TS_1_002\.mrcs: file is 1792 bytes but its header .* says 2048"):
        read_particles(star)


# ------------------------------------------------------------------------------------------------ pixel size rules
def test_pixel_size_from_mrc_header_when_star_has_none(tmp_path):
    star, _ = warp_star(tmp_path, star_px=None, header_px=2.25)
    assert read_particles(star).pixel_size == pytest.approx(2.25)


def test_pixel_size_star_and_header_disagree_warns_and_uses_star(tmp_path):
    star, _ = warp_star(tmp_path, star_px=PX, header_px=4.2, legacy=False)
    with pytest.warns(UserWarning, match=r"3\.5 Å in the STAR differs from 4\.2 Å in the MRC header .*using the STAR"):
        s = read_particles(star)
    assert s.pixel_size == pytest.approx(PX)


def test_pixel_size_within_one_percent_is_quiet(tmp_path):
    star, _ = warp_star(tmp_path, star_px=PX, header_px=PX * 1.005, legacy=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert read_particles(star).pixel_size == pytest.approx(PX)
    assert not [x for x in w if "pixel size" in str(x.message)]


def test_pixel_size_argument_overrides_both(tmp_path):
    star, _ = warp_star(tmp_path, star_px=PX, header_px=4.2, legacy=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = read_particles(star, pixel_size=5.0)
    assert s.pixel_size == 5.0
    assert not [x for x in w if "MRC header" in str(x.message)]  # the header is not consulted


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True])
def test_bad_pixel_size_refused_before_any_work(tmp_path, bad):
    with pytest.raises(InputError, match="pixel_size must be a positive finite"):
        read_particles(tmp_path / "does_not_exist.star", pixel_size=bad)  # refused before the file is looked at
    with pytest.raises(InputError, match=r"pixel_size \(--pixel-size\) must be a positive finite"):
        TrainConfig(pixel_size=bad)
    assert TrainConfig(pixel_size=2.5).pixel_size == 2.5
