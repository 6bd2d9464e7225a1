"""How a STAR file written into another folder names the stacks its input names, so that RELION (which reads names
relative to its project folder, the working directory) and our readers (the STAR's folder, its parents, the working
directory; :func:`~tomodrgn.io.particle_series.resolve_stack`) find the same files. No stack is opened."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from tomodrgn.io.particle_series import PROJECT_LEVELS, resolve_stack


def moved_stack_name(stack: str, star_dir: Path, out_dir: Path, datadir: Path | None = None) -> str | None:
    """How a STAR in ``out_dir`` names the stack that a STAR in ``star_dir`` names ``stack``: as written when absolute,
    when ``out_dir`` is ``star_dir``, or when it resolves to that file from ``out_dir`` or one of its parents
    (RELION's project-relative names, the output inside the project); else relative to the working directory when
    that resolves from ``out_dir`` or its parents; else absolute. None when the stack is not found (its name cannot
    be re-pointed)."""
    if Path(stack).is_absolute() or out_dir.resolve() == star_dir.resolve():
        return stack
    found = resolve_stack(stack, star_dir, datadir)
    if found is None:
        return None
    if _resolves_from(stack, out_dir, found):
        return stack
    try:
        relative = str(found.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(found)
    return relative if _resolves_from(relative, out_dir, found) else str(found)


def moved_image_names(names: Iterable[str], star: Path, out_dir: Path, datadir: Path | None = None) -> list[str]:
    """``_rlnImageName`` values (``index@stack`` or a bare stack) of ``star`` with each stack re-pointed once for a
    STAR in ``out_dir`` (:func:`moved_stack_name`); stacks that are not found keep their names, with one warning."""
    moved: dict[str, str] = {}
    missing: list[str] = []
    out = []
    for name in names:
        idx, at, stack = name.rpartition("@") if "@" in name else ("", "", name)
        if stack not in moved:
            moved[stack] = moved_stack_name(stack, star.parent, out_dir, datadir)
            if moved[stack] is None:
                missing.append(stack)
                moved[stack] = stack
        out.append(f"{idx}{at}{moved[stack]}")
    if missing:
        warnings.warn(
            f"{len(missing)} image stack(s) named in {star} not found (e.g. {missing[0]}): their names are written as "
            f"they are; check that they resolve from {out_dir}",
            UserWarning,
            stacklevel=3,
        )
    return out


def _resolves_from(name: str, folder: Path, target: Path) -> bool:
    """Whether a relative stack name in a STAR in ``folder`` names ``target`` from that folder or a parent (not the
    working directory, which changes between sessions)."""
    for base in [folder, *list(folder.parents)[:PROJECT_LEVELS]]:
        candidate = base / name
        if candidate.is_file() and candidate.resolve() == target:
            return True
    return False
