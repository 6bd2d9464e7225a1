"""What a simulated dataset is made of: the :class:`SimulationSpec` (every option, checked and resolved) and the
seeded ground truth :func:`draw_truth` draws from it (conformations, poses, tilts, CTF, origins, positions) before any
image is rendered. :func:`tomodrgn.simulate.dataset.simulate_dataset` renders and writes it.

Units: Å (pixel size, defocus, shifts), e⁻/Å² (dose), degrees (tilts), kV, mm (Cs).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.physics.pose import random_rotations, tilt_about_y
from tomodrgn.simulate.geometry import kept_tilts, place_particles, tilt_rotations, tilt_series
from tomodrgn.simulate.presets import Conformations, Preset, get_preset
from tomodrgn.simulate.relion5 import HAND, tomogram_centre

DEFAULT_BOX_ANGSTROM = 419.2
DEFAULT_SHIFT_STD_PX = 1.5  # rms in-plane origin per axis (px) of simulated images when shift_std is None
PARTICLES_PER_TOMOGRAM = 50
FORMATS = ("warp", "relion5")
POSE_ERROR_STREAM = 8  # index of the pose errors' random stream of a seed (draw_truth's eight come first)


def seed_streams(seed: int, n: int) -> list[np.random.Generator]:
    """The first ``n`` independent random streams of ``seed`` (stream i is the same whatever ``n``)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _check_error_scale(name: str, value, unit: str) -> None:
    """A pose-error scale must be a finite real number ≥ 0 (:class:`InputError` naming ``name`` and its unit)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value >= 0 and math.isfinite(value)):
        raise InputError(f"{name} must be a finite number ≥ 0 ({unit}), got {value!r}")


@dataclass(frozen=True)
class SimulationSpec:
    """The options of :func:`~tomodrgn.simulate.dataset.simulate_dataset` (its docstring says what each does), checked
    and resolved by :meth:`resolved`: ``pixel_size``, ``tomogram_shape``, ``n_tomograms`` and ``shift_std`` set."""

    preset: str = "4-class"
    n_particles: int = 1000
    box_size: int = 32
    pixel_size: float | None = None
    n_tilts: int = 41
    max_tilt: float = 60.0
    tilt_step: float = 3.0
    dose_per_tilt: float = 3.0
    snr: float | None = 0.05
    defocus_range: tuple[float, float] = (20000.0, 40000.0)
    drop_tilts: int = 0
    seed: int = 0
    voltage: float = 300.0
    cs: float = 2.7
    amplitude_contrast: float = 0.1
    n_tomograms: int | None = None
    tomogram_shape: tuple[int, int, int] | None = None
    shift_std: float | None = None
    astigmatism: float = 400.0
    phase_shift: float = 0.0
    dose_filter: bool = True
    oversample: int = 2
    format: str = "warp"
    float16: bool = False
    pose_error_deg: float = 0.0
    pose_error_px: float = 0.0
    tilt_shift_error_px: float = 0.0

    def resolved(self) -> SimulationSpec:
        """Checked (:class:`InputError` naming the option) and with every default resolved."""
        d = int(self.box_size)
        if d % 2 or d < 8:
            raise InputError(f"box_size must be even and ≥ 8, got {self.box_size}")
        if self.n_particles < 1:
            raise InputError(f"n_particles must be ≥ 1, got {self.n_particles}")
        if self.snr is not None and not self.snr > 0:
            raise InputError(f"snr must be > 0 (or None/inf for noiseless), got {self.snr}")
        if self.format not in FORMATS:
            raise InputError(f"format must be 'warp' or 'relion5', got {self.format!r}")
        get_preset(self.preset)  # an unknown preset is named now
        apix = DEFAULT_BOX_ANGSTROM / d if self.pixel_size is None else float(self.pixel_size)
        shape = (2 * d, 8 * d, 8 * d) if self.tomogram_shape is None else tuple(int(s) for s in self.tomogram_shape)
        n_tomo = math.ceil(self.n_particles / PARTICLES_PER_TOMOGRAM) if self.n_tomograms is None else self.n_tomograms
        shift_std = DEFAULT_SHIFT_STD_PX * apix if self.shift_std is None else self.shift_std
        if not (shift_std >= 0 and math.isfinite(shift_std)):
            raise InputError(f"shift_std must be a finite number ≥ 0 Å, got {shift_std}")
        for name, unit in (("pose_error_deg", "°"), ("pose_error_px", "px"), ("tilt_shift_error_px", "px")):
            _check_error_scale(name, getattr(self, name), unit)
        n_tomo = max(1, min(int(n_tomo), self.n_particles))
        resolved = {"box_size": d, "pixel_size": apix, "tomogram_shape": shape, "n_tomograms": n_tomo}
        return SimulationSpec(**{**self.__dict__, **resolved, "shift_std": shift_std})

    @property
    def noiseless(self) -> bool:
        return self.snr is None or math.isinf(self.snr)


@dataclass
class Truth:
    """The ground truth of a simulated dataset, per particle (n) and per tilt of the scheme (T):

    ``angles`` / ``doses`` (T,) the tilt scheme (degrees, cumulative e⁻/Å² in acquisition order); ``conf`` the
    conformations; ``rotation`` (n, 3, 3) particle poses (RELION matrices) and ``tilt_rotation`` (n, T, 3, 3) each
    image's; ``defocus`` (n, 3) the particle's (U, V, angle); ``ctf`` (n, T, 3) each image's (U, V, angle); ``keep``
    (n, T) which tilts each particle has; ``tomogram_names``, ``tomogram_of`` (n,), ``positions`` (n, 3) px (x, y, z),
    ``names`` per particle; ``origins`` (n, 3) Å (3-D origins, zero for "warp"); ``shifts`` (n, T, 2) Å the images'
    2-D origins; ``tilt_defocus`` (n_tomograms, T, 3) the tomograms' per-tilt defocus ("relion5", else None)."""

    preset: Preset
    angles: np.ndarray
    doses: np.ndarray
    conf: Conformations
    rotation: np.ndarray
    tilt_rotation: np.ndarray
    defocus: np.ndarray
    ctf: np.ndarray
    keep: np.ndarray
    tomogram_names: list[str]
    tomogram_of: np.ndarray
    positions: np.ndarray
    names: list[str]
    origins: np.ndarray
    shifts: np.ndarray
    tilt_defocus: np.ndarray | None
    noise_seed: int


def _split_counts(n: int, parts: int) -> np.ndarray:
    return np.array([len(a) for a in np.array_split(np.arange(n), parts)])


def draw_truth(spec: SimulationSpec) -> Truth:
    """The ground truth of ``spec`` (resolved), drawn from eight independent streams of ``spec.seed``
    (conformations, poses, CTF, dropped tilts, placement, shifts, noise, tomograms), so that changing one option
    leaves the draws of the others as they were."""
    spec = spec.resolved()
    d, apix = spec.box_size, spec.pixel_size
    r_conf, r_pose, r_ctf, r_drop, r_place, r_shift, r_noise, r_tomo = seed_streams(spec.seed, 8)
    preset = get_preset(spec.preset)
    angles, doses = tilt_series(spec.n_tilts, spec.max_tilt, spec.tilt_step, spec.dose_per_tilt)
    n, t = spec.n_particles, len(angles)
    conf = preset.sample(n, r_conf)
    rot_p = random_rotations(n, r_pose)
    df = r_ctf.uniform(*spec.defocus_range, size=n)
    astig = r_ctf.uniform(0.0, spec.astigmatism, size=n)
    defocus = np.stack([df + astig / 2, df - astig / 2, r_ctf.uniform(0.0, 180.0, size=n)], -1)
    keep = kept_tilts(n, t, spec.drop_tilts, r_drop)
    n_tomo = spec.n_tomograms
    counts = _split_counts(n, n_tomo)
    tomo_names = [f"tomo{i:02d}" for i in range(n_tomo)]
    tomo_of = np.repeat(np.arange(n_tomo), counts)
    local_idx = np.concatenate([np.arange(c) for c in counts])
    positions = np.concatenate([place_particles(int(c), spec.tomogram_shape, d, r_place) for c in counts])
    names = [f"{tomo_names[g]}_{j:05d}" for g, j in zip(tomo_of, local_idx)]
    origins = np.zeros((n, 3))
    ctf = np.broadcast_to(defocus[:, None], (n, t, 3))
    tilt_defocus = None
    shift_std = spec.shift_std
    if spec.format == "warp":
        shifts = r_shift.normal(0.0, shift_std, size=(n, t, 2)) if shift_std > 0 else np.zeros((n, t, 2))
    else:  # geometry a tomogram can express (see simulate_dataset's docstring)
        origins = r_shift.normal(0.0, shift_std, size=(n, 3)) if shift_std > 0 else origins
        rt = tilt_about_y(angles)
        shifts = np.einsum("tij,nj->nti", rt, origins)[..., :2]
        base = r_tomo.uniform(*spec.defocus_range, size=(n_tomo, 1)) + r_tomo.normal(0.0, 200.0, (n_tomo, t))
        astig_t = r_tomo.uniform(0.0, spec.astigmatism, size=(n_tomo, 1))
        angle_t = np.broadcast_to(r_tomo.uniform(0, 180, (n_tomo, 1)), base.shape)
        tilt_defocus = np.stack([base + astig_t / 2, base - astig_t / 2, angle_t], axis=-1)
        centred = (positions - tomogram_centre(spec.tomogram_shape)) * apix
        depth = HAND * np.einsum("tj,nj->nt", rt[:, 2], centred)
        ctf = tilt_defocus[tomo_of] + np.stack([depth, depth, np.zeros_like(depth)], -1)
    return Truth(
        preset=preset, angles=angles, doses=doses, conf=conf, rotation=rot_p,
        tilt_rotation=tilt_rotations(rot_p, angles), defocus=defocus, ctf=ctf, keep=keep,
        tomogram_names=tomo_names, tomogram_of=tomo_of, positions=positions, names=names, origins=origins,
        shifts=shifts, tilt_defocus=tilt_defocus, noise_seed=int(r_noise.integers(2**62)),
    )  # fmt: skip
