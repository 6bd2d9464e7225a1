"""Run folders: one training run per folder, and files that are either complete or absent (torch-free).

A training run writes the files of :mod:`tomodrgn.runs.folder` (config, log, checkpoints, latents and
their latest-links); ``tomodrgn analyze`` writes ``analyze*/`` folders into it. Training into
a folder that already holds anything is refused unless the run is resumed (``resume``) or the old run's files are
removed first (``overwrite``: only the files above are deleted; anything else in the folder is kept).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from tomodrgn.io.errors import InputError
from tomodrgn.io.output_dir import check_writable, folder_listing
from tomodrgn.runs.folder import RunFolder


def check_run_dir(outdir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse (:class:`InputError`) an output folder that cannot take this run, before anything is written.

    ``outdir`` must be a folder or not exist; a non-empty folder needs ``resume`` (continue the run in it) or
    ``overwrite`` (remove the old run's files first); both together are refused.
    """
    outdir = Path(outdir)
    if resume and overwrite:
        raise InputError("give --resume or --overwrite, not both")
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir}: the output folder is a file")
    check_writable(outdir)
    if resume or overwrite or not outdir.exists():
        return
    shown = folder_listing(outdir, 4)
    if shown:
        raise InputError(
            f"{outdir}: the output folder is not empty ({shown}); use --resume to continue the run in it, "
            "--overwrite to delete the old run's files first, or another -o folder"
        )


def prepare_run_dir(outdir: str | Path, resume: bool = False, overwrite: bool = False) -> list[Path]:
    """Make ``outdir`` ready for a run (see :func:`check_run_dir`); returns what was deleted.

    ``overwrite`` deletes the entries that match :data:`~tomodrgn.runs.folder.RUN_FILE` (config, log,
    checkpoints, latents, their links,
    ``analyze*`` folders and ``*.tmp`` leftovers); other files in the folder are kept.
    """
    outdir = Path(outdir)
    check_run_dir(outdir, resume, overwrite)
    removed = []
    if overwrite:
        for p in RunFolder(outdir).run_files():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    outdir.mkdir(parents=True, exist_ok=True)
    return removed


def write_error(e: OSError, path: Path) -> OSError:
    """``e`` (raised while writing ``path``) as an OSError whose filename is ``path``; ``EFBIG`` (a file-size
    limit, ``ulimit -f``) and ``ENOSPC`` keep their errno, so :func:`~tomodrgn.io.errors.user_error_message` can say
    what ran out."""
    code = e.errno if e.errno is not None else errno.EIO
    return OSError(code, os.strerror(code), str(path))  # OSError(errno, …) picks the subclass (PermissionError, …)


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path.tmp`` and rename it to ``path``; on failure the ``.tmp`` is removed and the
    OSError names ``path`` (a full disk reads "no space left on the device writing PATH")."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as e:  # also Ctrl-C: never leave a .tmp behind
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(e, path) from e
        raise
    return path
