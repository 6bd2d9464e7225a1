"""The error raised for bad user input (STAR files, image stacks, dataset options)."""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used as given; the message names the file, column, row or particle at fault."""
