"""Reading particle tilt-series (Warp/M, RELION 5, nextPYP), subsets, and the input errors users can hit."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.particles import read_particles, write_particle_subset
from tomodrgn.physics.pose import euler_to_matrix

PX = 4.0


def make_warp(
    folder: Path,
    counts=(3, 4, 2),
    box: int = 8,
    optics: bool = True,
    pixel_shifts: bool = False,
    coords: bool = True,
    seed: int = 0,
    per_particle_stacks: bool = True,
    name: str = "particles.star",
) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """Write a Warp/M image-series STAR (+ stacks) under ``folder``; returns (star, image rows, stack images)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = int(sum(counts))
    images = rng.normal(size=(n, box, box)).astype(np.float32)
    rows, k = [], 0
    for p, c in enumerate(counts):
        stack = f"stacks/p{p:03d}.mrcs" if per_particle_stacks else "stacks/all.mrcs"
        if per_particle_stacks:
            (folder / "stacks").mkdir(exist_ok=True)
            write_mrc(folder / stack, images[k : k + c], pixel_size=PX)
        for t in range(c):
            row = {
                "rlnImageName": f"{(t if per_particle_stacks else k) + 1}@{stack}",
                "rlnGroupName": f"TS_{p % 2:02d}_{p:03d}",
                "rlnAngleRot": rng.uniform(-180, 180),
                "rlnAngleTilt": rng.uniform(0, 180),
                "rlnAnglePsi": rng.uniform(-180, 180),
                "rlnDefocusU": 20000.0 + 100 * t,
                "rlnDefocusV": 19000.0 + 100 * t,
                "rlnDefocusAngle": 30.0,
                "rlnCtfBfactor": -4.0 * 3.0 * (t + 1),
                "rlnCtfScalefactor": np.cos(np.deg2rad(3.0 * t * (-1) ** t)),
                "rlnCoordinateX": 10.0 * p,
                "rlnCoordinateY": 20.0 * p,
                "rlnCoordinateZ": 5.0,
                "rlnClassNumber": p % 2 + 1,
            }
            if pixel_shifts:
                row["rlnOriginX"], row["rlnOriginY"] = 0.5 * t, -0.25 * t
            else:
                row["rlnOriginXAngst"], row["rlnOriginYAngst"] = 2.0 * t, -1.0 * t
            if not coords:
                for a in "XYZ":
                    del row[f"rlnCoordinate{a}"]
            rows.append(row)
            k += 1
    if not per_particle_stacks:
        (folder / "stacks").mkdir(exist_ok=True)
        write_mrc(folder / "stacks/all.mrcs", images, pixel_size=PX)
    df = pd.DataFrame(rows)
    ctf = {"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07}
    if optics:
        df["rlnOpticsGroup"] = 1
        opt = pd.DataFrame(
            [{"rlnOpticsGroup": 1, "rlnOpticsGroupName": "opticsGroup1", **ctf, "rlnImagePixelSize": PX}]
        )
        opt["rlnImageSize"] = box
        opt["rlnImageDimensionality"] = 2
        starfile.write({"optics": opt, "particles": df}, folder / name, overwrite=True)
    else:
        for key, value in ctf.items():
            df[key] = value
        df["rlnDetectorPixelSize"] = PX
        df["rlnMagnification"] = 10000.0
        starfile.write({"": df}, folder / name, overwrite=True)
    return folder / name, df, images


@pytest.mark.parametrize("optics", [True, False])
def test_warp_reads_everything(tmp_path, optics):
    star, df, images = make_warp(tmp_path, optics=optics)
    s = read_particles(star)
    assert s.flavour == "warp"
    assert s.n_particles == 3 and s.n_images == 9
    assert s.particle_names == ["TS_00_000", "TS_01_001", "TS_00_002"]
    assert [list(r) for r in s.image_indices] == [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    assert s.pixel_size == pytest.approx(PX) and s.box_size == 8
    np.testing.assert_allclose(s.rotation, euler_to_matrix(df.rlnAngleRot, df.rlnAngleTilt, df.rlnAnglePsi), atol=1e-5)
    np.testing.assert_allclose(s.shift, df[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(s.dose, -df.rlnCtfBfactor / 4, atol=1e-6)
    np.testing.assert_allclose(s.tilt, np.abs(3.0 * np.array([0, 1, 2, 0, 1, 2, 3, 0, 1])), atol=1e-3)
    assert (s.voltage == 300).all() and (s.cs == 2.7).all() and (s.amplitude_contrast == 0.07).all()
    assert (s.phase_shift == 0).all()
    np.testing.assert_allclose(s.ctf_params()[:, 0], df.rlnDefocusU, atol=1e-4)
    np.testing.assert_allclose(s.read_images(np.arange(9)), images, atol=0)
    np.testing.assert_allclose(s.position, [[0, 0, 20], [40, 80, 20], [80, 160, 20]])
    assert s.tomogram == ["TS_00", "TS_01", "TS_00"]
    assert list(s.class_label) == [1, 2, 1]


def test_warp_single_shared_stack_and_pixel_shifts(tmp_path):
    star, df, images = make_warp(tmp_path, per_particle_stacks=False, pixel_shifts=True, coords=False)
    s = read_particles(star, tomogram_pixel_size=10.0)
    np.testing.assert_allclose(s.shift, df[["rlnOriginX", "rlnOriginY"]].to_numpy() * PX, atol=1e-6)
    assert s.position is None and s.tomogram is None
    np.testing.assert_allclose(s.read_images(np.array([8, 0, 4])), images[[8, 0, 4]])


def test_tomogram_pixel_size_scales_positions(tmp_path):
    star, _, _ = make_warp(tmp_path)
    s = read_particles(star, tomogram_pixel_size=10.0)
    np.testing.assert_allclose(s.position[1], [100, 200, 50])


def test_datadir_resolves_stacks(tmp_path):
    star, _, images = make_warp(tmp_path / "data")
    moved = tmp_path / "elsewhere" / "p.star"
    moved.parent.mkdir()
    moved.write_text(star.read_text())
    with pytest.raises(InputError, match="not found"):
        read_particles(moved)
    s = read_particles(moved, datadir=tmp_path / "data")
    np.testing.assert_allclose(s.read_images(np.array([3])), images[[3]])


@pytest.mark.parametrize("optics", [True, False])
def test_subset_round_trip_keeps_blocks_and_columns(tmp_path, optics):
    star, df, images = make_warp(tmp_path, optics=optics)
    s = read_particles(star)
    out = write_particle_subset(s, [2, 0], tmp_path / "sub" / "subset.star")
    raw_in = starfile.read(star, always_dict=True)
    raw_out = starfile.read(out, always_dict=True)
    assert list(raw_out) == list(raw_in)
    block = "particles" if optics else ""
    assert list(raw_out[block].columns) == list(raw_in[block].columns)
    kept = raw_in[block].iloc[[0, 1, 2, 7, 8]].reset_index(drop=True)
    numeric = [c for c in kept.columns if c != "rlnImageName" and c != "rlnGroupName"]
    np.testing.assert_allclose(raw_out[block][numeric].to_numpy(float), kept[numeric].to_numpy(float), atol=1e-5)
    assert list(raw_out[block]["rlnGroupName"]) == list(kept["rlnGroupName"])
    if optics:
        pd.testing.assert_frame_equal(raw_out["optics"], raw_in["optics"])
    s2 = read_particles(out)
    assert s2.flavour == "warp" and s2.particle_names == ["TS_00_000", "TS_00_002"]
    np.testing.assert_allclose(s2.read_images(np.arange(5)), images[[0, 1, 2, 7, 8]])
    # next to the input, stack names are kept as written
    out2 = write_particle_subset(s, [1], tmp_path / "same_folder.star")
    assert list(starfile.read(out2, always_dict=True)[block]["rlnImageName"]) == list(df.rlnImageName[3:7])


# ------------------------------------------------------------------------------------------------------ RELION 5
def make_relion5(folder: Path, with_dose_columns: bool = True, box: int = 8):
    """RELION 5 style: optics + particles with _rlnTomoName/_rlnTomoParticleName, one row per tilt (2-D stacks)."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Extract").mkdir()
    rows = []
    tilts = np.array([0.0, 3.0, -3.0, 6.0])
    pre = np.array([0.0, 3.0, 6.0, 9.0])
    for p in range(2):
        write_mrc(folder / f"Extract/TS_1_{p}_stack2d.mrcs", rng.normal(size=(4, box, box)), pixel_size=2.0)
        for t in range(4):
            row = {
                "rlnTomoName": "TS_1",
                "rlnTomoParticleName": f"TS_1/{p + 1}",
                "rlnImageName": f"{t + 1}@Extract/TS_1_{p}_stack2d.mrcs",
                "rlnCenteredCoordinateXAngst": 100.0 * p,
                "rlnCenteredCoordinateYAngst": -50.0,
                "rlnCenteredCoordinateZAngst": 7.0,
                "rlnAngleRot": 10.0,
                "rlnAngleTilt": 20.0 + t,
                "rlnAnglePsi": 30.0,
                "rlnOriginXAngst": 0.5,
                "rlnOriginYAngst": 0.0,
                "rlnDefocusU": 30000.0,
                "rlnDefocusV": 31000.0,
                "rlnDefocusAngle": 10.0,
                "rlnOpticsGroup": 1,
            }
            if with_dose_columns:
                row["rlnMicrographPreExposure"] = pre[t]
                row["rlnTomoNominalStageTiltAngle"] = tilts[t]
            rows.append(row)
    optics = pd.DataFrame(
        [
            {
                "rlnOpticsGroup": 1,
                "rlnOpticsGroupName": "opticsGroup1",
                "rlnVoltage": 300.0,
                "rlnSphericalAberration": 2.7,
                "rlnAmplitudeContrast": 0.1,
                "rlnImagePixelSize": 2.0,
                "rlnImageSize": box,
            }
        ]
    )
    starfile.write({"optics": optics, "particles": pd.DataFrame(rows)}, folder / "particles.star", overwrite=True)
    # tomograms.star + tilt-series star (for files whose rows lack dose/tilt)
    (folder / "tilt_series").mkdir()
    ts = pd.DataFrame({"rlnMicrographPreExposure": pre, "rlnTomoNominalStageTiltAngle": tilts})
    starfile.write({"TS_1": ts}, folder / "tilt_series/TS_1.star", overwrite=True)
    tomos = pd.DataFrame({"rlnTomoName": ["TS_1"], "rlnTomoTiltSeriesStarFile": ["tilt_series/TS_1.star"]})
    starfile.write({"global": tomos}, folder / "tomograms.star", overwrite=True)
    return folder / "particles.star", folder / "tomograms.star"


@pytest.mark.parametrize("with_dose_columns", [True, False])
def test_relion5_2d_stacks(tmp_path, with_dose_columns):
    star, tomograms = make_relion5(tmp_path, with_dose_columns)
    if not with_dose_columns:  # the tilt angles are required (a missing dose alone turns dose weighting off)
        with pytest.raises(InputError, match="no tilt angle: required column _rlnCtfScalefactor or _rlnTomoNominal"):
            read_particles(star)
    s = read_particles(star, tilt_series_star=None if with_dose_columns else tomograms)
    assert s.flavour == "relion5" and s.particle_names == ["TS_1/1", "TS_1/2"]
    assert s.pixel_size == 2.0 and s.box_size == 8
    # pre-exposure 0,3,6,9 (start of each tilt) → cumulative dose at the end 3,6,9,12
    np.testing.assert_allclose(s.dose[:4], [3, 6, 9, 12])
    np.testing.assert_allclose(s.tilt[:4], [0, 3, -3, 6])
    np.testing.assert_allclose(s.position, [[0, -50, 7], [100, -50, 7]])
    assert s.tomogram == ["TS_1", "TS_1"]
    assert (s.amplitude_contrast == 0.1).all()
    out = write_particle_subset(s, [1], tmp_path / "subset.star")
    s2 = read_particles(out, tilt_series_star=None if with_dose_columns else tomograms)
    assert s2.flavour == "relion5" and s2.particle_names == ["TS_1/2"]
    np.testing.assert_allclose(s2.read_images(np.arange(4)), s.read_images(np.arange(4, 8)))


def test_relion5_3d_pseudo_subtomograms_rejected(tmp_path):
    write_mrc(tmp_path / "sub1.mrc", np.zeros((8, 8, 8), np.float32), pixel_size=2.0)
    df = pd.DataFrame(
        {
            "rlnTomoName": ["TS_1"],
            "rlnTomoParticleName": ["TS_1/1"],
            "rlnImageName": ["sub1.mrc"],
            "rlnAngleRot": [0.0],
            "rlnAngleTilt": [0.0],
            "rlnAnglePsi": [0.0],
        }
    )
    starfile.write({"particles": df}, tmp_path / "p.star", overwrite=True)
    with pytest.raises(InputError, match="3-D pseudo-subtomograms are not supported"):
        read_particles(tmp_path / "p.star", pixel_size=2.0)
    # RELION 4 style: per-particle CTF volumes
    df["rlnCtfImage"] = ["ctf1.mrc"]
    starfile.write({"particles": df}, tmp_path / "p4.star", overwrite=True)
    with pytest.raises(InputError, match="_rlnCtfImage found: RELION 4/5 3-D pseudo-subtomograms are not supported"):
        read_particles(tmp_path / "p4.star", pixel_size=2.0)


def test_relion5_rows_with_visible_frames_named(tmp_path):
    # _rlnTomoVisibleFrames makes it a 2-D stack set (one row per particle, tests/core/test_relion5.py): repeated
    # particle names are an error naming the particle
    star, _ = make_relion5(tmp_path)
    blocks = starfile.read(star, always_dict=True)
    blocks["particles"]["rlnTomoVisibleFrames"] = "[1,1,1,1]"
    starfile.write(blocks, star, overwrite=True)
    with pytest.raises(InputError, match="particle name 'TS_1/1' appears in more than one row"):
        read_particles(star)


# -------------------------------------------------------------------------------------------------------- nextPYP
def make_nextpyp(folder: Path, drop: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(folder / "tomo.mrcs", np.random.default_rng(2).normal(size=(6, 8, 8)), pixel_size=3.0)
    rows = []
    for k in range(6):
        p, t = divmod(k, 3)
        rows.append(
            {
                "rlnImageName": f"{k + 1}@tomo.mrcs",
                "rlnMicrographName": "tomo1",
                "rlnGroupNumber": p + 1,
                "rlnTiltIndex": t,
                "rlnAngleRot": 1.0,
                "rlnAngleTilt": 2.0,
                "rlnAnglePsi": 3.0,
                "rlnOriginXAngst": 0.0,
                "rlnOriginYAngst": 0.0,
                "rlnDefocusU": 15000.0,
                "rlnDefocusV": 15000.0,
                "rlnDefocusAngle": 0.0,
                "rlnCtfBfactor": -4.0 * 2.5 * (t + 1),
                "rlnCtfScalefactor": np.cos(np.deg2rad(10.0 * t)),
                "rlnOpticsGroup": 1,
            }
        )
    df = pd.DataFrame(rows)
    if drop:
        df = df.drop(columns=drop)
    optics = pd.DataFrame(
        [{"rlnOpticsGroup": 1, "rlnVoltage": 200.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1}]
    )
    optics["rlnImagePixelSize"] = 3.0
    starfile.write({"optics": optics, "particles": df}, folder / "np.star", overwrite=True)
    return folder / "np.star"


def test_nextpyp(tmp_path):
    s = read_particles(make_nextpyp(tmp_path))
    assert s.flavour == "nextpyp" and s.particle_names == ["1", "2"]
    np.testing.assert_allclose(s.dose, [2.5, 5, 7.5] * 2)
    np.testing.assert_allclose(s.tilt, [0, 10, 20] * 2, atol=1e-4)
    assert (s.voltage == 200).all() and s.pixel_size == 3.0
    out = write_particle_subset(s, [1], tmp_path / "sub.star")
    assert read_particles(out).flavour == "nextpyp"


@pytest.mark.parametrize("column", ["rlnCtfScalefactor", "rlnGroupNumber"])
def test_nextpyp_missing_column_named(tmp_path, column):
    star = make_nextpyp(tmp_path, drop=[column])
    with pytest.raises(InputError, match="_" + column):
        read_particles(star)


# --------------------------------------------------------------------------------------------------------- errors
def _rewrite(star: Path, fn) -> Path:
    blocks = starfile.read(star, always_dict=True)
    name = "particles" if "particles" in blocks else ""
    blocks[name] = fn(blocks[name])
    starfile.write(blocks, star, overwrite=True)
    return star


@pytest.mark.parametrize("column", ["rlnGroupName", "rlnImageName", "rlnAngleTilt", "rlnDefocusU"])
def test_missing_required_column_named(tmp_path, column):
    star, _, _ = make_warp(tmp_path)
    _rewrite(star, lambda df: df.drop(columns=[column]))
    with pytest.raises(InputError, match=f"_{column}") as e:
        read_particles(star, source="warp")
    assert str(star) in str(e.value)


@pytest.mark.parametrize("flavour", ["warp", "nextpyp"])
def test_missing_dose_column_turns_dose_weighting_off(tmp_path, flavour):
    """Without _rlnCtfBfactor the dose is 0 (no dose weighting, no dose mask), said once; not an error."""
    if flavour == "warp":
        star = _rewrite(make_warp(tmp_path)[0], lambda df: df.drop(columns=["rlnCtfBfactor"]))
    else:
        star = make_nextpyp(tmp_path, drop=["rlnCtfBfactor"])
    with pytest.warns(
        UserWarning, match=r"no dose columns \(_rlnCtfBfactor\): dose weighting and the dose mask are off"
    ):
        s = read_particles(star)
    assert not s.has_dose and (s.dose == 0).all() and s.has_ctf


def test_stack_index_out_of_range(tmp_path):
    star, _, _ = make_warp(tmp_path)

    def bump(df):
        df.loc[4, "rlnImageName"] = "9@stacks/p001.mrcs"
        return df

    _rewrite(star, bump)
    with pytest.raises(InputError, match=r"row 4: stack index 9 out of range for .*p001\.mrcs \(4 images\)"):
        read_particles(star)


def test_stack_star_count_mismatch(tmp_path):
    star, _, _ = make_warp(tmp_path, counts=(2, 2))
    write_mrc(tmp_path / "stacks/p001.mrcs", np.zeros((1, 8, 8), np.float32), pixel_size=PX)
    with pytest.raises(InputError, match=r"count mismatch: 2 rows use .*p001\.mrcs, which has 1 images"):
        read_particles(star)


def test_odd_box_rejected(tmp_path):
    star, _, _ = make_warp(tmp_path, box=7)
    with pytest.raises(InputError, match="D = 7 is not even"):
        read_particles(star)


def test_nan_pixels_named_when_read(tmp_path):
    star, _, images = make_warp(tmp_path)
    bad = images[3:7].copy()
    bad[2, 1, 1] = np.nan
    write_mrc(tmp_path / "stacks/p001.mrcs", bad, pixel_size=PX)
    s = read_particles(star)  # not read yet
    s.read_images(np.arange(3))
    with pytest.raises(InputError, match=r"particle 'TS_01_001'.*3@.*p001\.mrcs.*NaN or inf"):
        s.read_images(np.arange(9))


def test_pixel_size_absent(tmp_path):
    star, _, images = make_warp(tmp_path, optics=False)
    _rewrite(star, lambda df: df.drop(columns=["rlnDetectorPixelSize"]))
    assert read_particles(star).pixel_size == PX  # from the MRC header
    write_mrc(tmp_path / "stacks/p000.mrcs", images[:3], pixel_size=0.0)  # header without a voxel size
    with pytest.raises(InputError, match="pixel size absent"):
        read_particles(star)
    assert read_particles(star, pixel_size=1.5).pixel_size == 1.5


def test_unreadable_mrc_header(tmp_path):
    star, _, _ = make_warp(tmp_path)
    (tmp_path / "stacks/p002.mrcs").write_bytes(b"not an mrc file" * 100)
    with pytest.raises(InputError, match=r"cannot read MRC header of .*p002\.mrcs"):
        read_particles(star)


def test_truncated_stack_named(tmp_path):
    star, _, _ = make_warp(tmp_path)
    data = (tmp_path / "stacks/p001.mrcs").read_bytes()
    (tmp_path / "stacks/p001.mrcs").write_bytes(data[:-100])
    with pytest.raises(InputError, match=r"cannot read MRC header of .*p001\.mrcs"):
        read_particles(star)


def test_subset_from_boolean_mask(tmp_path):
    star, _, _ = make_warp(tmp_path)
    s = read_particles(star)
    out = write_particle_subset(s, np.array([False, True, True]), tmp_path / "m.star")
    assert read_particles(out).particle_names == ["TS_01_001", "TS_00_002"]
    with pytest.raises(InputError, match="mask has 2 entries for 3 particles"):
        write_particle_subset(s, np.array([True, False]), tmp_path / "m2.star")


def test_mrc_without_image_stack_flag_is_read(tmp_path):
    # some writers leave ispg = 1 on .mrcs stacks; the images must still be read as a stack
    star, _, images = make_warp(tmp_path)
    with mrcfile.new(tmp_path / "stacks/p000.mrcs", overwrite=True) as m:
        m.set_data(images[:3])
        m.voxel_size = PX
    s = read_particles(star)
    np.testing.assert_allclose(s.read_images(np.arange(3)), images[:3])
