"""Simulated sub-tomogram tilt-series datasets with ground truth (Warp/M image-series STAR + per-particle stacks).

Outputs under ``outdir``:
- ``particles/<tomo>_<NNNNN>.mrcs``: one stack per particle, its kept tilts in acquisition (dose) order;
- ``particles.star``: optics block + one row per tilt image (Warp/M image-series flavour, see
  ``docs/architecture.md``, "Particles");
- with ``format="relion5"`` also ``optimisation_set.star``, ``relion5_particles.star``, ``tomograms.star``: the same
  particles and stacks as a RELION 5 / WarpTools 2-D stack set (:mod:`tomodrgn.simulate.relion5`);
- ``volumes/class_XX.mrc``: ground-truth volumes (one per class; for ``continuous`` one per path bin, at its centre);
- ``labels.txt``: one integer label per particle (STAR particle order);
- ``truth.npz``: per-particle and per-image ground truth (see :func:`simulate_dataset`).

Default pixel size: 419.2 Å / D (a 419.2 Å box: 13.1 Å at D = 32, 6.55 Å at D = 64), as in ``docs/architecture.md``,
"Physics".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.output_dir import check_output_dir, prepare_output_dir
from tomodrgn.physics.pose import matrix_to_euler, random_rotations, tilt_about_y
from tomodrgn.simulate.forward import central_slices, filtered_images, half_grid, volume_spectra
from tomodrgn.simulate.geometry import kept_tilts, place_particles, tilt_rotations, tilt_series
from tomodrgn.simulate.phantom import render, render_particle
from tomodrgn.simulate.presets import Preset, get_preset
from tomodrgn.simulate.relion5 import HAND, tomogram_centre, write_relion5

DEFAULT_BOX_ANGSTROM = 419.2
DEFAULT_SHIFT_STD_PX = 1.5  # rms in-plane origin per axis (px) of simulated images when shift_std is None
PARTICLES_PER_TOMOGRAM = 50
_CHUNK = 128  # particles per batch (fixed: the noise stream depends on it)


@dataclass
class SimulatedDataset:
    """Paths and ground truth of a simulated dataset (see module docstring for the layout)."""

    star_path: Path
    volume_paths: list[Path]
    labels: np.ndarray
    labels_path: Path
    truth_path: Path
    pixel_size: float
    box_size: int
    particle_names: list[str]
    preset: str = "4-class"
    tomogram_names: list[str] = field(default_factory=list)
    tomogram_shape: tuple[int, int, int] = (64, 256, 256)
    warp_star_path: Path | None = None  # the Warp/M image-series particles.star (written for every format)


def _split_counts(n: int, parts: int) -> np.ndarray:
    return np.array([len(a) for a in np.array_split(np.arange(n), parts)])


def simulate_dataset(
    outdir: str | Path,
    preset: str = "4-class",
    n_particles: int = 1000,
    box_size: int = 32,
    pixel_size: float | None = None,
    n_tilts: int = 41,
    max_tilt: float = 60.0,
    tilt_step: float = 3.0,
    dose_per_tilt: float = 3.0,
    snr: float | None = 0.05,
    defocus_range: tuple[float, float] = (20000.0, 40000.0),
    drop_tilts: int = 0,
    seed: int = 0,
    voltage: float = 300.0,
    cs: float = 2.7,
    amplitude_contrast: float = 0.1,
    n_tomograms: int | None = None,
    tomogram_shape: tuple[int, int, int] | None = None,
    shift_std: float | None = None,
    astigmatism: float = 400.0,
    phase_shift: float = 0.0,
    dose_filter: bool = True,
    oversample: int = 2,
    progress: Callable[[int, int], None] | None = None,
    format: str = "warp",
    overwrite: bool = False,
) -> SimulatedDataset:
    """Simulate a tilt-series particle dataset with known structure, poses, CTF and doses.

    Units: Å (pixel size, defocus, shifts), e⁻/Å² (dose_per_tilt), degrees (tilts), kV, mm (Cs).
    ``outdir`` must be new or empty unless ``overwrite`` (then files of the same name are replaced).
    - Poses: uniform random SO(3) per particle (RELION matrices); tilt image pose tilt_about_y(θ) @ R_particle, and
      the STAR Euler angles are exactly that matrix's RELION ZYZ angles.
    - Tilts: dose-symmetric scheme, cumulative dose (i+1)·dose_per_tilt in acquisition order i; stacks and STAR rows
      per particle in acquisition order. ``drop_tilts`` > 0: each particle loses 0…drop_tilts random tilts (never
      the 0° one; remaining doses unchanged).
    - CTF: defocus uniform in ``defocus_range`` per particle, astigmatism |U − V| uniform in [0, astigmatism] Å,
      angle uniform in [0, 180)°; ``phase_shift`` (°, e.g. 90 for a Volta phase plate) added to the CTF phase of
      every image and written as ``_rlnPhaseShift``; exposure filter exp(−N/2Ne(k)) unless ``dose_filter`` is False.
    - Noise: white gaussian with variance σ₀²/cos θ, σ₀² = mean over particles of the variance (over the box) of the
      noiseless 0° image / snr. ``snr`` None or inf: noiseless.
    - Shifts: gaussian in-plane shifts with std ``shift_std`` Å per image and axis (None: 1.5 px, as real
      sub-tomogram exports have; 0: none), written as ``_rlnOriginX/YAngst``, convention of
      :func:`tomodrgn.physics.pose.shift_phase` (RELION: image = projection translated by −origin).
    - Particles are placed at random non-overlapping whole-pixel positions in ``n_tomograms`` tomograms named
      ``tomo00, tomo01, …`` of ``tomogram_shape`` (Z, Y, X) px (default (2D, 8D, 8D), ≤ 50 particles each).
    ``progress(done, total)`` is called after each batch of particles.
    - ``format``: "warp" (the Warp/M image-series ``particles.star``) or "relion5": also a RELION 5 / WarpTools 2-D
      stack set of the same images (:mod:`tomodrgn.simulate.relion5`; ``star_path`` is then its
      ``optimisation_set.star``). A tomogram can express only geometry that is shared by its particles, so
      "relion5" draws it that way, and both STARs describe it: each particle has a 3-D origin (gaussian, std
      ``shift_std`` Å per axis) whose projection into each tilt is that image's 2-D origin; the defocus of each tilt
      image is its tomogram's defocus for that tilt (per tomogram: uniform in ``defocus_range``, ± 200 Å per tilt,
      astigmatism as above) plus the particle's depth (RELION's ``_rlnTomoHand`` −1 convention), written per image
      in ``particles.star``; ``_rlnCoordinateX/Y/Z`` are the extraction points (true centre + origin / pixel size).

    truth.npz holds per particle: ``particle_names``, ``tomogram``, ``position_px`` (x, y, z), ``rotation`` (n, 3, 3),
    ``label``, ``coordinate`` (continuous path position in [0, 1], NaN for discrete presets), ``amplitudes``,
    ``offsets`` (component weights/translations in box fractions), ``defocus_u/v/angle``, ``n_tilts``; per image
    (STAR row order): ``image_particle``, ``image_tilt_index`` (acquisition index), ``image_tilt``, ``image_dose``,
    ``image_rotation``, ``image_shift`` (Å), ``image_defocus_u/v/angle``; ``origin_angstrom`` (n, 3) (3-D origins,
    zero for "warp"), ``format``; and ``tilt_scheme``, ``dose_scheme``, ``pixel_size``, ``box_size``,
    ``noise_std`` (σ₀), ``snr``, ``preset``, ``seed``, ``tomogram_names``, ``tomogram_shape``.
    """
    outdir = check_output_dir(outdir, overwrite, what="output folder")  # before the work: a used folder is refused
    d = int(box_size)
    if d % 2 or d < 8:
        raise InputError(f"box_size must be even and ≥ 8, got {box_size}")
    if n_particles < 1:
        raise InputError(f"n_particles must be ≥ 1, got {n_particles}")
    if snr is not None and not snr > 0:
        raise InputError(f"snr must be > 0 (or None/inf for noiseless), got {snr}")
    noiseless = snr is None or math.isinf(snr)
    if format not in ("warp", "relion5"):
        raise InputError(f"format must be 'warp' or 'relion5', got {format!r}")
    apix = DEFAULT_BOX_ANGSTROM / d if pixel_size is None else float(pixel_size)
    spec: Preset = get_preset(preset)
    tomogram_shape = (2 * d, 8 * d, 8 * d) if tomogram_shape is None else tuple(int(s) for s in tomogram_shape)
    if n_tomograms is None:
        n_tomograms = math.ceil(n_particles / PARTICLES_PER_TOMOGRAM)
    n_tomograms = max(1, min(int(n_tomograms), n_particles))

    r_conf, r_pose, r_ctf, r_drop, r_place, r_shift, r_noise, r_tomo = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)
    )
    angles, doses = tilt_series(n_tilts, max_tilt, tilt_step, dose_per_tilt)
    n, t = n_particles, len(angles)
    conf = spec.sample(n, r_conf)
    rot_p = random_rotations(n, r_pose)
    df = r_ctf.uniform(*defocus_range, size=n)
    astig = r_ctf.uniform(0.0, astigmatism, size=n)
    df_u, df_v, df_ang = df + astig / 2, df - astig / 2, r_ctf.uniform(0.0, 180.0, size=n)
    keep = kept_tilts(n, t, drop_tilts, r_drop)
    if shift_std is None:
        shift_std = DEFAULT_SHIFT_STD_PX * apix
    if not (shift_std >= 0 and math.isfinite(shift_std)):
        raise InputError(f"shift_std must be a finite number ≥ 0 Å, got {shift_std}")
    counts = _split_counts(n, n_tomograms)
    tomo_names = [f"tomo{i:02d}" for i in range(n_tomograms)]
    tomo_of = np.repeat(np.arange(n_tomograms), counts)
    local_idx = np.concatenate([np.arange(c) for c in counts])
    positions = np.concatenate([place_particles(int(c), tomogram_shape, d, r_place) for c in counts])
    names = [f"{tomo_names[g]}_{j:05d}" for g, j in zip(tomo_of, local_idx)]
    origins = np.zeros((n, 3))
    ctf_img = np.broadcast_to(np.stack([df_u, df_v, df_ang], -1)[:, None], (n, t, 3))
    if format == "warp":
        shifts_all = r_shift.normal(0.0, shift_std, size=(n, t, 2)) if shift_std > 0 else np.zeros((n, t, 2))
    else:  # geometry a tomogram can express (see the docstring)
        origins = r_shift.normal(0.0, shift_std, size=(n, 3)) if shift_std > 0 else origins
        rt = tilt_about_y(angles)
        shifts_all = np.einsum("tij,nj->nti", rt, origins)[..., :2]
        base = r_tomo.uniform(*defocus_range, size=(n_tomograms, 1)) + r_tomo.normal(0.0, 200.0, (n_tomograms, t))
        astig_t = r_tomo.uniform(0.0, astigmatism, size=(n_tomograms, 1))
        tilt_defocus = np.stack(
            [
                base + astig_t / 2,
                base - astig_t / 2,
                np.broadcast_to(r_tomo.uniform(0, 180, (n_tomograms, 1)), base.shape),
            ],
            axis=-1,
        )
        centred = (positions - tomogram_centre(tomogram_shape)) * apix
        depth = HAND * np.einsum("tj,nj->nt", rt[:, 2], centred)
        ctf_img = tilt_defocus[tomo_of] + np.stack([depth, depth, np.zeros_like(depth)], -1)

    # ground-truth volumes
    prepare_output_dir(outdir, overwrite, what="output folder")  # a non-empty folder needs overwrite
    (outdir / "volumes").mkdir(parents=True, exist_ok=True)
    (outdir / "particles").mkdir(parents=True, exist_ok=True)
    ref = spec.reference
    ref_vols = np.stack(
        [render_particle(spec.phantom, d, ref.amplitudes[k], ref.offsets[k] * d) for k in range(len(ref.labels))]
    )
    volume_paths = [
        write_mrc(outdir / "volumes" / f"class_{k:02d}.mrc", v, apix) for k, v in enumerate(ref_vols.astype(np.float32))
    ]
    discrete = np.all(conf.offsets == 0)
    if discrete:
        spectra = volume_spectra(ref_vols, oversample)
    else:
        spectra = volume_spectra(np.stack([render(b, d) for b in spec.phantom.components]), oversample)
    coords = torch.from_numpy(half_grid(d)[0].astype(np.float64))
    rot_t = tilt_rotations(rot_p, angles)  # (n, T, 3, 3)
    ctf_all = np.concatenate(
        [ctf_img, np.broadcast_to(np.array([voltage, cs, amplitude_contrast, float(phase_shift)]), (n, t, 4))], axis=-1
    )  # (n, T, 7) per image

    def images(pi: np.ndarray, ti: np.ndarray) -> torch.Tensor:
        """Noiseless images for (particle, tilt) index pairs."""
        rots = torch.from_numpy(rot_t[pi, ti])
        if discrete:
            sl = central_slices(spectra, rots, coords, volume_index=conf.labels[pi])
        else:
            sl = central_slices(
                spectra, rots, coords, amplitudes=torch.from_numpy(conf.amplitudes[pi]),
                offsets_px=torch.from_numpy(conf.offsets[pi] * d),
            )  # fmt: skip
        return filtered_images(
            sl, apix, d, ctf_all[pi, ti], doses[ti] if dose_filter else None,
            shifts_all[pi, ti] if shift_std > 0 else None, voltage,
        )  # fmt: skip

    noise_std = 0.0
    if not noiseless:
        zero = int(np.argmin(np.abs(angles)))
        var0 = []
        for s in range(0, n, _CHUNK * 8):
            pi = np.arange(s, min(n, s + _CHUNK * 8))
            var0.append(images(pi, np.full(len(pi), zero)).double().var(dim=(-2, -1), unbiased=False))
        noise_std = float(torch.cat(var0).mean() / snr) ** 0.5
    gen = torch.Generator().manual_seed(int(r_noise.integers(2**62)))

    cos_t = np.cos(np.deg2rad(angles))
    img_particle, img_tilt = [], []
    for s in range(0, n, _CHUNK):
        pis = np.arange(s, min(n, s + _CHUNK))
        pi, ti = np.nonzero(keep[pis])
        pi = pis[pi]
        imgs = images(pi, ti)
        if not noiseless:
            scale = torch.from_numpy(noise_std / np.sqrt(cos_t[ti])).to(imgs.dtype)[:, None, None]
            imgs = imgs + scale * torch.randn(imgs.shape, generator=gen, dtype=imgs.dtype)
        arr = imgs.numpy()
        bounds = np.concatenate([[0], np.cumsum(keep[pis].sum(1))])
        for j, p in enumerate(pis):
            write_mrc(outdir / "particles" / f"{names[p]}.mrcs", arr[bounds[j] : bounds[j + 1]], apix, is_stack=True)
        img_particle.append(pi)
        img_tilt.append(ti)
        if progress is not None:
            progress(int(pis[-1] + 1), n)
    img_particle = np.concatenate(img_particle)
    img_tilt = np.concatenate(img_tilt)
    # 1-based position of each image within its particle's stack
    stack_index = np.concatenate([np.arange(1, c + 1) for c in keep.sum(1)])

    img_rot = rot_t[img_particle, img_tilt]
    rot_e, tilt_e, psi_e = matrix_to_euler(img_rot)
    img_shift = shifts_all[img_particle, img_tilt]
    img_dose = doses[img_tilt]
    img_angle = angles[img_tilt]
    img_ctf = ctf_img[img_particle, img_tilt]
    extraction = positions + origins / apix  # box centres: true centre + origin (RELION: centre = coordinate − origin)
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{k}@particles/{names[p]}.mrcs" for k, p in zip(stack_index, img_particle)],
            "rlnGroupName": [names[p] for p in img_particle],
            "rlnMicrographName": [tomo_names[tomo_of[p]] for p in img_particle],
            "rlnCoordinateX": extraction[img_particle, 0],
            "rlnCoordinateY": extraction[img_particle, 1],
            "rlnCoordinateZ": extraction[img_particle, 2],
            "rlnAngleRot": rot_e,
            "rlnAngleTilt": tilt_e,
            "rlnAnglePsi": psi_e,
            "rlnOriginXAngst": img_shift[:, 0],
            "rlnOriginYAngst": img_shift[:, 1],
            "rlnDefocusU": img_ctf[:, 0],
            "rlnDefocusV": img_ctf[:, 1],
            "rlnDefocusAngle": img_ctf[:, 2],
            "rlnPhaseShift": np.full(len(img_particle), float(phase_shift)),
            "rlnCtfBfactor": -4.0 * img_dose,
            "rlnCtfScalefactor": np.cos(np.deg2rad(img_angle)),
            "rlnOpticsGroup": np.ones(len(img_particle), dtype=np.int64),
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnImagePixelSize": [apix],
            "rlnImageSize": [d],
            "rlnImageDimensionality": [2],
            "rlnVoltage": [float(voltage)],
            "rlnSphericalAberration": [float(cs)],
            "rlnAmplitudeContrast": [float(amplitude_contrast)],
        }
    )
    star_path = outdir / "particles.star"
    starfile.write({"optics": optics, "particles": particles}, star_path, overwrite=True, float_format="%.6f")
    if format == "relion5":
        star_path = write_relion5(
            outdir, particle_names=names, tomogram_names=tomo_names, tomogram_of=tomo_of, extraction_px=extraction,
            origin=origins, rotation=rot_p, tilt_deg=angles, dose=doses, keep=keep, tilt_defocus=tilt_defocus,
            pixel_size=apix, box_size=d, tomogram_shape=tomogram_shape, voltage=voltage, cs=cs,
            amplitude_contrast=amplitude_contrast, stack_names=[f"particles/{p}.mrcs" for p in names],
            phase_shift=phase_shift,
        )  # fmt: skip
    labels_path = outdir / "labels.txt"
    np.savetxt(labels_path, conf.labels, fmt="%d")
    truth_path = outdir / "truth.npz"
    np.savez(
        truth_path,
        particle_names=np.array(names),
        tomogram=tomo_of,
        position_px=positions,
        rotation=rot_p,
        label=conf.labels,
        coordinate=conf.coordinate,
        amplitudes=conf.amplitudes,
        offsets=conf.offsets,
        defocus_u=df_u,
        defocus_v=df_v,
        defocus_angle=df_ang,
        n_tilts=keep.sum(1),
        image_particle=img_particle,
        image_tilt_index=img_tilt,
        image_tilt=img_angle,
        image_dose=img_dose,
        image_rotation=img_rot,
        image_shift=img_shift,
        image_defocus_u=img_ctf[:, 0],
        image_defocus_v=img_ctf[:, 1],
        image_defocus_angle=img_ctf[:, 2],
        origin_angstrom=origins,
        format=format,
        tilt_scheme=angles,
        dose_scheme=doses,
        pixel_size=apix,
        box_size=d,
        noise_std=noise_std,
        snr=np.inf if noiseless else float(snr),
        preset=spec.name,
        seed=seed,
        tomogram_names=np.array(tomo_names),
        tomogram_shape=np.array(tomogram_shape),
    )
    return SimulatedDataset(
        star_path=star_path,
        volume_paths=volume_paths,
        labels=np.asarray(conf.labels, dtype=np.int64),
        labels_path=labels_path,
        truth_path=truth_path,
        pixel_size=apix,
        box_size=d,
        particle_names=names,
        preset=spec.name,
        tomogram_names=tomo_names,
        tomogram_shape=tomogram_shape,
        warp_star_path=outdir / "particles.star",
    )
