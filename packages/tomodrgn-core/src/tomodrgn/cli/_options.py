"""Options shared by several commands (one definition each)."""

from __future__ import annotations

import argparse
from pathlib import Path


def epoch_number(text: str) -> int | None:
    """``--epoch``: a 0-based epoch, or ``latest`` (None) as tomoDRGN spells the default."""
    if text == "latest":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an epoch number or latest, not {text!r}") from None


def add_tomograms_star(p: argparse.ArgumentParser) -> None:
    """``--tomograms-star``: the tomograms STAR of a 2-D stack set read from its particles STAR."""
    p.add_argument(
        "--tomograms-star",
        type=Path,
        default=None,
        help="tomograms STAR of a RELION 5 / WarpTools 2-D stack set given by its particles STAR (not needed with "
        "the optimisation set)",
    )


def add_hand_options(p: argparse.ArgumentParser) -> None:
    """``--flip-hand``: write maps mirrored."""
    p.add_argument(
        "--flip-hand",
        action="store_true",
        help="write maps mirrored (z -> -z about the box centre), for pipelines whose hand differs; "
        "--reference tells whether you need it",
    )


def add_reference_options(p: argparse.ArgumentParser) -> None:
    """``--reference`` / ``--reference-pixel-size``: the hand and contrast check against the user's map."""
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a map you trust (e.g. the subtomogram average of these particles): report CC / FSC with it as is, "
        "mirrored, inverted and both, and the flags that give the best match",
    )
    p.add_argument(
        "--reference-pixel-size", type=float, default=None, help="pixel size (Å) of --reference (default: header)"
    )
