"""Simulated sub-tomogram tilt-series datasets with ground truth (Warp/M image-series STAR + per-particle stacks).

Outputs under ``outdir``:
- ``particles/<tomo>_<NNNNN>.mrcs``: one stack per particle, its kept tilts in acquisition (dose) order;
- ``particles.star``: optics block + one row per tilt image (Warp/M image-series flavour, see
  ``docs/architecture.md``, "Particles");
- with ``format="relion5"`` also ``optimisation_set.star``, ``relion5_particles.star``, ``tomograms.star``: the same
  particles and stacks as a RELION 5 / WarpTools 2-D stack set (:mod:`tomodrgn.simulate.relion5`);
- ``volumes/class_XX.mrc``: ground-truth volumes (one per class; for ``continuous`` one per path bin, at its centre);
- ``labels.txt``: one integer label per particle (STAR particle order);
- ``truth.npz``: per-particle and per-image ground truth. Per particle: ``particle_names``, ``tomogram``,
  ``position_px`` (x, y, z), ``rotation`` (n, 3, 3), ``label``, ``coordinate`` (continuous path position in [0, 1],
  NaN for discrete presets), ``amplitudes``, ``offsets`` (component weights/translations in box fractions),
  ``defocus_u/v/angle``, ``n_tilts``; per image (STAR row order): ``image_particle``, ``image_tilt_index``
  (acquisition index), ``image_tilt``, ``image_dose``, ``image_rotation``, ``image_shift`` (Å),
  ``image_defocus_u/v/angle``; ``origin_angstrom`` (n, 3) (3-D origins, zero for "warp"), ``format``; and
  ``tilt_scheme``, ``dose_scheme``, ``pixel_size``, ``box_size``, ``noise_std`` (σ₀), ``snr``, ``preset``, ``seed``,
  ``tomogram_names``, ``tomogram_shape``. ``rotation``, ``image_rotation``, ``image_shift`` and ``origin_angstrom``
  are the true poses, those the images were made with. Pose errors (:mod:`tomodrgn.simulate.pose_errors`; all zero
  or identity without them): the scales ``pose_error_deg`` (°), ``pose_error_px``, ``tilt_shift_error_px`` (px);
  per particle the errors drawn, ``rotation_error`` (n, 3, 3) ΔR and its angle ``rotation_error_deg`` (°),
  ``origin_error_angstrom`` (n, 3) e, and the poses written, ``star_rotation`` (n, 3, 3) = ΔR · ``rotation`` and
  ``star_origin_angstrom`` (n, 3) = ``origin_angstrom`` + e; per image (STAR row order) ``image_shift_error``
  (N, 2) Å δ, and the Warp/M rows' pose ``image_star_rotation`` (N, 3, 3) and origin ``image_star_shift`` (N, 2) Å
  (what :func:`tomodrgn.io.particles.read_particles` reads from ``particles.star``).

Default pixel size: 419.2 Å / D (a 419.2 Å box: 13.1 Å at D = 32, 6.55 Å at D = 64), as in ``docs/architecture.md``,
"Physics".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.output_dir import check_output_dir, prepare_output_dir
from tomodrgn.physics.pose import matrix_to_euler
from tomodrgn.simulate.forward import central_slices, filtered_images, half_grid, volume_spectra
from tomodrgn.simulate.phantom import render, render_particle
from tomodrgn.simulate.pose_errors import PoseErrors, StarPoses, draw_pose_errors, star_poses, warn_relion5_tilt_shifts
from tomodrgn.simulate.relion5 import write_relion5
from tomodrgn.simulate.truth import SimulationSpec, Truth, draw_truth

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
    float16: bool = False,
    overwrite: bool = False,
    pose_error_deg: float = 0.0,
    pose_error_px: float = 0.0,
    tilt_shift_error_px: float = 0.0,
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
    - ``float16``: particle stacks in MRC mode 12 (half the disk; as RELION writes with ``--float16``); the rounding
      (relative 2⁻¹¹) is far below the noise. Ground-truth volumes stay float32.
    - ``pose_error_deg`` (° rms), ``pose_error_px``, ``tilt_shift_error_px`` (px rms per axis; 0: none): the STARs'
      poses carry upstream errors, the images keep the true ones (:mod:`tomodrgn.simulate.pose_errors`).

    The files written, and the keys of ``truth.npz``, are listed in the module docstring.
    """
    outdir = check_output_dir(outdir, overwrite, what="output folder")  # before the work: a used folder is refused
    spec = SimulationSpec(
        preset=preset, n_particles=n_particles, box_size=box_size, pixel_size=pixel_size, n_tilts=n_tilts,
        max_tilt=max_tilt, tilt_step=tilt_step, dose_per_tilt=dose_per_tilt, snr=snr, defocus_range=defocus_range,
        drop_tilts=drop_tilts, seed=seed, voltage=voltage, cs=cs, amplitude_contrast=amplitude_contrast,
        n_tomograms=n_tomograms, tomogram_shape=tomogram_shape, shift_std=shift_std, astigmatism=astigmatism,
        phase_shift=phase_shift, dose_filter=dose_filter, oversample=oversample, format=format,
        float16=float16, pose_error_deg=pose_error_deg, pose_error_px=pose_error_px,
        tilt_shift_error_px=tilt_shift_error_px,
    ).resolved()  # fmt: skip
    warn_relion5_tilt_shifts(spec)
    truth = draw_truth(spec)
    return _write_dataset(spec, truth, outdir, overwrite, progress)


def _write_dataset(
    spec: SimulationSpec,
    truth: Truth,
    outdir: Path,
    overwrite: bool,
    progress: Callable[[int, int], None] | None,
) -> SimulatedDataset:
    """Prepare ``outdir`` (a non-empty folder needs ``overwrite``), then write the ground-truth volumes, the
    particle stacks (``progress(done, total)`` after each batch) and the metadata of the drawn ``truth``."""
    prepare_output_dir(outdir, overwrite, what="output folder")  # a non-empty folder needs overwrite
    ref_vols = reference_volumes(spec, truth)
    volume_paths = write_reference_volumes(spec, ref_vols, outdir)
    images = render_stacks(spec, truth, ref_vols, outdir, progress)
    return write_metadata(spec, truth, images, outdir, volume_paths)


@dataclass
class _Images:
    """The images written: (particle, tilt-scheme index) of each, in STAR row order, and the noise σ₀."""

    particle: np.ndarray
    tilt: np.ndarray
    noise_std: float


def reference_volumes(spec: SimulationSpec, truth: Truth) -> np.ndarray:
    """The ground-truth volumes (K, D, D, D), one per reference conformation of the preset."""
    ref, d = truth.preset.reference, spec.box_size
    return np.stack(
        [
            render_particle(truth.preset.phantom, d, ref.amplitudes[k], ref.offsets[k] * d)
            for k in range(len(ref.labels))
        ]
    )


def write_reference_volumes(spec: SimulationSpec, ref_vols: np.ndarray, outdir: Path) -> list[Path]:
    """``volumes/class_XX.mrc``: one ground-truth volume per reference conformation."""
    (outdir / "volumes").mkdir(parents=True, exist_ok=True)
    return [write_mrc(outdir / "volumes" / f"class_{k:02d}.mrc", v, spec.pixel_size)
            for k, v in enumerate(ref_vols.astype(np.float32))]  # fmt: skip


def _image_renderer(
    spec: SimulationSpec, truth: Truth, ref_vols: np.ndarray
) -> Callable[[np.ndarray, np.ndarray], torch.Tensor]:
    """``images(particles, tilts)``: the noiseless images of (particle, tilt-scheme index) pairs; discrete presets
    are rendered from ``ref_vols``, continuous ones from the phantom's components."""
    d, apix, conf = spec.box_size, spec.pixel_size, truth.conf
    discrete = bool(np.all(conf.offsets == 0))
    if discrete:
        vols = ref_vols
    else:
        vols = np.stack([render(b, d) for b in truth.preset.phantom.components])
    spectra = volume_spectra(vols, spec.oversample)
    coords = torch.from_numpy(half_grid(d)[0].astype(np.float64))
    n, t = truth.keep.shape
    optics = np.array([spec.voltage, spec.cs, spec.amplitude_contrast, float(spec.phase_shift)])
    ctf_all = np.concatenate([truth.ctf, np.broadcast_to(optics, (n, t, 4))], axis=-1)  # (n, T, 7) per image

    def images(pi: np.ndarray, ti: np.ndarray) -> torch.Tensor:
        rots = torch.from_numpy(truth.tilt_rotation[pi, ti])
        if discrete:
            sl = central_slices(spectra, rots, coords, volume_index=conf.labels[pi])
        else:
            sl = central_slices(
                spectra, rots, coords, amplitudes=torch.from_numpy(conf.amplitudes[pi]),
                offsets_px=torch.from_numpy(conf.offsets[pi] * d),
            )  # fmt: skip
        return filtered_images(
            sl, apix, d, ctf_all[pi, ti], truth.doses[ti] if spec.dose_filter else None,
            truth.shifts[pi, ti] if spec.shift_std > 0 else None, spec.voltage,
        )  # fmt: skip

    return images


def noise_level(spec: SimulationSpec, truth: Truth, images) -> float:
    """σ₀ = sqrt(mean over particles of the variance of the noiseless 0° image / snr) (0 when noiseless)."""
    if spec.noiseless:
        return 0.0
    n = spec.n_particles
    zero = int(np.argmin(np.abs(truth.angles)))
    var0 = []
    for s in range(0, n, _CHUNK * 8):
        pi = np.arange(s, min(n, s + _CHUNK * 8))
        var0.append(images(pi, np.full(len(pi), zero)).double().var(dim=(-2, -1), unbiased=False))
    return float(torch.cat(var0).mean() / spec.snr) ** 0.5


def render_stacks(spec: SimulationSpec, truth: Truth, ref_vols: np.ndarray, outdir: Path, progress=None) -> _Images:
    """``particles/<name>.mrcs``: each particle's kept tilts in acquisition order, with noise of variance σ₀²/cos θ,
    rendered and written _CHUNK particles at a time (memory bounded); ``progress(done, total)`` after each batch."""
    (outdir / "particles").mkdir(parents=True, exist_ok=True)
    images = _image_renderer(spec, truth, ref_vols)
    noise_std = noise_level(spec, truth, images)
    gen = torch.Generator().manual_seed(truth.noise_seed)
    cos_t = np.cos(np.deg2rad(truth.angles))
    n, keep = spec.n_particles, truth.keep
    stack_dtype = "float16" if spec.float16 else "float32"
    img_particle, img_tilt = [], []
    for s in range(0, n, _CHUNK):
        pis = np.arange(s, min(n, s + _CHUNK))
        pi, ti = np.nonzero(keep[pis])
        pi = pis[pi]
        imgs = images(pi, ti)
        if not spec.noiseless:
            scale = torch.from_numpy(noise_std / np.sqrt(cos_t[ti])).to(imgs.dtype)[:, None, None]
            imgs = imgs + scale * torch.randn(imgs.shape, generator=gen, dtype=imgs.dtype)
        arr = imgs.numpy()
        bounds = np.concatenate([[0], np.cumsum(keep[pis].sum(1))])
        for j, p in enumerate(pis):
            path = outdir / "particles" / f"{truth.names[p]}.mrcs"
            write_mrc(path, arr[bounds[j] : bounds[j + 1]], spec.pixel_size, is_stack=True, dtype=stack_dtype)
        img_particle.append(pi)
        img_tilt.append(ti)
        if progress is not None:
            progress(int(pis[-1] + 1), n)
    return _Images(np.concatenate(img_particle), np.concatenate(img_tilt), noise_std)


def _particles_table(
    spec: SimulationSpec, truth: Truth, images: _Images, extraction: np.ndarray, poses: StarPoses
) -> pd.DataFrame:
    """The Warp/M image-series rows: one per image, in stack order, with the poses and origins of ``poses``."""
    p_of, t_of = images.particle, images.tilt
    stack_index = np.concatenate([np.arange(1, c + 1) for c in truth.keep.sum(1)])  # 1-based, within each stack
    rot_e, tilt_e, psi_e = matrix_to_euler(poses.tilt_rotation[p_of, t_of])
    shift, ctf, dose = poses.shifts[p_of, t_of], truth.ctf[p_of, t_of], truth.doses[t_of]
    names = truth.names
    return pd.DataFrame(
        {
            "rlnImageName": [f"{k}@particles/{names[p]}.mrcs" for k, p in zip(stack_index, p_of)],
            "rlnGroupName": [names[p] for p in p_of],
            "rlnMicrographName": [truth.tomogram_names[truth.tomogram_of[p]] for p in p_of],
            "rlnCoordinateX": extraction[p_of, 0],
            "rlnCoordinateY": extraction[p_of, 1],
            "rlnCoordinateZ": extraction[p_of, 2],
            "rlnAngleRot": rot_e,
            "rlnAngleTilt": tilt_e,
            "rlnAnglePsi": psi_e,
            "rlnOriginXAngst": shift[:, 0],
            "rlnOriginYAngst": shift[:, 1],
            "rlnDefocusU": ctf[:, 0],
            "rlnDefocusV": ctf[:, 1],
            "rlnDefocusAngle": ctf[:, 2],
            "rlnPhaseShift": np.full(len(p_of), float(spec.phase_shift)),
            "rlnCtfBfactor": -4.0 * dose,
            "rlnCtfScalefactor": np.cos(np.deg2rad(truth.angles[t_of])),
            "rlnOpticsGroup": np.ones(len(p_of), dtype=np.int64),
        }
    )


def write_metadata(
    spec: SimulationSpec, truth: Truth, images: _Images, outdir: Path, volume_paths: list[Path]
) -> SimulatedDataset:
    """``particles.star`` (optics + one row per image), the RELION 5 set (``format="relion5"``), ``labels.txt`` and
    ``truth.npz`` (see the module docstring); the STARs hold the poses with the spec's errors
    (:mod:`tomodrgn.simulate.pose_errors`), the stacks were made with the true ones."""
    d, apix, names = spec.box_size, spec.pixel_size, truth.names
    extraction = (
        truth.positions + truth.origins / apix
    )  # box centres: true centre + origin (RELION: centre = coordinate − origin)
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnImagePixelSize": [apix],
            "rlnImageSize": [d],
            "rlnImageDimensionality": [2],
            "rlnVoltage": [float(spec.voltage)],
            "rlnSphericalAberration": [float(spec.cs)],
            "rlnAmplitudeContrast": [float(spec.amplitude_contrast)],
        }
    )
    star_path = outdir / "particles.star"
    errors = draw_pose_errors(spec, truth)
    poses = star_poses(spec, truth, errors)
    particles = _particles_table(spec, truth, images, extraction, poses)
    starfile.write({"optics": optics, "particles": particles}, star_path, overwrite=True, float_format="%.6f")
    if spec.format == "relion5":
        star_path = write_relion5(
            outdir, particle_names=names, tomogram_names=truth.tomogram_names, tomogram_of=truth.tomogram_of,
            extraction_px=extraction, origin=poses.origins, rotation=poses.rotation, tilt_deg=truth.angles,
            dose=truth.doses, keep=truth.keep, tilt_defocus=truth.tilt_defocus, pixel_size=apix, box_size=d,
            tomogram_shape=spec.tomogram_shape, voltage=spec.voltage, cs=spec.cs,
            amplitude_contrast=spec.amplitude_contrast, stack_names=[f"particles/{p}.mrcs" for p in names],
            phase_shift=spec.phase_shift,
        )  # fmt: skip
    labels_path = outdir / "labels.txt"
    np.savetxt(labels_path, truth.conf.labels, fmt="%d")
    truth_path = _write_truth(spec, truth, images, outdir / "truth.npz", errors, poses)
    return SimulatedDataset(
        star_path=star_path,
        volume_paths=volume_paths,
        labels=np.asarray(truth.conf.labels, dtype=np.int64),
        labels_path=labels_path,
        truth_path=truth_path,
        pixel_size=apix,
        box_size=d,
        particle_names=names,
        preset=truth.preset.name,
        tomogram_names=truth.tomogram_names,
        tomogram_shape=spec.tomogram_shape,
        warp_star_path=outdir / "particles.star",
    )


def _write_truth(
    spec: SimulationSpec, truth: Truth, images: _Images, path: Path, errors: PoseErrors, poses: StarPoses
) -> Path:
    """``truth.npz`` at ``path`` (its keys: see the module docstring); returns ``path``."""
    p_of, t_of = images.particle, images.tilt
    ctf, conf = truth.ctf[p_of, t_of], truth.conf
    np.savez(
        path,
        particle_names=np.array(truth.names),
        tomogram=truth.tomogram_of,
        position_px=truth.positions,
        rotation=truth.rotation,
        label=conf.labels,
        coordinate=conf.coordinate,
        amplitudes=conf.amplitudes,
        offsets=conf.offsets,
        defocus_u=truth.defocus[:, 0],
        defocus_v=truth.defocus[:, 1],
        defocus_angle=truth.defocus[:, 2],
        n_tilts=truth.keep.sum(1),
        image_particle=p_of,
        image_tilt_index=t_of,
        image_tilt=truth.angles[t_of],
        image_dose=truth.doses[t_of],
        image_rotation=truth.tilt_rotation[p_of, t_of],
        image_shift=truth.shifts[p_of, t_of],
        image_defocus_u=ctf[:, 0],
        image_defocus_v=ctf[:, 1],
        image_defocus_angle=ctf[:, 2],
        origin_angstrom=truth.origins,
        format=spec.format,
        tilt_scheme=truth.angles,
        dose_scheme=truth.doses,
        pixel_size=spec.pixel_size,
        box_size=spec.box_size,
        noise_std=images.noise_std,
        snr=np.inf if spec.noiseless else float(spec.snr),
        preset=truth.preset.name,
        seed=spec.seed,
        tomogram_names=np.array(truth.tomogram_names),
        tomogram_shape=np.array(spec.tomogram_shape),
        pose_error_deg=float(spec.pose_error_deg),
        pose_error_px=float(spec.pose_error_px),
        tilt_shift_error_px=float(spec.tilt_shift_error_px),
        rotation_error=errors.rotation,
        rotation_error_deg=errors.angle_deg,
        origin_error_angstrom=errors.origin,
        image_shift_error=errors.tilt_shift[p_of, t_of],
        star_rotation=poses.rotation,
        star_origin_angstrom=poses.origins,
        image_star_rotation=poses.tilt_rotation[p_of, t_of],
        image_star_shift=poses.shifts[p_of, t_of],
    )
    return path
