"""The convention check against a map the user trusts (``--reference``): is our map as is, mirrored, inverted, or both?

The reference (for instance the subtomogram-averaging map of the same particles, from RELION, Warp/M or WarpTools)
is brought to our box and pixel size (Fourier rescaling with teamtomo's ``torch-fourier-rescale``, then cropped or
padded in real space about voxel D/2), both maps are low-passed to the same resolution and compared in a soft
spherical mask, four ways: as is, mirrored (:func:`tomodrgn.physics.hand.flip_hand`), inverted (−map) and both. The
best names the flags that give it: ``--flip-hand`` for a mirror, ``--invert`` for a contrast inversion, and says what
to change relative to the run's own flags ("keep --invert", "add --flip-hand"); a best CC below :data:`MIN_CC` or
within :data:`CLEAR_MARGIN` of the next is "unclear" and advises nothing.

The reference's pixel size (:func:`resolve_reference`): ``--reference-pixel-size``, else its MRC header's, unless the
header is unset (0 or 1 Å/px, :func:`tomodrgn.io.pixel_size.header_unset`: cryoDRGN, older Warp and the published
tomoDRGN write 1): a map with an unset header and our box is taken at our pixel size (one warning), with another box
it is refused. A set header that differs from our pixel size by more than :data:`PIXEL_RATIO_WARNING` while the boxes
match is used, with one warning naming both (a map written at our pixel size with a wrong header?).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tomodrgn.analysis.metrics import cc, fsc, resolution_at
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc
from tomodrgn.io.pixel_size import check_pixel_size, header_unset
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
#: a best CC below this is reported as unclear (the maps hardly resemble each other: wrong scale, noise)
MIN_CC = 0.3
#: a reference whose (set) pixel size differs from ours by more than this factor while the boxes match gets a warning
PIXEL_RATIO_WARNING = 1.5


@dataclass(frozen=True)
class Reference:
    """The user's map, read and checked: ``map`` (N, N, N) [z, y, x] at ``pixel_size`` Å (None: its MRC header's
    ``header_pixel_size`` is unset and no ``--reference-pixel-size`` was given: decided by :func:`resolve_reference`);
    ``settled``: the pixel size was given (``--reference-pixel-size``) or decided by :func:`resolve_reference`."""

    path: Path
    map: np.ndarray
    pixel_size: float | None
    header_pixel_size: float = 0.0
    settled: bool = False


def load_reference(path: str | Path, pixel_size: float | None = None) -> Reference:
    """Read and check a reference map (before any long computation): a cubic MRC map, at ``pixel_size`` Å when given,
    else its header's (left None when unset, see :func:`resolve_reference`). Problems are one-line errors
    (:class:`InputError`) naming the file."""
    path = Path(path)
    if pixel_size is not None:
        check_pixel_size(pixel_size, "--reference-pixel-size")
    ref, header_px = read_mrc(path)
    if ref.ndim != 3 or len(set(ref.shape)) != 1:
        raise InputError(f"--reference {path}: expected a cubic map, got shape {ref.shape}")
    if not np.all(np.isfinite(ref)) or not np.any(ref):
        raise InputError(f"--reference {path}: the map is empty or holds NaN / infinite values")
    px = float(pixel_size) if pixel_size is not None else (None if header_unset(header_px) else float(header_px))
    return Reference(path, np.asarray(ref, dtype=np.float32), px, float(header_px), pixel_size is not None)


def resolve_reference(reference: Reference, box: int, pixel_size: float) -> Reference:
    """``reference`` with its pixel size decided against our map (``box`` px at ``pixel_size`` Å; rules in the module
    docstring): an unset header at our box → our pixel size, one warning; at another box → :class:`InputError`
    asking for ``--reference-pixel-size``; a set header more than :data:`PIXEL_RATIO_WARNING` × from ours with our box
    → one warning naming both."""
    n = reference.map.shape[0]
    where = f"--reference {reference.path}"
    if reference.pixel_size is None:
        header = (
            f"its MRC header says {reference.header_pixel_size:g} Å/px, which writers leave when they do not know it"
        )
        if n != box:
            raise InputError(f"{where}: {header}, and its box ({n} px) is not ours ({box} px): give "
                             "--reference-pixel-size Å")  # fmt: skip
        warnings.warn(f"{where}: {header}; its box is ours ({box} px), so it is taken at our {pixel_size:g} Å/px "
                      "(give --reference-pixel-size to choose)", stacklevel=3)  # fmt: skip
        return dataclasses.replace(reference, pixel_size=float(pixel_size), settled=True)
    if reference.settled:
        return reference
    ratio = max(reference.pixel_size / pixel_size, pixel_size / reference.pixel_size)
    if n == box and ratio > PIXEL_RATIO_WARNING:
        warnings.warn(
            f"{where}: its header's {reference.pixel_size:g} Å/px differs from our {pixel_size:g} Å/px by "
            f"{ratio:.1f}× while both boxes are {box} px: if it was written at our pixel size with a wrong header, "
            "give --reference-pixel-size",
            stacklevel=3,
        )
    return dataclasses.replace(reference, settled=True)


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
    clear: bool  # the best's CC is at least MIN_CC and beats the runner-up by at least CLEAR_MARGIN
    flags: tuple[str, ...]  # the options that give the best, given the run's own (``invert``, ``flip_hand``)
    used: tuple[str, ...] = ()  # the run's own options among --invert, --flip-hand

    def advice(self) -> str:
        """What to change relative to the run's own flags, e.g. "keep --invert, add --flip-hand" ("as run": none)."""
        words = []
        for flag in ("--invert", "--flip-hand"):
            need, have = flag in self.flags, flag in self.used
            if need or have:
                words.append(f"{'keep' if need and have else 'add' if need else 'drop'} {flag}")
        return ", ".join(words) if words else "as run"

    def lines(self) -> list[str]:
        """The report as a user reads it: one line per candidate, then the verdict and the flags to use (none when
        the verdict is unclear)."""
        out = [
            f"reference {self.reference} ({self.reference_pixel_size:g} Å/px, resampled to {self.pixel_size:g} Å/px), "
            f"both low-passed to {self.lowpass:.1f} Å:"
        ]
        for c in self.candidates:
            res = f"{c.resolution_05:.1f} Å" if np.isfinite(c.resolution_05) else "—"
            mark = "  <- best" if c is self.best else ""
            out.append(f"  {c.name:<20} CC {c.cc:+.3f}   FSC 0.5 at {res}{mark}")
        if not self.clear:
            out.append(
                f"best match: unclear (highest CC {self.best.cc:+.3f}, {self.best.name}: below {MIN_CC} or within "
                f"{CLEAR_MARGIN} of the next); no advice on --invert / --flip-hand: check the reference's pixel size "
                "and box, or use more particles or a sharper reference"
            )
            return out
        flags = " ".join(self.flags) if self.flags else "no --invert, no --flip-hand"
        out.append(f"best match: {self.best.name}; the flags that give it: {flags} ({self.advice()})")
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
    Å then overrides its header's; its pixel size is decided by :func:`resolve_reference`). ``lowpass`` Å (default 3
    px, the scale at which a hand shows) applies to both. ``invert`` / ``flip_hand_used``: the options ``vol`` was
    made with: the flags printed are the ones to run with, the advice what to change."""
    if not isinstance(reference, Reference):
        reference = load_reference(reference, reference_pixel_size)
    d = vol.shape[0]
    reference = resolve_reference(reference, d, pixel_size)
    ref, ref_px = reference.map, reference.pixel_size
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
    used = tuple(f for f, on in (("--invert", invert), ("--flip-hand", flip_hand_used)) if on)
    return ReferenceCheck(
        reference=reference.path,
        reference_pixel_size=ref_px,
        pixel_size=float(pixel_size),
        lowpass=cutoff,
        candidates=tuple(candidates),
        best=best,
        clear=best.cc >= MIN_CC and best.cc - ranked[1].cc >= CLEAR_MARGIN,
        flags=flags,
        used=used,
    )


def write_reference_check(path: str | Path, check: ReferenceCheck) -> Path:
    """The report's lines as a text file (``reference_check.txt`` in the output folder)."""
    path = Path(path)
    path.write_text("\n".join(check.lines()) + "\n")
    return path
