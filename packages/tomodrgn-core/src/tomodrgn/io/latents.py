"""Latent files: ours (``.npy``, text) and cryoDRGN / tomoDRGN pickles (``z.pkl``: μ, then log σ², two pickles)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tomodrgn.io.errors import InputError


def read_latents(path: str | Path) -> np.ndarray:
    """Latent means (n, zdim) float32 from ``.npy``, ``.txt`` (one z per row) or ``.pkl`` (the first pickle: μ)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        if path.suffix == ".pkl":
            with path.open("rb") as f:
                z = pickle.load(f)
        elif path.suffix == ".txt":
            z = np.loadtxt(path, ndmin=2)
        else:
            z = np.load(path)
        z = np.asarray(z, dtype=np.float32)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
        raise InputError(f"{path}: not a latent file (.npy, .txt or .pkl of an (n, zdim) array of numbers)") from None
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or len(z) == 0:
        raise InputError(f"{path}: latents must be an (n, zdim) array, got shape {z.shape}")
    return z


def write_latents_pickle(path: str | Path, mu: np.ndarray, logvar: np.ndarray | None = None) -> Path:
    """``path`` as cryoDRGN / tomoDRGN write ``z.pkl``: μ, then log σ² (when given), float32, two pickles."""
    path = Path(path)
    with path.open("wb") as f:
        pickle.dump(np.asarray(mu, dtype=np.float32), f)
        if logvar is not None:
            pickle.dump(np.asarray(logvar, dtype=np.float32), f)
    return path
