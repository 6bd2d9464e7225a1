"""``tomodrgn backproject``: half maps, full map, FSC, density sign and PNGs from a particle STAR file.

Outputs in ``outdir``: ``backproject.mrc`` (full map, unfiltered), ``backproject_half1.mrc`` /
``backproject_half2.mrc`` (random particle halves, seeded), ``backproject_filt.mrc`` (full map low-passed to
``lowpass`` Å, default the half-map FSC = 0.143 resolution), ``fsc.txt`` and ``fsc.png`` (half-map FSC in a soft
spherical mask of radius 0.4·D), ``slices.png`` (central slices of the filtered map). Maps are D³ [z, y, x] with
the particle's rotation origin at voxel D/2 and the stacks' pixel size, in the hand RELION gives the same particles
(``docs/architecture.md``, "Hand"); ``flip_hand`` writes every map mirrored. With ``reference``: the map is compared
with the user's map as is, mirrored, inverted and both (:mod:`tomodrgn.reconstruct.reference_check`), reported in
``reference_check.txt``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tomodrgn.analysis.metrics import fsc, resolution_at
from tomodrgn.analysis.plots import plot_fsc
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.output_dir import prepare_output_dir
from tomodrgn.io.particles import ParticleSeries, read_particles
from tomodrgn.io.selection import chosen_indices
from tomodrgn.physics.hand import flip_hand as mirror
from tomodrgn.reconstruct.backproject import (
    CTF_MODES,
    INSERTIONS,
    insert_slices,
    lowpass_volume,
    prepare_slices,
    real_volume,
    zero_accumulators,
)
from tomodrgn.reconstruct.reference_check import (
    Reference,
    ReferenceCheck,
    check_against_reference,
    load_reference,
    resolve_reference,
    write_reference_check,
)
from tomodrgn.reconstruct.report import (
    density_contrast,
    density_sign,
    plot_central_slices,
    spherical_mask,
    write_fsc_table,
)
from tomodrgn.runtime.device import resolve_device

PHASE_FLIP_REGULARIZER = 0.01  # added to the accumulated weights (units: one image's full weight)


@dataclass
class BackprojectResult:
    """Paths and numbers of a back-projection (see the module docstring).

    ``density_sign`` is "positive", "negative" or "unclear" (from ``density_contrast``, see
    :func:`tomodrgn.reconstruct.report.density_contrast`); ``suggestion`` is a hint for the user or None.
    """

    map_path: Path
    half_map_paths: tuple[Path, Path]
    filtered_map_path: Path
    fsc_path: Path
    fsc_plot_path: Path
    slices_path: Path
    freq: np.ndarray
    fsc: np.ndarray
    resolution_0143: float
    resolution_05: float
    lowpass: float
    density_sign: str
    density_contrast: float
    suggestion: str | None
    n_particles: int
    n_images: int
    pixel_size: float
    box_size: int
    flip_hand: bool = False
    reference_check: ReferenceCheck | None = None
    reference_check_path: Path | None = None

    @property
    def paths(self) -> list[Path]:
        extra = [self.reference_check_path] if self.reference_check_path is not None else []
        return [self.map_path, *self.half_map_paths, self.filtered_map_path, self.fsc_path, self.fsc_plot_path,
                self.slices_path, *extra]  # fmt: skip


def _particles_to_use(n_particles: int, indices, first: int | None) -> np.ndarray:
    """:func:`tomodrgn.io.selection.chosen_indices`, at least two (for two half maps)."""
    chosen = chosen_indices(n_particles, first, indices)
    if len(chosen) < 2:
        raise InputError(f"back-projection needs at least 2 particles (for two half maps), got {len(chosen)}")
    return chosen


def split_halves(particles: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random halves of the particle indices (each sorted; the first gets ⌊n/2⌋), reproducible from ``seed``."""
    perm = np.random.default_rng(seed).permutation(len(particles))
    half = len(particles) // 2
    return np.sort(particles[perm[:half]]), np.sort(particles[perm[half:]])


def accumulate(
    series: ParticleSeries,
    particles: np.ndarray,
    numerator: torch.Tensor,
    weight: torch.Tensor,
    *,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
    **options,
) -> int:
    """Insert all tilt images of ``particles`` into the accumulators, ``batch_size`` images at a time, read lazily
    in file order. ``options`` go to
    :func:`prepare_slices` (ctf, invert) and :func:`insert_slices` (insertion); ``dose_weight`` / ``tilt_weight``
    (bool) switch those weights on. ``progress(n)`` is called with the images done in each batch.
    Returns the number of images inserted."""
    insertion = options.pop("insertion", "trilinear")
    dose_weight, tilt_weight = options.pop("dose_weight", False), options.pop("tilt_weight", False)
    rows = np.sort(np.concatenate([series.image_indices[p] for p in particles]))
    device = numerator.device
    for start in range(0, len(rows), batch_size):
        r = rows[start : start + batch_size]
        images = torch.from_numpy(series.read_images(r)).to(device)
        for volt in np.unique(series.voltage[r]):
            sel = np.flatnonzero(series.voltage[r] == volt)
            rr = r[sel]
            values, weights, positions = prepare_slices(
                images[torch.from_numpy(sel).to(device)],
                series.pixel_size,
                torch.from_numpy(series.rotation[rr]),
                torch.from_numpy(series.shift[rr]),
                torch.from_numpy(series.ctf_params(rr, power=True)),
                dose=torch.from_numpy(series.dose[rr]) if dose_weight else None,
                tilt=torch.from_numpy(series.tilt[rr]) if tilt_weight else None,
                voltage=float(volt),
                **options,
            )
            insert_slices(numerator, weight, positions, values, weights, insertion)
        if progress is not None:
            progress(len(r))
    return len(rows)


def _check_options(ctf: str, insertion: str, wiener_constant: float, lowpass: float | None) -> None:
    if ctf not in CTF_MODES:
        raise InputError(f"--ctf must be one of {', '.join(CTF_MODES)}, got {ctf!r}")
    if insertion not in INSERTIONS:
        raise InputError(f"--insertion must be one of {', '.join(INSERTIONS)}, got {insertion!r}")
    if not wiener_constant > 0:
        raise InputError(f"--wiener-constant must be > 0, got {wiener_constant}")
    if lowpass is not None and not lowpass > 0:
        raise InputError(f"--lowpass must be a resolution > 0 Å, got {lowpass}")


def _reconstruct(series, particles, seed, dev, batch_size, reg, progress, options):
    """(two half maps, the full map, images inserted): each seeded half-set of ``particles`` accumulated into its
    own Fourier accumulator; ``progress(done, total)`` counts images."""
    total = int(sum(len(series.image_indices[p]) for p in particles))
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    accs = []
    for half in split_halves(particles, seed):
        num, w = zero_accumulators(series.box_size, dev)
        accumulate(series, half, num, w, batch_size=batch_size, progress=tick, **options)
        accs.append((num, w))
    half_maps = [real_volume(num, w, reg) for num, w in accs]
    full = real_volume(accs[0][0] + accs[1][0], accs[0][1] + accs[1][1], reg)
    return half_maps, full, total


def _density_suggestion(sign: str, invert: bool) -> str | None:
    """What to do about a negative or unclear density sign (None when positive)."""
    if sign == "negative":
        if not invert:
            return "the map's density is negative: the particles look dark as read; run again with --invert"
        return "the map's density is negative with --invert: run again without --invert"
    if sign == "unclear":
        return "the density sign is unclear: check poses, origins and particle centring (or use more particles)"
    return None


def _read_series(
    star: str | Path | ParticleSeries,
    pixel_size: float | None,
    datadir: str | Path | None,
    tomograms_star: str | Path | None,
    ctf: str = "phase-flip",
    dose_weight: bool = False,
) -> ParticleSeries:
    """The particles: ``star`` itself when a :class:`ParticleSeries`, else read from the STAR path with
    :func:`read_particles` (``pixel_size`` Å, ``datadir`` and ``tomograms_star`` passed on; the CTF columns not
    read with ``ctf`` "none", the dose columns' absence warned about only with ``dose_weight``)."""
    if isinstance(star, ParticleSeries):
        return star
    return read_particles(
        star,
        pixel_size=pixel_size,
        datadir=datadir,
        tomograms_star=tomograms_star,
        ctf="none" if ctf == "none" else "auto",
        dose="auto" if dose_weight else "unused",
    )


def _half_map_fsc(
    half_maps: list[np.ndarray], pixel_size: float, box_size: int, lowpass: float | None
) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(freq Å⁻¹, FSC, resolution at FSC = 0.143 Å, at 0.5 Å, low-pass cutoff Å) of the two half maps (D³,
    ``pixel_size`` Å/px) in a soft spherical mask of radius 0.4·D; the cutoff is ``lowpass``, default the 0.143
    resolution."""
    freq, curve = fsc(half_maps[0], half_maps[1], pixel_size, mask=spherical_mask(box_size))
    res143, res05 = resolution_at(freq, curve, 0.143), resolution_at(freq, curve, 0.5)
    cutoff = lowpass if lowpass is not None else res143
    return freq, curve, res143, res05, cutoff


def _write_map_files(
    outdir: Path,
    name: str,
    full: np.ndarray,
    half_maps: list[np.ndarray],
    filtered: np.ndarray,
    pixel_size: float,
    fsc_curve: tuple[np.ndarray, np.ndarray],
    res143: float,
    cutoff: float,
    sign: str,
) -> dict[str, Path]:
    """Write the maps (``NAME.mrc``, ``NAME_half1/2.mrc``, ``NAME_filt.mrc``, ``pixel_size`` Å/px), the FSC table
    and plot (``fsc_curve`` = (freq Å⁻¹, FSC); resolution ``res143`` Å) and the filtered map's central slices
    (``cutoff`` Å, density ``sign``), in this order; the FSC and slice files are prefixed ``NAME_`` unless ``name``
    is the default. Returns their paths by key: map, half1, half2, filt, fsc, fsc_png, slices."""
    freq, curve = fsc_curve
    other = "" if name == "backproject" else f"{name}_"  # the FSC and slice files of a map named otherwise
    return {
        "map": write_mrc(outdir / f"{name}.mrc", full, pixel_size),
        "half1": write_mrc(outdir / f"{name}_half1.mrc", half_maps[0], pixel_size),
        "half2": write_mrc(outdir / f"{name}_half2.mrc", half_maps[1], pixel_size),
        "filt": write_mrc(outdir / f"{name}_filt.mrc", filtered, pixel_size),
        "fsc": write_fsc_table(outdir / f"{other}fsc.txt", freq, curve),
        "fsc_png": plot_fsc(
            {"half maps": (freq, curve)}, outdir / f"{other}fsc.png", title=f"half-map FSC: {res143:.1f} Å at 0.143"
        ),
        "slices": plot_central_slices(
            filtered, outdir / f"{other}slices.png", title=f"{name}_filt.mrc ({cutoff:.1f} Å), density {sign}"
        ),
    }


def _check_reference(
    ref: Reference | None,
    full: np.ndarray,
    pixel_size: float,
    cutoff: float,
    invert: bool,
    flip_hand: bool,
    outdir: Path,
) -> tuple[ReferenceCheck | None, Path | None]:
    """(check, ``reference_check.txt`` path) of the full map (``pixel_size`` Å/px) against ``ref``, both low-passed
    to ``cutoff`` Å but no finer than 3 pixels; (None, None) without a reference."""
    if ref is None:
        return None, None
    lowpass_a = max(float(cutoff), 3.0 * pixel_size)
    check = check_against_reference(full, pixel_size, ref, lowpass=lowpass_a, invert=invert, flip_hand_used=flip_hand)
    return check, write_reference_check(outdir / "reference_check.txt", check)


def _assess_and_write(
    outdir: Path,
    name: str,
    half_maps: list[np.ndarray],
    full: np.ndarray,
    series: ParticleSeries,
    n_particles: int,
    n_images: int,
    lowpass: float | None,
    invert: bool,
    flip_hand: bool,
    ref: Reference | None,
) -> BackprojectResult:
    """Assess the maps (D³, D the series' box size, at its pixel size Å/px; already mirrored when ``flip_hand``)
    reconstructed from ``n_images`` images of ``n_particles`` particles: half-map FSC, low-pass filter (``lowpass``
    Å, default the FSC = 0.143 resolution), density sign and, with ``ref``, the reference check; write them all
    (:func:`_write_map_files`) and gather the :class:`BackprojectResult`."""
    box_size, apix = series.box_size, series.pixel_size
    freq, curve, res143, res05, cutoff = _half_map_fsc(half_maps, apix, box_size, lowpass)
    filtered = lowpass_volume(full, apix, cutoff)
    contrast = density_contrast(full, apix)
    sign = density_sign(contrast)
    paths = _write_map_files(outdir, name, full, half_maps, filtered, apix, (freq, curve), res143, cutoff, sign)
    check, check_path = _check_reference(ref, full, apix, cutoff, invert, flip_hand, outdir)
    return BackprojectResult(
        map_path=paths["map"],
        half_map_paths=(paths["half1"], paths["half2"]),
        filtered_map_path=paths["filt"],
        fsc_path=paths["fsc"],
        fsc_plot_path=paths["fsc_png"],
        slices_path=paths["slices"],
        freq=freq,
        fsc=curve,
        resolution_0143=res143,
        resolution_05=res05,
        lowpass=float(cutoff),
        density_sign=sign,
        density_contrast=contrast,
        suggestion=_density_suggestion(sign, invert),
        n_particles=n_particles,
        n_images=n_images,
        pixel_size=apix,
        box_size=box_size,
        flip_hand=flip_hand,
        reference_check=check,
        reference_check_path=check_path,
    )


def backproject(
    star: str | Path | ParticleSeries,
    outdir: str | Path,
    *,
    invert: bool = False,
    ctf: str = "phase-flip",
    wiener_constant: float = 1.0,
    dose_weight: bool = False,
    tilt_weight: bool = False,
    lowpass: float | None = None,
    first: int | None = None,
    indices: np.ndarray | str | Path | None = None,
    insertion: str = "trilinear",
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
    overwrite: bool = False,
    pixel_size: float | None = None,
    datadir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    tomograms_star: str | Path | None = None,
    flip_hand: bool = False,
    reference: str | Path | None = None,
    reference_pixel_size: float | None = None,
    name: str = "backproject",
) -> BackprojectResult:
    """Weighted back-projection of the particles' tilt images into a D³ map, with half maps and their FSC.

    ``star``: a particle STAR path (read with :func:`tomodrgn.io.particles.read_particles`, ``pixel_size`` Å,
    ``datadir`` and ``tomograms_star`` passed on) or a :class:`ParticleSeries`. ``invert``: flip the image contrast
    (dark particles).
    ``ctf``: "phase-flip" (default), "wiener" (constant ``wiener_constant``, in units of one image's CTF² weight) or
    "none". ``dose_weight``: exposure-filter weights; ``tilt_weight``: cos(tilt) weights. ``lowpass`` Å for the
    filtered map (default: the FSC = 0.143 resolution). ``first`` / ``indices`` (array or index-list file) select
    particles. ``insertion``: "trilinear" or "nearest". ``seed``: the half-set split. ``device``: "auto", "cpu",
    "cuda[:i]". ``progress(done, total)`` counts images. ``flip_hand``: write the maps mirrored (z → −z about voxel
    D/2). ``reference``: an MRC map to check the hand and contrast against (``reference_pixel_size`` Å overrides its
    header). ``name``: the maps' file stem (``NAME.mrc``, ``NAME_half1.mrc``, …; another than the default also
    prefixes the FSC and slice files, ``NAME_fsc.txt``). See the module docstring for the files written.
    """
    _check_options(ctf, insertion, wiener_constant, lowpass)
    dev = resolve_device(device)  # an unavailable device is one line, before anything is read or written
    ref = load_reference(reference, reference_pixel_size) if reference is not None else None  # checked up front
    outdir = Path(outdir)
    series = _read_series(star, pixel_size, datadir, tomograms_star, ctf, dose_weight)
    ref = resolve_reference(ref, series.box_size, series.pixel_size) if ref is not None else None
    particles = _particles_to_use(series.n_particles, indices, first)
    prepare_output_dir(outdir, overwrite)
    options = dict(ctf=ctf, invert=invert, insertion=insertion, dose_weight=dose_weight, tilt_weight=tilt_weight)
    reg = wiener_constant if ctf == "wiener" else PHASE_FLIP_REGULARIZER
    half_maps, full, total = _reconstruct(series, particles, seed, dev, batch_size, reg, progress, options)
    if flip_hand:
        half_maps, full = [mirror(h) for h in half_maps], mirror(full)
    return _assess_and_write(
        outdir, name, half_maps, full, series, len(particles), total, lowpass, invert, flip_hand, ref
    )
