"""The convention check against a map the user trusts (``--reference``): is our map as is, mirrored, inverted, or both?

The reference (for instance the subtomogram-averaging map of the same particles, from RELION, Warp/M or WarpTools)
is brought to our box and pixel size (Fourier rescaling with teamtomo's ``torch-fourier-rescale``, then cropped or
padded in real space about voxel D/2), both maps are low-passed to the same resolution and compared in a soft
spherical mask, four ways: as is, mirrored (:func:`tomodrgn.physics.hand.flip_hand`), inverted (−map) and both. The
best names the flags that give it: ``--flip-hand`` for a mirror, ``--invert`` for a contrast inversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tomodrgn.analysis.metrics import cc, fsc, resolution_at
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc
from tomodrgn.physics.hand import flip_hand
from tomodrgn.reconstruct.backproject import lowpass_volume
from tomodrgn.reconstruct.report import spherical_mask

#: the four ways our map can relate to the reference: (name, mirrored, inverted)
CANDIDATES = (
    ("as is", False, False),
    ("mirrored", True, False),
    ("inverted", False, True),
    ("mirrored + inverted", True, True),
)
#: a best CC within this of the runner-up is reported as unclear (a near-symmetric or low-resolution map)
CLEAR_MARGIN = 0.05


@dataclass(frozen=True)
class Reference:
    """The user's map, read and checked: ``map`` (N, N, N) [z, y, x] at ``pixel_size`` Å."""

    path: Path
    map: np.ndarray
    pixel_size: float


def load_reference(path: str | Path, pixel_size: float | None = None) -> Reference:
    """Read and check a reference map (before any long computation): a cubic MRC map with a pixel size (its header's,
    unless ``pixel_size`` Å is given). Problems are one-line errors (:class:`InputError`) naming the file."""
    path = Path(path)
    ref, header_px = read_mrc(path)
    if ref.ndim != 3 or len(set(ref.shape)) != 1:
        raise InputError(f"--reference {path}: expected a cubic map, got shape {ref.shape}")
    px = float(pixel_size) if pixel_size is not None else float(header_px)
    if not px > 0:
        raise InputError(f"--reference {path}: no pixel size in its MRC header; give --reference-pixel-size Å")
    if not np.all(np.isfinite(ref)) or not np.any(ref):
        raise InputError(f"--reference {path}: the map is empty or holds NaN / infinite values")
    return Reference(path, np.asarray(ref, dtype=np.float32), px)


@dataclass(frozen=True)
class Candidate:
    name: str
    mirrored: bool
    inverted: bool
    cc: float  # masked real-space correlation, both maps low-passed to ``ReferenceCheck.lowpass`` Å
    resolution_05: float  # Å where the FSC with the reference falls below 0.5 (inf when it starts below)


@dataclass(frozen=True)
class ReferenceCheck:
    reference: Path
    reference_pixel_size: float  # Å, as read (or given)
    pixel_size: float  # Å, of our map and of the resampled reference
    lowpass: float  # Å
    candidates: tuple[Candidate, ...]  # in CANDIDATES order
    best: Candidate
    clear: bool  # the best beats the runner-up by at least CLEAR_MARGIN in CC
    flags: tuple[str, ...]  # the options that give the best, given the run's own (``invert``, ``flip_hand``)

    def lines(self) -> list[str]:
        """The report as a user reads it: one line per candidate, then the verdict and the flags to use."""
        out = [
            f"reference {self.reference} ({self.reference_pixel_size:g} Å/px, resampled to {self.pixel_size:g} Å/px), "
            f"both low-passed to {self.lowpass:.1f} Å:"
        ]
        for c in self.candidates:
            res = f"{c.resolution_05:.1f} Å" if np.isfinite(c.resolution_05) else "—"
            mark = "  <- best" if c is self.best else ""
            out.append(f"  {c.name:<20} CC {c.cc:+.3f}   FSC 0.5 at {res}{mark}")
        verdict = f"best match: {self.best.name}"
        if not self.clear:
            verdict += f" (unclear: within {CLEAR_MARGIN} CC of the next; use more particles or a sharper reference)"
        flags = " ".join(self.flags) if self.flags else "no --invert, no --flip-hand"
        out.append(f"{verdict}; the flags that give it: {flags}")
        return out


def resample_reference(ref: np.ndarray, ref_pixel_size: float, box: int, pixel_size: float) -> np.ndarray:
    """The reference map (N, N, N) at ``ref_pixel_size`` Å brought to ``box``³ at ``pixel_size`` Å: Fourier rescaled,
    then cropped or zero-padded in real space about voxel N/2 → D/2. Returns float32 (box, box, box)."""
    from torch_fourier_rescale import fourier_rescale_3d

    vol = torch.as_tensor(np.ascontiguousarray(ref), dtype=torch.float32)
    if abs(ref_pixel_size - pixel_size) > 1e-4 * pixel_size:
        vol, _ = fourier_rescale_3d(vol, source_spacing=ref_pixel_size, target_spacing=pixel_size)
    vol = vol.numpy()
    out = np.zeros((box,) * 3, np.float32)
    n = vol.shape[0]
    # voxel n//2 of the rescaled map lands on voxel box//2
    src = [slice(max(0, n // 2 - box // 2), min(n, n // 2 - box // 2 + box))] * 3
    dst = [slice(s.start - (n // 2 - box // 2), s.stop - (n // 2 - box // 2)) for s in src]
    out[tuple(dst)] = vol[tuple(src)]
    return out


def check_against_reference(
    vol: np.ndarray,
    pixel_size: float,
    reference: Reference | str | Path,
    *,
    lowpass: float | None = None,
    reference_pixel_size: float | None = None,
    invert: bool = False,
    flip_hand_used: bool = False,
) -> ReferenceCheck:
    """Compare our map ``vol`` (D³ at ``pixel_size`` Å) with the map in ``reference`` as is, mirrored, inverted and
    both (module docstring). ``reference``: a :func:`load_reference` result or an MRC path (``reference_pixel_size``
    Å then overrides its header's). ``lowpass`` Å (default 3 px, the scale at which a hand shows) applies to both.
    ``invert`` / ``flip_hand_used``: the options ``vol`` was made with, so that the flags printed are the ones to run
    with (not a change relative to this run)."""
    if not isinstance(reference, Reference):
        reference = load_reference(reference, reference_pixel_size)
    ref, ref_px = reference.map, reference.pixel_size
    d = vol.shape[0]
    cutoff = float(lowpass) if lowpass is not None else 3.0 * pixel_size
    ours = lowpass_volume(vol, pixel_size, cutoff)
    theirs = lowpass_volume(resample_reference(ref, ref_px, d, pixel_size), pixel_size, cutoff)
    if not np.any(theirs):
        raise InputError(f"--reference {reference.path}: the map is empty in our box of {d * pixel_size:g} Å")
    mask = spherical_mask(d)
    candidates = []
    for name, mirrored, inverted in CANDIDATES:
        v = flip_hand(ours) if mirrored else ours
        v = -v if inverted else v
        freq, curve = fsc(v, theirs, pixel_size, mask=mask)
        below = np.flatnonzero(curve[1:] < 0.5)
        res05 = resolution_at(freq, curve, 0.5) if len(below) and below[0] > 0 else float("inf")
        candidates.append(Candidate(name, mirrored, inverted, cc(v, theirs, mask=mask), res05))
    ranked = sorted(candidates, key=lambda c: c.cc, reverse=True)
    best = ranked[0]
    flags = tuple(
        f for f, on in (("--invert", invert != best.inverted), ("--flip-hand", flip_hand_used != best.mirrored)) if on
    )
    return ReferenceCheck(
        reference=reference.path,
        reference_pixel_size=ref_px,
        pixel_size=float(pixel_size),
        lowpass=cutoff,
        candidates=tuple(candidates),
        best=best,
        clear=best.cc - ranked[1].cc >= CLEAR_MARGIN,
        flags=flags,
    )


def write_reference_check(path: str | Path, check: ReferenceCheck) -> Path:
    """The report's lines as a text file (``reference_check.txt`` in the output folder)."""
    path = Path(path)
    path.write_text("\n".join(check.lines()) + "\n")
    return path
