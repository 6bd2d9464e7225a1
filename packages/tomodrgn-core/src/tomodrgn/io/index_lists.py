"""Particle index lists and per-particle label files, in the forms the field writes them.

- text: whitespace-separated integers, ``#`` starts a comment (what tomodrgn writes: ``write_index_list``);
- ``.npy``: a 1-D integer array (``numpy.save``);
- ``.pkl``: a pickled numpy integer array or list of ints, as cryoDRGN and the published tomoDRGN write ``ind.pkl``
  and ``labels.pkl`` (``pickle.dump(ind, f)``). Pickles are read with an unpickler that only builds numpy arrays,
  scalars and plain lists/tuples, so a pickle holding anything else is refused rather than run.

Every error is one :class:`~tomodrgn.io.errors.InputError` naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tomodrgn.io.errors import InputError

#: the globals a pickled numpy array or scalar needs (numpy 1.x and 2.x module names)
_PICKLE_ALLOWED = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}


#: how one entry is named in a message
_ONE = {"particle indices": "a particle index", "labels": "a label", "values": "a number"}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a numpy array")


def _load_pickle(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise InputError(f"{path}: not a pickled array or list of numbers ({' '.join(str(e).split())})") from None


def _load_text(path: Path, what: str) -> list[tuple[int, str]]:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file of {what} (give a .txt, .npy or .pkl file)") from None
    tokens = []
    for n, line in enumerate(text.splitlines(), 1):
        tokens += [(n, tok) for tok in line.split("#", 1)[0].split()]
    return tokens


def _as_1d(values: object, path: Path, what: str) -> np.ndarray:
    not_a_list = InputError(f"{path}: holds a {type(values).__name__}, not an array or list of {what}")
    if isinstance(values, (dict, set, str, bytes)):
        raise not_a_list
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        raise not_a_list from None
    if arr.dtype == object:
        raise not_a_list
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {arr.dtype} values, not {what}")
    if arr.ndim != 1 and arr.size != 1:
        raise InputError(f"{path}: holds an array of shape {arr.shape}; expected one {what[:-1]} per entry (1-D)")
    return arr.reshape(-1)


def _read_numbers(path: str | Path, what: str) -> np.ndarray:
    """The numbers of a .txt/.npy/.pkl file as a 1-D array (text values parsed as float)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".pkl" or suffix == ".pickle":
        return _as_1d(_load_pickle(path), path, what)
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"{path}: not a .npy array ({' '.join(str(e).split())})") from None
        return _as_1d(values, path, what)
    out = []
    for n, tok in _load_text(path, what):
        try:
            out.append(float(tok))
        except ValueError:
            raise InputError(f"{path}, line {n}: {tok!r} is not {_ONE[what]}") from None
    return np.asarray(out, dtype=np.float64)


def _integers(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise InputError(f"{path}: entry {int(np.argmax(bad))} ({values[bad][0]!r}) is not a whole number ({what})")
    return values.astype(np.int64)


def read_index_list(path: str | Path) -> np.ndarray:
    """0-based particle indices (int64, in file order) from a text list (one or more per line, ``#`` comments), a
    ``.npy`` array or a ``.pkl`` (cryoDRGN / tomoDRGN ``ind.pkl``). InputError naming the file for anything else."""
    path = Path(path)
    return _integers(_read_numbers(path, "particle indices"), path, "particle indices")


def read_labels(path: str | Path) -> np.ndarray:
    """One integer label per particle (int64) from a text file, ``.npy`` or ``.pkl`` (cryoDRGN ``labels.pkl``)."""
    path = Path(path)
    return _integers(_read_numbers(path, "labels"), path, "labels")


def read_values(path: str | Path) -> np.ndarray:
    """One number per particle (float64) from a text file, ``.npy`` or ``.pkl``."""
    return _read_numbers(path, "values").astype(np.float64)
