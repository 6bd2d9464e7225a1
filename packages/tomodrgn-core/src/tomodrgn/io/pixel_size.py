"""The pixel size rules of particle stacks (Å): one place for the STAR / MRC header / user choice.

1. A pixel size given by the user (``pixel_size=``, ``--pixel-size``) overrides both the STAR and the MRC headers.
2. Else the STAR's ``_rlnImagePixelSize`` / ``_rlnDetectorPixelSize`` is used; when the stacks' MRC header says
   something else (by more than :data:`MISMATCH_TOLERANCE`), a warning names both values.
3. Else the MRC header's voxel size of the first stack, unless it is unset (:func:`header_unset`: 0, or the 1 Å/px
   that cryoDRGN, older Warp and the published tomoDRGN write when they do not know it); an unset header with no
   pixel size anywhere else is refused, asking for ``--pixel-size``.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real
from pathlib import Path

from tomodrgn.io.errors import InputError

MISMATCH_TOLERANCE = 0.01  # relative difference between the STAR's and the MRC header's pixel size that warns
UNSET_HEADER = 1.0  # Å/px: what MRC writers leave in a header when they do not know the pixel size (mrcfile's default)


def header_unset(value: float | None) -> bool:
    """Whether an MRC header's voxel size (Å) says nothing: absent, ≤ 0, non-finite, or :data:`UNSET_HEADER`."""
    return value is None or not math.isfinite(value) or value <= 0 or abs(value - UNSET_HEADER) < 1e-4


def check_pixel_size(value, option: str = "pixel_size") -> float:
    """``value`` as a float if it is a positive finite number of Å, else :class:`InputError` naming ``option``."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise InputError(f"option {option} must be a positive finite pixel size in Å, got {value!r}")
    return float(value)


def choose_pixel_size(
    star_value: float | None,
    header_value: float | None,
    argument: float | None,
    star_path: Path,
    stack_path: Path | None,
) -> float:
    """The pixel size (Å) to use, by the rules of this module.

    ``star_value``: from the STAR's columns (None: absent); ``header_value``: the MRC header's voxel size of
    ``stack_path`` (unset: :func:`header_unset`); ``argument``: the user's value (None: not given; checked here too).
    """
    if argument is not None:
        argument = check_pixel_size(argument)
        if star_value is not None and abs(star_value - argument) > 1e-4 * argument:
            warnings.warn(
                f"{star_path}: pixel size {argument} Å given overrides {star_value} Å from the file", stacklevel=3
            )
        return argument
    header = None if header_unset(header_value) else header_value
    if star_value is not None:
        if header is not None and abs(header - star_value) > MISMATCH_TOLERANCE * star_value:
            warnings.warn(
                f"{star_path}: pixel size {star_value:g} Å in the STAR differs from {header:g} Å in the MRC header of "
                f"{stack_path}; using the STAR's {star_value:g} Å (pass pixel_size / --pixel-size to choose)",
                stacklevel=3,
            )
        return float(star_value)
    if header is not None:
        return float(header)
    where = f"nor in the MRC header of {stack_path}" if stack_path is not None else "and no stack found to read"
    if stack_path is not None and header_value is not None and header_value > 0:
        where = (f"and the MRC header of {stack_path} says {header_value:g} Å/px, which writers leave when they do not "
                 "know it")  # fmt: skip
    raise InputError(
        f"{star_path}: pixel size absent (no _rlnImagePixelSize/_rlnDetectorPixelSize in the particle or optics "
        f"block, {where}); pass pixel_size / --pixel-size"
    )
