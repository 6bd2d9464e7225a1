"""Output folders and files of the commands that are not training runs (torch-free).

The project rule: a command never writes into a folder that already holds something (another run's or command's
output) unless the user says so with ``--overwrite``; it never replaces an existing output file without it either.
Training runs have their own rules (:mod:`tomodrgn.runs.create`: resume, and an overwrite that deletes only
the run's files). Default output folders inside a run (``RUN/analyze.N`` …) are the command's own and are reused.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tomodrgn.io.errors import InputError


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


def check_output_dir(path: str | Path, overwrite: bool = False, what: str = "-o") -> Path:
    """Refuse (:class:`InputError` naming ``what`` and ``path``) an output folder that is a file, or a non-empty
    folder unless ``overwrite``; an unwritable folder (or parent) raises OSError naming it. Writes nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path}: exists and is not a folder")
    check_writable(path)
    if overwrite or not path.is_dir():
        return path
    shown = folder_listing(path, 3)
    if shown:
        raise InputError(
            f"{what} {path}: the folder is not empty ({shown}); pass --overwrite to write into it, or choose "
            "another folder"
        )
    return path


def prepare_output_dir(path: str | Path, overwrite: bool = False, what: str = "-o") -> Path:
    """:func:`check_output_dir`, then make the folder (and its parents); returns it. ``overwrite`` writes into a
    non-empty folder: files of the same name are replaced, other files are kept."""
    path = check_output_dir(path, overwrite, what)
    path.mkdir(parents=True, exist_ok=True)
    return path


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
