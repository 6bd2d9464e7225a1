"""A tilt-series particle dataset made without tomodrgn's forward model, in the shape Warp 1 writes.

Everything here is derived from the formats' own definitions, not from ``tomodrgn``:
- the map is a sum of isotropic 3-D gaussians (chiral), indexed [z, y, x] with the origin at voxel D/2;
- projections are analytic: RELION's matrix A (``scipy.spatial.transform.Rotation``, intrinsic ZYZ, transposed) maps a
  reference point r to the image frame as A @ r, and a gaussian projects to a 2-D gaussian at (A @ c)[:2];
- the CTF is teamtomo's ``torch_ctf`` (defocus positive underfocus, phase plate), applied by ``numpy.fft``;
- the exposure filter is exp(−N / 2Ne(k)), Ne = 0.24499·k^−1.6649 + 2.8141 (Grant & Grigorieff 2015);
- the in-plane shift follows RELION's ``_rlnOriginX/Y`` (pixels): the particle's centre is at −origin from the box
  centre, applied with ``scipy.ndimage.fourier_shift`` by −origin.
The STAR file is written with ``starfile`` (no optics block, Warp 1 columns) and the stacks with ``mrcfile``.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
import torch_ctf
from scipy import ndimage
from scipy.spatial.transform import Rotation


def relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's Euler_angles2matrix (passive ZYZ) from scipy: the transpose of the active intrinsic ZYZ rotation."""
    return Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True).as_matrix().T


def gaussian_blobs(n: int, box: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (n, 3) px (x, y, z) from the box centre, widths σ (n,) px and amplitudes (n,)."""
    centres = rng.uniform(-0.22 * box, 0.22 * box, size=(n, 3))
    sigma = rng.uniform(1.1, 2.2, size=n)
    amp = rng.uniform(0.5, 1.5, size=n)
    return centres, sigma, amp


def blob_volume(centres, sigma, amp, box: int) -> np.ndarray:
    """The map sampled on the D³ grid [z, y, x], origin at voxel D/2."""
    ax = np.arange(box) - box // 2
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    vol = np.zeros((box,) * 3)
    for c, s, a in zip(centres, sigma, amp):
        vol += a * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * s * s))
    return vol.astype(np.float32)


def blob_projection(centres, sigma, amp, matrix: np.ndarray, box: int) -> np.ndarray:
    """Analytic projection along the image z axis of the blobs posed by RELION matrix A: image [y, x]."""
    ax = np.arange(box) - box // 2
    y, x = np.meshgrid(ax, ax, indexing="ij")
    img = np.zeros((box, box))
    for c, s, a in zip(centres, sigma, amp):
        p = matrix @ c  # reference → image frame
        img += a * np.sqrt(2 * np.pi) * s * np.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2) / (2 * s * s))
    return img


def exposure_filter(dose: float, box: int, pixel_size: float) -> np.ndarray:
    """exp(−N/2Ne(k)) on the unshifted numpy FFT grid (Grant & Grigorieff 2015, 300 kV)."""
    ky, kx = np.meshgrid(np.fft.fftfreq(box, pixel_size), np.fft.fftfreq(box, pixel_size), indexing="ij")
    k = np.sqrt(kx**2 + ky**2)
    k[0, 0] = 1e-9
    ne = 0.24499 * k**-1.6649 + 2.8141
    return np.exp(-dose / (2 * ne))


def make_dataset(
    outdir: Path,
    n_particles: int = 48,
    box: int = 32,
    pixel_size: float = 13.1,
    tilts=(0.0, 15.0, -15.0, 30.0, -30.0, 45.0, -45.0),
    dose_per_tilt: float = 2.5,
    max_shift_px: float = 4.0,
    noise_std: float = 0.0,
    seed: int = 0,
) -> tuple[Path, np.ndarray, dict]:
    """Write ``particles.star`` + one ``.mrcs`` per particle; returns (star path, true map, truth dict)."""
    rng = np.random.default_rng(seed)
    outdir = Path(outdir)
    (outdir / "particles").mkdir(parents=True, exist_ok=True)
    centres, sigma, amp = gaussian_blobs(12, box, rng)
    vol = blob_volume(centres, sigma, amp, box)
    rows = []
    origins = []
    for p in range(n_particles):
        particle = Rotation.random(random_state=rng.integers(1 << 31))
        stack = []
        defocus = rng.uniform(5000.0, 15000.0)
        astig = rng.uniform(0.0, 500.0)
        angle = rng.uniform(0.0, 180.0)
        for i, tilt in enumerate(tilts):
            # tilt image pose: stage tilt about the image y axis after the particle pose (passive matrices compose
            # as A_image = A_tilt @ A_particle)
            a_tilt = relion_matrix(0.0, tilt, 0.0)
            a = a_tilt @ particle.as_matrix().T
            rot, tlt, psi = Rotation.from_matrix(a.T).as_euler("ZYZ", degrees=True)
            origin = rng.uniform(-max_shift_px, max_shift_px, size=2)  # (x, y) px
            dose = (i + 1) * dose_per_tilt
            img = blob_projection(centres, sigma, amp, a, box)
            ctf = _ctf(defocus, box, pixel_size, astig / 2, angle, phase_shift=90.0)
            f = np.fft.fft2(img) * ctf * exposure_filter(dose, box, pixel_size)
            f = ndimage.fourier_shift(f, shift=(-origin[1], -origin[0]))  # (y, x): centre at −origin
            img = np.fft.ifft2(f).real
            if noise_std:
                img = img + rng.normal(0.0, noise_std, size=img.shape)
            stack.append(img.astype(np.float32))
            name = f"tomo_{p:03d}"
            ctf_columns = (300.0, 2.7, 0.07, 90.0, defocus + astig / 2, defocus - astig / 2, angle)
            rows.append(warp1_row(name, i, p, pixel_size, ctf_columns, (rot, tlt, psi), origin, dose, tilt))
            origins.append(origin)
        with mrcfile.new(outdir / "particles" / f"{name}.mrcs", overwrite=True) as m:
            m.set_data(np.stack(stack))
            m.set_image_stack()
            m.voxel_size = pixel_size
    star = outdir / "particles.star"
    starfile.write(pd.DataFrame(rows), star, overwrite=True)
    truth = {"centres": centres, "sigma": sigma, "amp": amp, "origin_px": np.asarray(origins)}
    return star, vol, truth


MIRROR = np.diag([1.0, 1.0, -1.0])  # z → −z


def warp1_row(name: str, i: int, p: int, pixel_size: float, ctf: tuple, angles: tuple, origin, dose: float,
              tilt: float) -> dict:  # fmt: skip
    """One tilt image's row of a Warp 1 image-series STAR (RELION 3.0 columns): image ``i`` of particle ``p``'s stack
    ``particles/<name>.mrcs``; ``ctf`` (kV, Cs mm, w, phase shift °, defocus U, V Å, angle °); ``angles`` (rot,
    tilt, psi) °; ``origin`` (x, y) px; ``dose`` e⁻/Å² as Warp's B-factor (−4·dose); ``tilt`` ° as cos(tilt)."""
    kv, cs, w, phase, du, dv, angle = ctf
    return {
        "rlnMagnification": 10000.0,
        "rlnDetectorPixelSize": pixel_size,
        "rlnVoltage": kv,
        "rlnSphericalAberration": cs,
        "rlnAmplitudeContrast": w,
        "rlnPhaseShift": phase,
        "rlnDefocusU": du,
        "rlnDefocusV": dv,
        "rlnDefocusAngle": angle,
        "rlnImageName": f"{i + 1}@particles/{name}.mrcs",
        "rlnMicrographName": "tomo",
        "rlnCoordinateX": 100.0 + p,
        "rlnCoordinateY": 100.0,
        "rlnCoordinateZ": 50.0,
        "rlnAngleRot": angles[0],
        "rlnAngleTilt": angles[1],
        "rlnAnglePsi": angles[2],
        "rlnOriginX": origin[0],
        "rlnOriginY": origin[1],
        "rlnCtfBfactor": -4.0 * dose,
        "rlnCtfScalefactor": np.cos(np.deg2rad(tilt)),
        "rlnGroupName": name,
    }


def specimen_rotation(xtilt: float, ytilt: float, zrot: float) -> np.ndarray:
    """RELION 5's projection rotation Rz(zrot)·Ry(ytilt)·Rx(xtilt) (active, right-handed; degrees) from scipy."""
    r = [Rotation.from_rotvec(np.deg2rad(a) * np.eye(3)[i]).as_matrix() for i, a in enumerate((xtilt, ytilt, zrot))]
    return r[2] @ r[1] @ r[0]


def _ctf(
    defocus_a: float, box: int, pixel_size: float, astigmatism_a: float = 0.0, angle: float = 0.0, phase_shift=0.0
) -> np.ndarray:
    """teamtomo's torch-ctf CTF (box, box), unshifted, 300 kV, Cs 2.7 mm, w 0.07; defocus and astigmatism in Å."""
    return (
        torch_ctf.calculate_ctf_2d(
            defocus=defocus_a / 1e4,
            astigmatism=astigmatism_a / 1e4,
            astigmatism_angle=angle,
            voltage=300.0,
            spherical_aberration=2.7,
            amplitude_contrast=0.07,
            phase_shift=phase_shift,
            pixel_size=pixel_size,
            image_shape=(box, box),
            rfft=False,
            fftshift=False,
        )
        .squeeze()
        .double()
        .numpy()
    )


def make_stack_set(
    outdir: Path,
    hand: float,
    n_particles: int = 40,
    box: int = 32,
    pixel_size: float = 10.0,
    tilts=(0.0, 8.0, -8.0, 16.0, -16.0, 24.0, -24.0, 32.0, -32.0, 40.0, -40.0, 48.0, -48.0),
    dose_per_tilt: float = 3.0,
    seed: int = 0,
    inverted_at_import: bool = False,
) -> tuple[Path, np.ndarray]:
    """A WarpTools ``ts_export_particles --2d`` set (optimisation set, particles STAR with optics, tomograms STAR with
    ``_rlnTomoProjX/Y/Z/W`` rows and ``_rlnTomoHand`` = ``hand``, one full 2-D stack per particle with one frame not
    visible), imaged as RELION 5 defines it, written without tomodrgn. Returns (optimisation set, true map [z, y, x]).

    RELION 5 (``Tomogram``, ``ParticleSet::getMatrix3x3``, ``Experiment::read``): the rows of ProjX/Y/Z/W are the
    tilt's 4×4 matrix P_f, mapping tomogram coordinates to image coordinates; a particle's box-local coordinates map to
    the tomogram by A_sub·A_part (``_rlnTomoSubtomogram*`` and ``_rlnAngle*``, RELION's Euler matrices transposed
    from scipy), so a reference point r lies at (R_f·A_sub·A_part·r)[:2] in the tilt image (R_f the 3×3 of P_f),
    and the projection is along the image z axis. The defocus of a particle is the tilt's _rlnDefocusU/V plus
    hand · (R_f·(position − tomogram centre))_z in Å (``Tomogram::getCtf``, defocus slope 1). Contrast as
    the map (light particles on a dark background), CTF from teamtomo's ``torch_ctf``.

    ``inverted_at_import``: the same images, described as a pipeline describes them after importing the tilt series
    with the opposite tilt-angle sign (WarpTools' ``ts_import`` with or without ``--dont_invert``, warpem/warp#74):
    every tilt matrix and particle rotation conjugated by M = diag(1, 1, −1) (the tilt angles negated), particle z
    mirrored about the tomogram centre and ``_rlnTomoHand`` = −``hand`` (its defocus check makes the depth term
    right). Projections along z cannot tell the two descriptions apart, so every tool reconstructs such a set as the
    mirror image of the specimen.
    """
    rng = np.random.default_rng(seed)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    centres, sigma, amp = gaussian_blobs(12, box, rng)
    vol = blob_volume(centres, sigma, amp, box)
    ts_px, binning = 2.5, pixel_size / 2.5
    tomo_size = (2000, 2000, 600)  # tilt-series px (x, y, z)
    tomos = {"TS_1.tomostar": (0.4, 84.0), "TS_2.tomostar": (-0.6, -93.0)}  # x tilt, z rot (°)
    n_f = len(tilts)
    order = np.argsort(tilts)  # WarpTools lists tilts by angle; pre-exposure follows the dose-symmetric order
    pre = {f: dose_per_tilt * i for i, f in enumerate(range(n_f))}
    blocks = {
        "global": pd.DataFrame(
            [
                {
                    "rlnTomoName": name,
                    "rlnTomoTiltSeriesName": "dummy_tiltseries.mrc",
                    "rlnTomoFrameCount": n_f,
                    "rlnTomoSizeX": tomo_size[0],
                    "rlnTomoSizeY": tomo_size[1],
                    "rlnTomoSizeZ": tomo_size[2],
                    "rlnTomoHand": -hand if inverted_at_import else hand,
                    "rlnOpticsGroupName": f"opticsGroup{i + 1}",
                    "rlnTomoTiltSeriesPixelSize": ts_px,
                    "rlnVoltage": 300.0,
                    "rlnSphericalAberration": 2.7,
                    "rlnAmplitudeContrast": 0.07,
                    "rlnTomoImportFractionalDose": dose_per_tilt,
                }
                for i, name in enumerate(tomos)
            ]
        )
    }
    geometry = {}
    for name, (xtilt, zrot) in tomos.items():
        rows, mats, defocus = [], [], []
        for f in order:
            r = specimen_rotation(xtilt, tilts[f], zrot)
            p = np.eye(4)
            p[:3, :3] = MIRROR @ r @ MIRROR if inverted_at_import else r
            df = 15000.0 + rng.uniform(-500, 500)
            rows.append(
                {
                    **{f"rlnTomoProj{a}": "[" + ",".join(f"{v:.9g}" for v in p[k]) + "]" for k, a in enumerate("XYZW")},
                    "rlnDefocusU": df,
                    "rlnDefocusV": df,
                    "rlnDefocusAngle": 0.0,
                    "rlnCtfScalefactor": np.cos(np.deg2rad(tilts[f])),
                    "rlnMicrographPreExposure": pre[f],
                }
            )
            mats.append(r)
            defocus.append(df)
        blocks[name] = pd.DataFrame(rows)
        geometry[name] = (mats, defocus, [pre[f] for f in order])
    starfile.write(blocks, outdir / "tomograms.star", overwrite=True)

    rows = []
    centre_px = np.array(tomo_size) / 2
    for p in range(n_particles):
        name = list(tomos)[p % len(tomos)]
        mats, defocus, doses = geometry[name]
        a_part = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix().T  # a RELION matrix
        coord = rng.uniform([200, 200, 200], [1800, 1800, 400])  # tilt-series px
        hidden = int(rng.integers(n_f))
        stack = np.zeros((n_f, box, box), np.float32)
        for f, r in enumerate(mats):
            if f == hidden:
                continue
            img = blob_projection(centres, sigma, amp, r @ a_part, box)
            depth = (r @ ((coord - centre_px) * ts_px))[2]
            ctf = _ctf(defocus[f] + hand * depth, box, pixel_size)
            img = np.fft.ifft2(np.fft.fft2(img) * ctf * exposure_filter(doses[f] + dose_per_tilt, box, pixel_size))
            stack[f] = img.real.astype(np.float32)
        tomo = name.removesuffix(".tomostar")
        image = f"stacks/{tomo}/{tomo}_{pixel_size:.2f}A_{p + 1:06d}.mrcs"
        (outdir / image).parent.mkdir(parents=True, exist_ok=True)
        with mrcfile.new(outdir / image, overwrite=True) as m:
            m.set_data(stack)
            m.set_image_stack()
            m.voxel_size = pixel_size
        if inverted_at_import:  # the description in the mirrored frame: same images, conjugated geometry
            a_part = MIRROR @ a_part @ MIRROR
            coord = MIRROR @ (coord - centre_px) + centre_px  # z mirrored about the tomogram centre
        rot, tilt, psi = Rotation.from_matrix(a_part.T).as_euler("ZYZ", degrees=True)
        rows.append(
            {
                "rlnTomoName": name,
                "rlnTomoParticleId": p + 1,
                "rlnCoordinateX": coord[0],
                "rlnCoordinateY": coord[1],
                "rlnCoordinateZ": coord[2],
                "rlnAngleRot": rot,
                "rlnAngleTilt": tilt,
                "rlnAnglePsi": psi,
                "rlnTomoParticleName": f"{tomo}/{p + 1}",
                "rlnOpticsGroup": list(tomos).index(name) + 1,
                "rlnImageName": image,
                "rlnOriginXAngst": 0.0,
                "rlnOriginYAngst": 0.0,
                "rlnOriginZAngst": 0.0,
                "rlnTomoVisibleFrames": "[" + ",".join("0" if f == hidden else "1" for f in range(n_f)) + "]",
            }
        )
    optics = pd.DataFrame(
        [
            {
                "rlnOpticsGroup": i + 1,
                "rlnOpticsGroupName": f"opticsGroup{i + 1}",
                "rlnSphericalAberration": 2.7,
                "rlnVoltage": 300.0,
                "rlnTomoTiltSeriesPixelSize": ts_px,
                "rlnCtfDataAreCtfPremultiplied": 0,
                "rlnImageDimensionality": 2,
                "rlnTomoSubtomogramBinning": binning,
                "rlnImagePixelSize": pixel_size,
                "rlnImageSize": box,
                "rlnAmplitudeContrast": 0.07,
            }
            for i in range(len(tomos))
        ]
    )
    general = {"rlnTomoSubTomosAre2DStacks": 1}
    starfile.write({"general": general, "optics": optics, "particles": pd.DataFrame(rows)}, outdir / "particles.star")
    entries = {"rlnTomoParticlesFile": "particles.star", "rlnTomoTomogramsFile": "tomograms.star"}
    starfile.write({"": entries}, outdir / "optimisation_set.star", overwrite=True)
    return outdir / "optimisation_set.star", vol
