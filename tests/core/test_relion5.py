"""RELION 5 / WarpTools 2-D stack particle sets: reading (against geometry computed here with scipy), writing from the
simulator, subsets for re-refinement, and training on the same data read in both formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from scipy.spatial.transform import Rotation

from tomodrgn.export.selections import filter_star
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.particles import read_particles
from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import train

TS_PX, IMG_PX, D = 2.0, 4.0, 8
TOMOS = {  # name: (nominal tilts, x tilt, z rot, pre-exposure, hand, size x/y/z)
    "TS_01": ([0.0, 3.0, -3.0, 6.0, -6.0], 0.5, 85.0, [0.0, 6.0, 3.0, 12.0, 9.0], -1.0, (400, 300, 100)),
    "TS_02": ([0.0, 10.0, -10.0], -0.3, -95.0, [0.0, 4.0, 8.0], 1.0, (200, 200, 60)),
}
PARTICLES = [  # tomogram, visible frames, coordinate (ts px), angles, subtomogram angles, origin (Å)
    ("TS_01", [1, 1, 0, 1, 1], (120.0, 80.0, 40.0), (10.0, 30.0, -50.0), (20.0, 40.0, 60.0), (3.0, -2.0, 5.0)),
    ("TS_01", [1, 1, 1, 1, 1], (300.0, 250.0, 70.0), (-100.0, 120.0, 15.0), None, (0.0, 1.5, -4.0)),
    ("TS_02", [1, 0, 1], (60.0, 150.0, 10.0), (170.0, 80.0, -170.0), (5.0, 10.0, 15.0), (-1.0, 0.0, 2.0)),
]


def relion_matrix(rot, tilt, psi):
    """RELION's Euler matrix: the transpose of scipy's active intrinsic ZYZ rotation (independent of our code)."""
    return Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix().T


def specimen_rotation(xtilt, ytilt, zrot):
    """RELION 5's projection rotation Rz(zrot)·Ry(ytilt)·Rx(xtilt), right-handed rotations of the specimen."""
    r = [Rotation.from_rotvec(np.deg2rad(a) * np.eye(3)[i]).as_matrix() for i, a in enumerate((xtilt, ytilt, zrot))]
    return r[2] @ r[1] @ r[0]


def tilt_rows(name: str, shifts: bool = True) -> pd.DataFrame:
    tilts, xtilt, zrot, pre, _, size = TOMOS[name]
    n = len(tilts)
    rng = np.random.default_rng(len(name) + n)
    shift = rng.normal(0, 20.0, (n, 2)) if shifts else np.zeros((n, 2))
    rows = []
    for f in range(n):
        r = specimen_rotation(xtilt, tilts[f], zrot)
        p = np.eye(4)
        p[:3, :3] = r
        tomo_c = np.floor(np.array(size) / 2)
        p[:3, 3] = np.array([1000.0 + shift[f, 0] / TS_PX, 900.0 + shift[f, 1] / TS_PX, 0.0]) - r @ tomo_c
        rows.append(
            {
                **{f"rlnTomoProj{a}": "[" + ",".join(f"{v:.15g}" for v in p[k]) + "]" for k, a in enumerate("XYZW")},
                "rlnTomoXTilt": xtilt,
                "rlnTomoYTilt": tilts[f],
                "rlnTomoZRot": zrot,
                "rlnTomoXShiftAngst": shift[f, 0],
                "rlnTomoYShiftAngst": shift[f, 1],
                "rlnTomoNominalStageTiltAngle": tilts[f],
                "rlnDefocusU": 30000.0 + 100 * f,
                "rlnDefocusV": 29000.0 + 100 * f,
                "rlnDefocusAngle": 20.0 + f,
                "rlnCtfScalefactor": np.cos(np.deg2rad(tilts[f])),
                "rlnMicrographPreExposure": pre[f],
            }
        )
    return pd.DataFrame(rows)


def make_set(root: Path, form: str = "matrices", full_stacks: bool = False):
    """A RELION 5 project as the tools write it: Extract/job010/{optimisation_set,particles}.star with paths
    relative to the project folder, 2-D stacks Extract/job010/Subtomograms/<tomo>/<n>_stack2d.mrcs.

    ``form``: "matrices" (WarpTools: data_<tomo> blocks with _rlnTomoProjX/Y/Z/W in tomograms.star) or "angles"
    (RELION 5: tilt-series STARs named by _rlnTomoTiltSeriesStarFile, _rlnTomoXTilt/YTilt/ZRot only).
    Returns (optimisation set, expected per-image values, images).
    """
    job = root / "Extract/job010"
    rng = np.random.default_rng(3)
    glob = pd.DataFrame(
        [
            {"rlnTomoName": n, "rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.07,
             "rlnTomoHand": t[4], "rlnTomoTiltSeriesPixelSize": TS_PX, "rlnTomoSizeX": t[5][0],
             "rlnTomoSizeY": t[5][1], "rlnTomoSizeZ": t[5][2]}
            for n, t in TOMOS.items()
        ]
    )  # fmt: skip
    blocks = {"global": glob}
    if form == "matrices":
        blocks.update({n: tilt_rows(n) for n in TOMOS})
    else:
        glob["rlnTomoTiltSeriesStarFile"] = [f"Tomograms/job005/tilt_series/{n}.star" for n in TOMOS]
        for n in TOMOS:
            ts = tilt_rows(n).drop(columns=[f"rlnTomoProj{a}" for a in "XYZW"])
            (root / "Tomograms/job005/tilt_series").mkdir(parents=True, exist_ok=True)
            starfile.write({n: ts}, root / f"Tomograms/job005/tilt_series/{n}.star", overwrite=True)
    (root / "Tomograms/job005").mkdir(parents=True, exist_ok=True)
    starfile.write(blocks, root / "Tomograms/job005/tomograms.star", overwrite=True)

    rows, expected, images = [], {k: [] for k in ("rotation", "shift", "defocus_u", "dose", "tilt")}, []
    for i, (tomo, visible, coord, ang, sub, origin) in enumerate(PARTICLES):
        tilts, xtilt, zrot, pre, hand, size = TOMOS[tomo]
        table = tilt_rows(tomo)
        a_sub = relion_matrix(*sub) if sub else np.eye(3)
        a_part = relion_matrix(*ang)
        o = np.array(origin)
        centre = (np.array(coord) - np.floor(np.array(size) / 2)) * TS_PX - a_sub @ o
        frames = np.flatnonzero(visible)
        stack = rng.normal(size=(len(visible) if full_stacks else len(frames), D, D)).astype(np.float32)
        name = f"Extract/job010/Subtomograms/{tomo}/{i + 1}_stack2d.mrcs"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_mrc(root / name, stack, pixel_size=IMG_PX)
        for f in frames:
            r = specimen_rotation(xtilt, tilts[f], zrot)
            expected["rotation"].append(r @ a_sub @ a_part)
            expected["shift"].append((r @ a_sub @ o)[:2])
            expected["defocus_u"].append(table["rlnDefocusU"][f] + hand * (r @ centre)[2])
            expected["dose"].append(pre[f] + 3.0 if tomo == "TS_01" else pre[f] + 4.0)
            expected["tilt"].append(tilts[f])
            images.append(stack[f] if full_stacks else stack[list(frames).index(f)])
        row = {
            "rlnTomoName": tomo, "rlnTomoParticleId": i + 1, "rlnCoordinateX": coord[0], "rlnCoordinateY": coord[1],
            "rlnCoordinateZ": coord[2], "rlnAngleRot": ang[0], "rlnAngleTilt": ang[1], "rlnAnglePsi": ang[2],
            "rlnTomoParticleName": f"{tomo}/{i + 1}", "rlnOpticsGroup": 1, "rlnImageName": name,
            "rlnOriginXAngst": o[0], "rlnOriginYAngst": o[1], "rlnOriginZAngst": o[2],
            "rlnTomoVisibleFrames": "[" + ",".join(map(str, visible)) + "]", "rlnClassNumber": i % 2 + 1,
        }  # fmt: skip
        if sub:
            row.update(dict(zip(("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"), sub)))
        rows.append(row)
    particles = pd.DataFrame(rows)
    for c in ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"):
        particles[c] = particles[c].fillna(0.0)
    optics = pd.DataFrame(
        [{"rlnOpticsGroup": 1, "rlnOpticsGroupName": "opticsGroup1", "rlnSphericalAberration": 2.7, "rlnVoltage": 300.0,
          "rlnTomoTiltSeriesPixelSize": TS_PX, "rlnCtfDataAreCtfPremultiplied": 0, "rlnImageDimensionality": 2,
          "rlnTomoSubtomogramBinning": IMG_PX / TS_PX, "rlnImagePixelSize": IMG_PX, "rlnImageSize": D,
          "rlnAmplitudeContrast": 0.07}]
    )  # fmt: skip
    job.mkdir(parents=True, exist_ok=True)
    general = {"rlnTomoSubTomosAre2DStacks": 1}
    starfile.write({"general": general, "optics": optics, "particles": particles}, job / "particles.star")
    entries = {"rlnTomoParticlesFile": "Extract/job010/particles.star",
               "rlnTomoTomogramsFile": "Tomograms/job005/tomograms.star"}  # fmt: skip
    starfile.write({"": entries}, job / "optimisation_set.star")
    return job / "optimisation_set.star", {k: np.asarray(v) for k, v in expected.items()}, np.stack(images)


def _rotation_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest angle (rad) between rotation matrices a and b."""
    cos = (np.einsum("nij,nij->n", a, b) - 1) / 2
    return float(np.arccos(np.clip(cos, -1, 1)).max())


@pytest.mark.parametrize("form", ["matrices", "angles"])
def test_reads_stack_set_geometry(tmp_path, form):
    opt, exp, images = make_set(tmp_path, form)
    s = read_particles(opt)
    assert s.flavour == "relion5" and s.stack_set is not None
    assert s.particle_names == ["TS_01/1", "TS_01/2", "TS_02/3"]
    assert [len(r) for r in s.image_indices] == [4, 5, 2]
    assert s.pixel_size == IMG_PX and s.box_size == D
    assert _rotation_error(s.rotation, exp["rotation"]) < 1e-6
    np.testing.assert_allclose(s.shift, exp["shift"], atol=1e-6)
    np.testing.assert_allclose(s.defocus_u, exp["defocus_u"], atol=1e-4)
    np.testing.assert_allclose(s.defocus_u - s.defocus_v, 1000.0, atol=1e-6)
    np.testing.assert_allclose(s.dose, exp["dose"])
    np.testing.assert_allclose(s.tilt, exp["tilt"])
    assert (s.voltage == 300).all() and (s.amplitude_contrast == 0.07).all()
    np.testing.assert_array_equal(s.read_images(np.arange(s.n_images)), images)
    assert list(s.class_label) == [1, 2, 1] and s.tomogram == ["TS_01", "TS_01", "TS_02"]


def test_full_frame_stacks_and_particles_star_entry(tmp_path):
    """A stack of every frame is read at the visible frames; the particles STAR finds its tomograms through the
    optimisation set next to it, or takes tomograms_star."""
    opt, exp, images = make_set(tmp_path, full_stacks=True)
    s = read_particles(opt.parent / "particles.star")
    np.testing.assert_array_equal(s.read_images(np.arange(s.n_images)), images)
    assert _rotation_error(s.rotation, exp["rotation"]) < 1e-6
    opt.unlink()
    with pytest.raises(InputError, match="needs its tomograms STAR"):
        read_particles(opt.parent / "particles.star")
    s2 = read_particles(opt.parent / "particles.star", tomograms_star=tmp_path / "Tomograms/job005/tomograms.star")
    np.testing.assert_allclose(s2.defocus_u, exp["defocus_u"], atol=1e-4)


def _edit(path: Path, block: str, fn) -> None:
    blocks = starfile.read(path, always_dict=True)
    blocks[block] = fn(blocks[block])
    starfile.write(blocks, path, overwrite=True)


def test_errors_name_file_column_particle(tmp_path):
    opt, _, _ = make_set(tmp_path)
    tomograms = tmp_path / "Tomograms/job005/tomograms.star"
    particles = opt.parent / "particles.star"

    def drop_ts02(blocks_path):
        blocks = starfile.read(blocks_path, always_dict=True)
        del blocks["TS_02"]
        starfile.write(blocks, blocks_path, overwrite=True)

    drop_ts02(tomograms)
    with pytest.raises(InputError, match=r"tomograms\.star: tomogram 'TS_02' has no tilt-series block data_TS_02"):
        read_particles(opt)
    opt, _, _ = make_set(tmp_path)
    _edit(particles, "particles", lambda df: df.assign(rlnTomoVisibleFrames=["[1,1,0,1,1]", "[1,1,1,1,1]", "[1,1]"]))
    with pytest.raises(InputError, match=r"particle 'TS_02/3' \(row 2\): _rlnTomoVisibleFrames has 2 flags but"):
        read_particles(opt)
    _edit(particles, "particles", lambda df: df.assign(rlnTomoVisibleFrames=["[1,1,1,1,1]"] * 2 + ["[1,0,1]"]))
    with pytest.raises(InputError, match=r"particle 'TS_01/1' .*marks 5 visible frames but .*1_stack2d\.mrcs has 4"):
        read_particles(opt)
    opt, _, _ = make_set(tmp_path)
    _edit(tomograms, "TS_01", lambda df: df.drop(columns=["rlnMicrographPreExposure"]))
    with pytest.warns(UserWarning, match=r"no dose columns \(_rlnMicrographPreExposure\): dose weighting .* off"):
        assert not read_particles(opt).has_dose
    opt, _, _ = make_set(tmp_path)
    _edit(particles, "general", lambda g: {"rlnTomoSubTomosAre2DStacks": 0})
    with pytest.raises(InputError, match="_rlnTomoSubTomosAre2DStacks is 0: RELION 4/5 3-D pseudo-subtomograms"):
        read_particles(opt)


def test_subset_is_a_stack_set_for_rerefinement(tmp_path, monkeypatch):
    opt, exp, images = make_set(tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")  # RELION runs in its project folder: paths relative to it
    s = read_particles(opt)
    out = filter_star(s, tmp_path / "project/Select/job020/optimisation_set.star", indices=[2, 0])
    sel = out.parent
    assert {p.name for p in sel.iterdir()} == {"optimisation_set.star", "particles.star", "tomograms.star"}
    entries = starfile.read(out, always_dict=True)[""]
    assert entries == {"rlnTomoParticlesFile": "Select/job020/particles.star",
                       "rlnTomoTomogramsFile": "Select/job020/tomograms.star"}  # fmt: skip
    raw = starfile.read(sel / "particles.star", always_dict=True)
    assert raw["general"]["rlnTomoSubTomosAre2DStacks"] == 1
    assert list(raw["particles"]["rlnTomoParticleName"]) == ["TS_01/1", "TS_02/3"]
    assert list(raw["particles"]["rlnImageName"])[0] == "Extract/job010/Subtomograms/TS_01/1_stack2d.mrcs"
    monkeypatch.chdir(tmp_path)  # read back from elsewhere
    s2 = read_particles(tmp_path / "project/Select/job020/optimisation_set.star")
    rows = np.concatenate([s.image_indices[0], s.image_indices[2]])
    assert _rotation_error(s2.rotation, s.rotation[rows]) < 1e-6
    np.testing.assert_allclose(s2.defocus_u, s.defocus_u[rows], atol=1e-3)
    np.testing.assert_array_equal(s2.read_images(np.arange(s2.n_images)), images[rows])


# ------------------------------------------------------------------------------------------------- simulated, trained
@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = tmp_path_factory.mktemp("relion5_sim")
    sim = simulate_dataset(out, preset="homogeneous", n_particles=40, box_size=32, n_tilts=9, snr=None,
                           drop_tilts=2, format="relion5", seed=4, n_tomograms=2)  # fmt: skip
    return sim, read_particles(sim.warp_star_path), read_particles(sim.star_path)


def test_simulated_set_reads_as_its_warp_twin(both):
    sim, warp, rel = both
    assert rel.stack_set is not None and warp.stack_set is None
    assert warp.n_images == rel.n_images and [len(r) for r in warp.image_indices] == [len(r) for r in rel.image_indices]
    assert _rotation_error(warp.rotation, rel.rotation) < 1e-5
    np.testing.assert_allclose(warp.shift, rel.shift, atol=1e-4)
    for key in ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "amplitude_contrast", "phase_shift"):
        np.testing.assert_allclose(getattr(warp, key), getattr(rel, key), atol=1e-3, err_msg=key)
    np.testing.assert_allclose(warp.dose, rel.dose, atol=1e-6)
    np.testing.assert_allclose(np.abs(warp.tilt), np.abs(rel.tilt), atol=1e-3)  # Warp's cos loses the sign
    truth = np.load(sim.truth_path)
    np.testing.assert_allclose(rel.shift, truth["image_shift"], atol=1e-4)
    assert np.abs(truth["image_shift"]).max() > 5.0  # projected 3-D origins, not zeros
    np.testing.assert_array_equal(warp.read_images(np.arange(8)), rel.read_images(np.arange(8)))


def _fsc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a.shape[0]
    fa, fb = (np.fft.fftshift(np.fft.fftn(v)) for v in (a, b))
    ax = np.arange(d) - d // 2
    shell = np.round(np.sqrt(sum(g**2 for g in np.meshgrid(ax, ax, ax, indexing="ij")))).astype(int)
    return np.array(
        [
            np.real(np.sum(fa[m] * np.conj(fb[m]))) / np.sqrt(np.sum(np.abs(fa[m]) ** 2) * np.sum(np.abs(fb[m]) ** 2))
            for m in (shell == s for s in range(1, d // 2 + 1))
        ]
    )


def test_datasets_of_both_formats_are_identical(both):
    """What training sees (images, poses, shifts, CTF, doses, weights) is the same from either STAR."""
    from tomodrgn.data import TiltSeriesDataset

    _, warp, rel = both
    a, b = (TiltSeriesDataset(s, sequential=True) for s in (warp, rel))
    for i in (0, 17, 39):
        x, y = a[i], b[i]
        for key in ("images", "rotation", "shift", "ctf", "dose", "mid_dose", "tilt_weight"):
            np.testing.assert_allclose(x[key].numpy(), y[key].numpy(), atol=2e-3, rtol=1e-4, err_msg=key)


def test_train_nn_same_map_from_both_formats(both, tmp_path):
    sim, warp, rel = both
    cfg = TrainConfig(mode="homogeneous", dec_arch="128x3", epochs=30, lr=2e-3, sequential_tilts=True, device="cpu",
                      backend="torch", preload=True)  # fmt: skip
    maps = []
    for name, series in (("warp", warp), ("relion5", rel)):
        train(series, tmp_path / name, cfg, progress=False)
        maps.append(load_model(tmp_path / name).decode(None)[0])
    truth = starfile_free_truth(sim)
    cc = np.corrcoef(maps[0].ravel(), maps[1].ravel())[0, 1]
    crossings = []
    for m in maps:
        curve = _fsc(m, truth)
        below = np.flatnonzero(curve < 0.5)
        crossings.append((below[0] + 1) / truth.shape[0] if len(below) else 0.5)
    print(f"CC(warp map, relion5 map) = {cc:.4f}; FSC=0.5 vs truth at {crossings} cycles/px")
    assert cc >= 0.99, cc
    assert min(crossings) > 0.25, crossings


def starfile_free_truth(sim) -> np.ndarray:
    from tomodrgn.io.mrc import read_mrc

    return read_mrc(sim.volume_paths[0])[0]


def test_cli_simulate_relion5_and_filter_star(tmp_path, capsys):
    from tomodrgn.cli import main

    main(["simulate", "-o", str(tmp_path / "sim"), "--format", "relion5", "--preset", "homogeneous", "--n-particles",
          "4", "-D", "16", "--n-tilts", "5", "--drop-tilts", "2", "--seed", "2"])  # fmt: skip
    assert "optimisation_set.star" in capsys.readouterr().out
    (tmp_path / "keep.txt").write_text("1\n3\n")
    main(["filter_star", str(tmp_path / "sim/relion5_particles.star"), "--tomograms-star",
          str(tmp_path / "sim/tomograms.star"), "--indices", str(tmp_path / "keep.txt"), "-o",
          str(tmp_path / "sel/optimisation_set.star")])  # fmt: skip
    s = read_particles(tmp_path / "sel/optimisation_set.star")
    full = read_particles(tmp_path / "sim/optimisation_set.star")
    assert s.particle_names == [full.particle_names[1], full.particle_names[3]]
    rows = np.concatenate([full.image_indices[1], full.image_indices[3]])
    np.testing.assert_array_equal(s.read_images(np.arange(s.n_images)), full.read_images(rows))
    with pytest.raises(SystemExit) as e:  # a particles STAR alone: one-line user error, exit 2
        (tmp_path / "sim/optimisation_set.star").unlink()
        (tmp_path / "sim/tomograms.star").rename(tmp_path / "sim/tomos.star")
        main(["filter_star", str(tmp_path / "sim/relion5_particles.star"), "--indices", str(tmp_path / "keep.txt"),
              "-o", str(tmp_path / "x.star")])  # fmt: skip
    assert e.value.code == 2 and "needs its tomograms STAR" in capsys.readouterr().err
