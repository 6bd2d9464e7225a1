"""Small simulated stand-ins for the published tomoDRGN's own test data (its ``testing/data`` folder), with the same
file names, so that its test command lines (run from the folder above ``data/``) can be pointed at our files.

:func:`make_tomodrgn_test_data` writes under ``folder / "data"``:

- ``10076_classE_32_sim.star``: a Warp 1-style particle image series (one ``data_`` block, RELION 3.0 columns, no
  optics block; one row per tilt image, ``_rlnImageName`` ``000001@data/10076_classE_32_sim/000_000000.mrcs``,
  ``_rlnMicrographName`` ``classE.tomostar``) of one class ("E"); one stack per particle, written with the MRC header
  Warp 1.x leaves (no 'MAP ' id, zero machine stamp, zero MRC2014 fields; as ``legacy_stack(..., style="warp1")`` in
  ``test_mrc_legacy.py``). The stack paths are relative to ``folder``, as in the published files (``data/...``):
  the published tomoDRGN finds them from the working directory, ours under the STAR folder's parents.
- ``10076_both_32_sim.star``: the same layout, two classes, the first half "D" then "E" (tomogram ``both.tomostar``).
- ``10076_classD_32.mrc``, ``10076_classE_32.mrc``: the ground-truth maps (``2-class`` preset: E the complete
  molecule, D without domain A; E is also the ``homogeneous`` preset's map, which the classE set is drawn from).
- ``10076_both_32_sim_vols.star``: the "both" particles as a Warp sub-tomogram (volume) STAR, one row per particle in
  WarpTools' column order (``ts_export_particles --output_star`` for 3-D output): ``_rlnCoordinateX/Y/Z`` (px),
  ``_rlnAngleRot/Tilt/Psi``, ``_rlnMicrographName`` ``both.tomostar``, ``_rlnMagnification`` 10000,
  ``_rlnDetectorPixelSize``, ``_rlnCtfMaxResolution``, ``_rlnImageName`` / ``_rlnCtfImage`` (placeholder volumes:
  the particle's class map, unrotated, and an all-ones half-transform CTF volume), ``_rlnPixelSize``,
  ``_rlnVoltage``, ``_rlnSphericalAberration``.
- ``ptcl_labels_D0_E1.pkl``, ``labels_D-0_E-1.pkl``: int64 numpy arrays, one label per "both" particle (0 D, 1 E).
- ``ind_ptcl_first10last10.pkl``: int64 indices of the first and last 10 particles (n/2 each when n < 20).
- ``warptools_test_4-tomos_10-ptcls_box-32_angpix-12_optimisation_set.star`` with its particles STAR
  (``warptools_test_4-tomos_10-ptcls_box-32_angpix-12.star``) and tomograms STAR (``..._tomograms.star``): a WarpTools
  2-D stack set (``tomodrgn.simulate`` ``format="relion5"``, rewritten in WarpTools' layout: tomograms
  ``Unt_083/050/076/088.tomostar``, one optics group per tomogram, ``_rlnCoordinateX/Y/Z`` in tilt-series pixels,
  tilt tables in tilt-angle order with only projection matrices, CTF and pre-exposure, stacks
  ``<set>/Unt_083/Unt_083_12.00A_000001.mrcs`` holding the visible frames in tilt-table order), box ``box``, 12 Å/px.
- ``warptools_test_box-32_angpix-12_reconstruct.mrc``: its ground-truth map; ``warptools_test_ind_last2tomos.pkl``:
  int64 indices of the particles of its last two tomograms (``Unt_076``, ``Unt_088``).

Deterministic in ``seed``; a few seconds for the defaults.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
from test_mrc_legacy import legacy_stack

from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.star import read_star, write_star
from tomodrgn.simulate import simulate_dataset

CLASS_E_STAR = "10076_classE_32_sim.star"
BOTH_STAR = "10076_both_32_sim.star"
VOLS_STAR = "10076_both_32_sim_vols.star"
CLASS_D_MAP = "10076_classD_32.mrc"
CLASS_E_MAP = "10076_classE_32.mrc"
LABELS = ("ptcl_labels_D0_E1.pkl", "labels_D-0_E-1.pkl")
IND_FIRST_LAST = "ind_ptcl_first10last10.pkl"
WARPTOOLS_SET = "warptools_test_4-tomos_10-ptcls_box-32_angpix-12"
WARPTOOLS_OPT = f"{WARPTOOLS_SET}_optimisation_set.star"
WARPTOOLS_PARTICLES = f"{WARPTOOLS_SET}.star"
WARPTOOLS_TOMOGRAMS = f"{WARPTOOLS_SET}_tomograms.star"
WARPTOOLS_MAP = "warptools_test_box-32_angpix-12_reconstruct.mrc"
WARPTOOLS_IND = "warptools_test_ind_last2tomos.pkl"
WARPTOOLS_TOMOS = ("Unt_083", "Unt_050", "Unt_076", "Unt_088")  # the published set's tomograms, in its order
WARPTOOLS_PX = 12.0
SNR = 1.0
TOMO_PER_AXIS = 50  # particles the simulator's default tomogram holds comfortably


def write_warp1_stack(path: Path, images: np.ndarray, pixel_size: float) -> Path:
    """An image stack with the header Warp 1.x writes (``legacy_stack(style="warp1")`` of ``test_mrc_legacy.py``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return legacy_stack(path, images, pixel_size, style="warp1")


def _pickle(path: Path, array: np.ndarray) -> Path:
    with open(path, "wb") as f:
        pickle.dump(np.asarray(array, dtype=np.int64), f)
    return path


def _tomogram_shape(n: int, box: int) -> tuple[int, int, int] | None:
    """The simulator's default tomogram (2D, 8D, 8D), widened in x and y when n particles would crowd it."""
    if n <= TOMO_PER_AXIS:
        return None
    side = 8 * box * int(np.ceil(np.sqrt(n / TOMO_PER_AXIS)))
    return (2 * box, side, side)


def _particle_rows(df: pd.DataFrame) -> list[np.ndarray]:
    """Row indices of each particle (``_rlnGroupName``), in order of first appearance."""
    keys = df["rlnGroupName"].astype(str).to_numpy()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def _warp_image_series(sim_dir: Path, data: Path, stem: str, tomostar: str, order: np.ndarray) -> pd.DataFrame:
    """Rewrite the simulator's ``particles.star`` (optics + particles) as a Warp 1 image series ``data/<stem>.star``
    with the particles in ``order``, and each particle's stack as ``data/<stem>/000_NNNNNN.mrcs`` with a Warp 1
    header; returns the rows written."""
    blocks = read_star(sim_dir / "particles.star")
    optics, df = blocks["optics"].iloc[0], blocks["particles"]
    px = float(optics["rlnImagePixelSize"])
    rows = _particle_rows(df)
    out = []
    for new, old in enumerate(order):
        part = df.iloc[rows[old]]
        group = f"000_{new:06d}"
        old_stack = sim_dir / str(part["rlnImageName"].iloc[0]).partition("@")[2]
        stack = f"data/{stem}/{group}.mrcs"  # relative to the folder above data/, as in the published files
        write_warp1_stack(data.parent / stack, mrcfile.read(old_stack), px)
        index = [int(str(v).partition("@")[0]) for v in part["rlnImageName"]]
        out.append(
            pd.DataFrame(
                {
                    "rlnMagnification": 10000.0,
                    "rlnDetectorPixelSize": px,
                    "rlnVoltage": float(optics["rlnVoltage"]),
                    "rlnSphericalAberration": float(optics["rlnSphericalAberration"]),
                    "rlnAmplitudeContrast": float(optics["rlnAmplitudeContrast"]),
                    "rlnPhaseShift": part["rlnPhaseShift"].to_numpy(dtype=np.float64),
                    "rlnDefocusU": part["rlnDefocusU"].to_numpy(dtype=np.float64),
                    "rlnDefocusV": part["rlnDefocusV"].to_numpy(dtype=np.float64),
                    "rlnDefocusAngle": part["rlnDefocusAngle"].to_numpy(dtype=np.float64),
                    "rlnImageName": [f"{i:06d}@{stack}" for i in index],
                    "rlnMicrographName": tomostar,
                    "rlnCoordinateX": part["rlnCoordinateX"].to_numpy(dtype=np.float64),
                    "rlnCoordinateY": part["rlnCoordinateY"].to_numpy(dtype=np.float64),
                    "rlnCoordinateZ": part["rlnCoordinateZ"].to_numpy(dtype=np.float64),
                    "rlnAngleRot": part["rlnAngleRot"].to_numpy(dtype=np.float64),
                    "rlnAngleTilt": part["rlnAngleTilt"].to_numpy(dtype=np.float64),
                    "rlnAnglePsi": part["rlnAnglePsi"].to_numpy(dtype=np.float64),
                    "rlnOriginXAngst": part["rlnOriginXAngst"].to_numpy(dtype=np.float64),
                    "rlnOriginYAngst": part["rlnOriginYAngst"].to_numpy(dtype=np.float64),
                    "rlnCtfBfactor": part["rlnCtfBfactor"].to_numpy(dtype=np.float64),
                    "rlnCtfScalefactor": part["rlnCtfScalefactor"].to_numpy(dtype=np.float64),
                    "rlnGroupName": group,
                }
            )
        )
    table = pd.concat(out, ignore_index=True)
    write_star({"": table}, data / f"{stem}.star")
    return table


def _warp_volume_series(table: pd.DataFrame, data: Path, stem: str, maps: list[np.ndarray], labels: np.ndarray):
    """``data/<stem>.star``: one row per particle of the image series ``table`` (its 0° row: the particle's own pose
    and position) in WarpTools' 3-D export columns; placeholder sub-tomograms and CTF volumes under ``data/<stem>/``."""
    first = table[np.isclose(table["rlnCtfScalefactor"], 1.0)].drop_duplicates("rlnGroupName")
    px = float(first["rlnDetectorPixelSize"].iloc[0])
    box = maps[0].shape[0]
    ctf = np.ones((box, box, box // 2 + 1), dtype=np.float32)
    root = str(first["rlnMicrographName"].iloc[0]).removesuffix(".tomostar")
    (data / stem).mkdir(parents=True, exist_ok=True)
    names, ctf_names = [], []
    for i in range(len(first)):
        name = f"data/{stem}/{root}_{i:07d}_{px:.2f}A.mrc"
        ctf_name = f"data/{stem}/{root}_{i:07d}_ctf_{px:.2f}A.mrc"
        write_mrc(data.parent / name, maps[labels[i]], px)
        write_mrc(data.parent / ctf_name, ctf, px)
        names.append(name)
        ctf_names.append(ctf_name)
    vols = pd.DataFrame(
        {
            "rlnCoordinateX": first["rlnCoordinateX"].to_numpy(dtype=np.float64),
            "rlnCoordinateY": first["rlnCoordinateY"].to_numpy(dtype=np.float64),
            "rlnCoordinateZ": first["rlnCoordinateZ"].to_numpy(dtype=np.float64),
            "rlnAngleRot": first["rlnAngleRot"].to_numpy(dtype=np.float64),
            "rlnAngleTilt": first["rlnAngleTilt"].to_numpy(dtype=np.float64),
            "rlnAnglePsi": first["rlnAnglePsi"].to_numpy(dtype=np.float64),
            "rlnMicrographName": first["rlnMicrographName"].to_numpy(),
            "rlnMagnification": 10000.0,
            "rlnDetectorPixelSize": px,
            "rlnCtfMaxResolution": 2.5 * px,
            "rlnImageName": names,
            "rlnCtfImage": ctf_names,
            "rlnPixelSize": px,
            "rlnVoltage": first["rlnVoltage"].to_numpy(dtype=np.float64),
            "rlnSphericalAberration": first["rlnSphericalAberration"].to_numpy(dtype=np.float64),
        }
    )
    return write_star({"": vols}, data / f"{stem}.star")


def _visible(value) -> np.ndarray:
    return np.array([int(v) for v in str(value).strip("[]").split(",")], dtype=bool)


def _flags(visible: np.ndarray) -> str:
    return "[" + ",".join(str(int(v)) for v in visible) + "]"


def _warptools_set(sim_dir: Path, data: Path, box: int) -> tuple[Path, np.ndarray]:
    """Rewrite the simulator's RELION 5 set (optimisation_set.star, relion5_particles.star, tomograms.star,
    particles/*.mrcs) in the layout WarpTools writes; returns (optimisation set, indices of the last 2 tomograms)."""
    tomo_blocks = read_star(sim_dir / "tomograms.star")
    glob = tomo_blocks["global"]
    particles = read_star(sim_dir / "relion5_particles.star")["particles"]
    sim_names = glob["rlnTomoName"].astype(str).tolist()
    rename = {old: f"{new}.tomostar" for old, new in zip(sim_names, WARPTOOLS_TOMOS)}
    tilts = tomo_blocks[sim_names[0]]
    # WarpTools writes a tilt series in the order of its tilt angles (Warp's tilt index order), not acquisition order
    perm = np.argsort(tilts["rlnTomoNominalStageTiltAngle"].to_numpy(dtype=np.float64), kind="stable")
    step = float(np.diff(np.sort(tilts["rlnMicrographPreExposure"].to_numpy(dtype=np.float64)))[0])
    size = glob[["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].to_numpy(dtype=np.float64)[0]
    ts_px = float(glob["rlnTomoTiltSeriesPixelSize"].iloc[0])

    new_glob = pd.DataFrame(
        {
            "rlnTomoName": [rename[n] for n in sim_names],
            "rlnTomoTiltSeriesName": "dummy_tiltseries.mrc",
            "rlnTomoFrameCount": glob["rlnTomoFrameCount"].to_numpy(dtype=np.int64),
            "rlnTomoSizeX": glob["rlnTomoSizeX"].to_numpy(dtype=np.int64),
            "rlnTomoSizeY": glob["rlnTomoSizeY"].to_numpy(dtype=np.int64),
            "rlnTomoSizeZ": glob["rlnTomoSizeZ"].to_numpy(dtype=np.int64),
            "rlnTomoHand": glob["rlnTomoHand"].to_numpy(dtype=np.float64),
            "rlnOpticsGroupName": [f"opticsGroup{g + 1}" for g in range(len(sim_names))],
            "rlnTomoTiltSeriesPixelSize": ts_px,
            "rlnVoltage": glob["rlnVoltage"].to_numpy(dtype=np.float64),
            "rlnSphericalAberration": glob["rlnSphericalAberration"].to_numpy(dtype=np.float64),
            "rlnAmplitudeContrast": glob["rlnAmplitudeContrast"].to_numpy(dtype=np.float64),
            "rlnTomoImportFractionalDose": step,
        }
    )
    new_tomo_blocks: dict = {"global": new_glob}
    keep_cols = ["rlnTomoProjX", "rlnTomoProjY", "rlnTomoProjZ", "rlnTomoProjW", "rlnDefocusU", "rlnDefocusV",
                 "rlnDefocusAngle", "rlnCtfScalefactor", "rlnMicrographPreExposure"]  # fmt: skip
    for name in sim_names:
        new_tomo_blocks[rename[name]] = tomo_blocks[name][keep_cols].iloc[perm].reset_index(drop=True)
    write_star(new_tomo_blocks, data / WARPTOOLS_TOMOGRAMS)

    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": np.arange(1, len(sim_names) + 1),
            "rlnOpticsGroupName": new_glob["rlnOpticsGroupName"],
            "rlnSphericalAberration": new_glob["rlnSphericalAberration"],
            "rlnVoltage": new_glob["rlnVoltage"],
            "rlnTomoTiltSeriesPixelSize": ts_px,
            "rlnCtfDataAreCtfPremultiplied": 0,
            "rlnImageDimensionality": 2,
            "rlnTomoSubtomogramBinning": WARPTOOLS_PX / ts_px,
            "rlnImagePixelSize": WARPTOOLS_PX,
            "rlnImageSize": box,
            "rlnAmplitudeContrast": new_glob["rlnAmplitudeContrast"],
        }
    )
    group_of = {old: g + 1 for g, old in enumerate(sim_names)}
    rows = []
    local: dict[str, int] = {}
    for p in range(len(particles)):
        row = particles.iloc[p]
        old = str(row["rlnTomoName"])
        tomo = WARPTOOLS_TOMOS[group_of[old] - 1]
        local[old] = local.get(old, 0) + 1
        k = local[old]
        visible = _visible(row["rlnTomoVisibleFrames"])
        images = mrcfile.read(sim_dir / str(row["rlnImageName"]))  # kept tilts, acquisition order
        position = np.cumsum(visible) - 1  # acquisition frame → its image in the stack
        order = [position[t] for t in perm if visible[t]]
        stack = f"{WARPTOOLS_SET}/{tomo}/{tomo}_{WARPTOOLS_PX:.2f}A_{k:06d}.mrcs"
        (data / stack).parent.mkdir(parents=True, exist_ok=True)
        write_mrc(data / stack, images[order], WARPTOOLS_PX, is_stack=True)
        centred = row[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
        coord = centred.to_numpy(dtype=np.float64) / ts_px + np.floor(size / 2)
        rows.append(
            {
                "rlnTomoName": rename[old], "rlnTomoParticleId": k, "rlnCoordinateX": coord[0],
                "rlnCoordinateY": coord[1], "rlnCoordinateZ": coord[2], "rlnAngleRot": float(row["rlnAngleRot"]),
                "rlnAngleTilt": float(row["rlnAngleTilt"]), "rlnAnglePsi": float(row["rlnAnglePsi"]),
                "rlnTomoParticleName": f"{tomo}/{k}", "rlnOpticsGroup": group_of[old], "rlnImageName": stack,
                "rlnOriginXAngst": float(row["rlnOriginXAngst"]), "rlnOriginYAngst": float(row["rlnOriginYAngst"]),
                "rlnOriginZAngst": float(row["rlnOriginZAngst"]), "rlnTomoVisibleFrames": _flags(visible[perm]),
            }
        )  # fmt: skip
    general = {"rlnTomoSubTomosAre2DStacks": 1}
    write_star({"general": general, "optics": optics, "particles": pd.DataFrame(rows)}, data / WARPTOOLS_PARTICLES)
    entries = {"rlnTomoParticlesFile": WARPTOOLS_PARTICLES, "rlnTomoTomogramsFile": WARPTOOLS_TOMOGRAMS}
    opt = write_star({"": entries}, data / WARPTOOLS_OPT)
    tomo_index = np.array([group_of[str(t)] - 1 for t in particles["rlnTomoName"]])
    return opt, np.flatnonzero(tomo_index >= len(sim_names) - 2)


def make_tomodrgn_test_data(
    folder: Path, *, n_particles: int = 20, box: int = 32, n_tilts: int = 10, seed: int = 0
) -> dict[str, Path]:
    """Write the published tomoDRGN's test data files (see the module docstring) under ``folder / "data"``; returns
    {file name: path}. The 10076 sets have ``n_particles`` particles (``box``, 419.2 Å / box per pixel, ``n_tilts``
    tilts of the ±3° dose-symmetric scheme at 3 e⁻/Å² each, SNR 1); the WarpTools set 4 tomograms of
    ``n_particles // 4 or 10`` particles each at 12 Å/px."""
    folder = Path(folder)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    common = dict(box_size=box, n_tilts=n_tilts, snr=SNR, overwrite=True)
    with tempfile.TemporaryDirectory(prefix=".tomodrgn_sim_", dir=folder) as tmp:
        tmp = Path(tmp)
        shape = _tomogram_shape(n_particles, box)

        # one class: the complete molecule (= the 2-class preset's class 0), called E
        sim_e = simulate_dataset(tmp / "classE", preset="homogeneous", n_particles=n_particles, n_tomograms=1,
                                 tomogram_shape=shape, seed=seed, **common)  # fmt: skip
        _warp_image_series(tmp / "classE", data, "10076_classE_32_sim", "classE.tomostar", np.arange(n_particles))
        out[CLASS_E_STAR] = data / CLASS_E_STAR

        # two classes: D (class 1, without domain A) first, then E (class 0)
        sim_b = simulate_dataset(tmp / "both", preset="2-class", n_particles=n_particles, n_tomograms=1,
                                 tomogram_shape=shape, seed=seed + 1, **common)  # fmt: skip
        order = np.argsort(sim_b.labels == 0, kind="stable")
        labels = (sim_b.labels[order] == 0).astype(np.int64)  # 0 = D, 1 = E
        table = _warp_image_series(tmp / "both", data, "10076_both_32_sim", "both.tomostar", order)
        out[BOTH_STAR] = data / BOTH_STAR
        maps = [mrcfile.read(sim_b.volume_paths[1]), mrcfile.read(sim_b.volume_paths[0])]  # D, E
        assert np.array_equal(maps[1], mrcfile.read(sim_e.volume_paths[0]))  # the classE set's map is E
        for name, k in ((CLASS_D_MAP, 1), (CLASS_E_MAP, 0)):
            out[name] = Path(shutil.copyfile(sim_b.volume_paths[k], data / name))
        out[VOLS_STAR] = _warp_volume_series(table, data, "10076_both_32_sim_vols", maps, labels)
        for name in LABELS:
            out[name] = _pickle(data / name, labels)
        half = min(10, n_particles // 2)
        out[IND_FIRST_LAST] = _pickle(
            data / IND_FIRST_LAST, np.concatenate([np.arange(half), np.arange(n_particles - half, n_particles)])
        )

        # WarpTools 2-D stack set: 4 tomograms, visible frames (one random tilt per particle may be missing)
        per_tomo = n_particles // 4 or 10
        n_wt = 4 * per_tomo
        sim_w = simulate_dataset(tmp / "warptools", preset="homogeneous", n_particles=n_wt, n_tomograms=4,
                                 pixel_size=WARPTOOLS_PX, drop_tilts=1, format="relion5",
                                 tomogram_shape=_tomogram_shape(per_tomo, box), seed=seed + 2, **common)  # fmt: skip
        opt, last2 = _warptools_set(tmp / "warptools", data, box)
        out[WARPTOOLS_OPT] = opt
        out[WARPTOOLS_PARTICLES] = data / WARPTOOLS_PARTICLES
        out[WARPTOOLS_TOMOGRAMS] = data / WARPTOOLS_TOMOGRAMS
        out[WARPTOOLS_MAP] = Path(shutil.copyfile(sim_w.volume_paths[0], data / WARPTOOLS_MAP))
        out[WARPTOOLS_IND] = _pickle(data / WARPTOOLS_IND, last2)
    return out
