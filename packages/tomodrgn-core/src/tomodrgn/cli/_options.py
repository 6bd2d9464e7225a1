"""Options shared by several commands (one definition each)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_tomograms_star(p: argparse.ArgumentParser) -> None:
    """``--tomograms-star``: the tomograms STAR of a 2-D stack set read from its particles STAR."""
    p.add_argument(
        "--tomograms-star",
        type=Path,
        default=None,
        help="tomograms STAR of a RELION 5 / WarpTools 2-D stack set given by its particles STAR (not needed with "
        "the optimisation set)",
    )
