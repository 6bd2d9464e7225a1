"""The error raised for bad user input, and the one-line message a user sees for any user error."""

from __future__ import annotations

import errno


class InputError(ValueError):
    """Input that cannot be used as given; the message names the file, column, row, option or particle at fault."""


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def user_error_message(exc: BaseException) -> str | None:
    """One line for an error caused by the user's input or environment, or None for a bug (show the traceback).

    User errors: :class:`InputError` (and its subclasses), missing files and folders, no permission, a read-only
    file system, no space left on the device, a file-size limit.
    """
    if isinstance(exc, InputError):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        if exc.errno is None and exc.args:  # raised with a message of our own, e.g. FileNotFoundError("no checkpoint")
            return " ".join(str(exc).split())
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        writing = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        if exc.errno in _NO_SPACE:
            return f"no space left on the device{writing}"
        if exc.errno == errno.EFBIG:
            return f"file too large for the file-size limit (ulimit -f){writing}"
        if isinstance(exc, FileNotFoundError):
            return f"no such file or folder{where}"
        if exc.errno == errno.EROFS:
            return f"read-only file system{where}"
        if isinstance(exc, PermissionError):
            return f"permission denied{where}"
        if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
            return f"{exc.strerror.lower() if exc.strerror else 'wrong kind of path'}{where}"
    return None
