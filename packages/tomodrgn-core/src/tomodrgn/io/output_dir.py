"""Output folders and files of the commands that are not training runs (torch-free).

The project rule: a command never writes into a folder that already holds something (another run's or command's
output) unless the user says so with ``--overwrite``; it never replaces an existing output file without it either.
Training runs have their own rules (:mod:`tomodrgn.runs.create`: resume, and an overwrite that deletes only
the run's files). The analysis commands follow the same rule as training, for their default folders inside a run
(``RUN/analyze.N`` …) too: a used folder needs ``--overwrite``, which first removes the files and folders that
command writes (:class:`CommandOutputs`), so nothing of an earlier call is left beside the new outputs; other files
in the folder are kept.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tomodrgn.io.errors import InputError


@dataclass(frozen=True)
class CommandOutputs:
    """What one command writes into its output folder: the entries whose names match ``pattern`` (whole name), and
    their ``.tmp`` leftovers. ``--overwrite`` removes exactly these before the command writes."""

    command: str
    pattern: re.Pattern

    def owns(self, name: str) -> bool:
        """Whether an entry called ``name`` is one this command writes (or its ``.tmp`` leftover)."""
        return self.pattern.fullmatch(name.removesuffix(".tmp")) is not None

    def in_folder(self, folder: Path) -> list[Path]:
        """The entries of ``folder`` this command writes, sorted by name ([] when it is not a folder)."""
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if self.owns(p.name))


def check_writable(folder: str | Path) -> None:
    """OSError (EROFS or EACCES, naming the folder) when ``folder``, or the folder it would be made in, cannot be
    written: a read-only output folder fails at once, not after the data were read."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EROFS if os.statvfs(existing).f_flag & os.ST_RDONLY else errno.EACCES
        raise OSError(code, os.strerror(code), str(existing))


def folder_listing(folder: Path, shown: int) -> str:
    """The first ``shown`` entry names of ``folder`` and how many more ("a, b, c and 4 more"); "" when empty."""
    content = sorted(p.name for p in folder.iterdir())
    return ", ".join(content[:shown]) + (f" and {len(content) - shown} more" if len(content) > shown else "")


def check_output_dir(
    path: str | Path,
    overwrite: bool = False,
    what: str = "-o",
    outputs: CommandOutputs | None = None,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Refuse (:class:`InputError` naming ``what`` and ``path``) an output folder that is a file, or a non-empty
    folder unless ``overwrite``; an unwritable folder (or parent) raises OSError naming it. With ``outputs`` (the
    command's files, removed by ``overwrite``) the message says so, and ``overwrite`` is refused when it would
    remove one of ``inputs`` (files the command reads). Writes nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path}: exists and is not a folder")
    check_writable(path)
    if overwrite and outputs is not None:
        _check_inputs_kept(path, outputs, inputs)
    if overwrite or not path.is_dir():
        return path
    shown = folder_listing(path, 3)
    if shown and outputs is not None:
        raise InputError(
            f"{what} {path}: the folder is not empty ({shown}); pass --overwrite to replace it (what "
            f"{outputs.command} writes there is removed first, other files are kept), or choose another folder"
        )
    if shown:
        raise InputError(
            f"{what} {path}: the folder is not empty ({shown}); pass --overwrite to write into it, or choose "
            "another folder"
        )
    return path


def _check_inputs_kept(folder: Path, outputs: CommandOutputs, inputs: Iterable[str | Path]) -> None:
    """InputError when removing ``outputs``' entries of ``folder`` would remove one of ``inputs``."""
    doomed = [(p, p.resolve()) for p in outputs.in_folder(folder)]
    for given in inputs:
        f = Path(given).resolve()
        hit = next((p for p, d in doomed if f == d or d in f.parents), None)
        if hit is not None:
            raise InputError(
                f"--overwrite would remove {hit}, which holds {given}, an input of this {outputs.command}; "
                "choose another output folder"
            )


def prepare_output_dir(
    path: str | Path,
    overwrite: bool = False,
    what: str = "-o",
    outputs: CommandOutputs | None = None,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """:func:`check_output_dir`, then make the folder (and its parents); returns it. ``overwrite`` writes into a
    non-empty folder: with ``outputs`` their entries are removed first (an earlier call's files never mix with
    the new ones); files of the same name are replaced, other files are kept."""
    inputs = list(inputs)
    path = check_output_dir(path, overwrite, what, outputs, inputs)
    if overwrite and outputs is not None:
        remove_outputs(path, outputs)
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_outputs(folder: Path, outputs: CommandOutputs) -> list[Path]:
    """Delete the entries of ``folder`` that ``outputs`` names (files, links, folders); returns them."""
    removed = outputs.in_folder(Path(folder))
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    return removed


def check_output_file(path: str | Path, overwrite: bool = False, what: str = "-o") -> Path:
    """Refuse (:class:`InputError`) an existing output file unless ``overwrite``, and a path that is a folder;
    the folder it goes in must be writable (OSError naming it). Writes nothing."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path}: is a folder, not a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{what} {path}: the file exists; pass --overwrite to replace it, or choose another name")
    check_writable(path.parent)
    return path
