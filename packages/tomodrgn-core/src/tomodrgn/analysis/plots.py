"""PNG plots for analyses (matplotlib, Agg backend; no display needed). Every function writes ``out`` and returns it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tomodrgn.io.errors import InputError


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_latent(
    coords: np.ndarray,
    out: str | Path,
    labels: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    axis_names: Sequence[str] = ("PC1", "PC2"),
    title: str = "",
) -> Path:
    """2-D latent scatter (n, 2) over a hexbin density, points coloured by cluster ``labels``; ``centres`` (k, 2)
    are marked and numbered."""
    coords = np.asarray(coords, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 5))
    if len(coords) >= 20:
        hb = ax.hexbin(coords[:, 0], coords[:, 1], gridsize=40, cmap="Greys", mincnt=1, bins="log", alpha=0.5)
        fig.colorbar(hb, ax=ax, label="particles (log)")
    if labels is None:
        colour = "tab:blue"
    else:  # one fixed colour per cluster (tab10 then tab20b), independent of how many clusters there are
        palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20b").colors)
        _, idx = np.unique(np.asarray(labels), return_inverse=True)
        colour = [palette[i % len(palette)] for i in idx]
    size = 6 if len(coords) > 2000 else 12
    ax.scatter(coords[:, 0], coords[:, 1], c=colour, s=size, zorder=2, alpha=0.7, linewidths=0)
    if centres is not None:
        centres = np.asarray(centres)
        ax.scatter(centres[:, 0], centres[:, 1], c="k", marker="x", s=40)
        for i, (x, y) in enumerate(centres[:, :2]):
            ax.annotate(str(i), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title or f"{len(coords)} particles")
    return _save(fig, out)


def plot_explained_variance(ratio: np.ndarray, out: str | Path, title: str = "PCA of z") -> Path:
    """Bar chart of explained variance ratio per principal component, with the cumulative sum."""
    ratio = np.asarray(ratio, dtype=np.float64)
    x = np.arange(1, len(ratio) + 1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.bar(x, ratio, color="tab:blue", label="per PC")
    ax.plot(x, np.cumsum(ratio), "o-", color="tab:orange", label="cumulative")
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title(title)
    return _save(fig, out)


def plot_fsc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out: str | Path,
    thresholds: Sequence[float] = (0.5, 0.143),
    title: str = "FSC",
) -> Path:
    """FSC curves ``{name: (freq Å⁻¹, fsc)}`` with horizontal threshold lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (freq, curve) in curves.items():
        ax.plot(freq, curve, label=name)
    for t in thresholds:
        ax.axhline(t, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    if curves:
        ax.legend(fontsize=7)
    ax.set_title(title)
    return _save(fig, out)


def plot_confusion(
    matrix: np.ndarray,
    out: str | Path,
    true_names: Sequence | None = None,
    pred_names: Sequence | None = None,
    title: str = "confusion matrix",
) -> Path:
    """Heatmap of a confusion matrix (rows: true classes, columns: predicted clusters) with counts."""
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * m.shape[1], 1 + 0.5 * m.shape[0]))
    im = ax.imshow(m, cmap="viridis")
    fig.colorbar(im, ax=ax)
    if m.size <= 400:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="w" if v < m.max() / 2 else "k")
    ax.set_xticks(range(m.shape[1]), [str(p) for p in (pred_names if pred_names is not None else range(m.shape[1]))])
    ax.set_yticks(range(m.shape[0]), [str(t) for t in (true_names if true_names is not None else range(m.shape[0]))])
    ax.set_xlabel("predicted cluster")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return _save(fig, out)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"([A-Za-z_][\w/]*)\s*[=:]?\s*({_NUM})(?![\w.])")


def parse_train_log(path: str | Path) -> pd.DataFrame:
    """Per-epoch numbers from a run's ``train.log``.

    Reads every line (not starting with ``#``) that contains ``epoch`` and ``loss``; each ``name value`` /
    ``name=value`` / ``name: value`` pair becomes a column (e.g. ``epoch 3 loss 0.12 mse 0.11 kl 2.1``, as
    :mod:`tomodrgn.training.loop` writes). A later line for the same epoch (a resumed run) replaces the earlier.
    """
    rows: dict[float, dict[str, float]] = {}
    for line in Path(path).read_text().splitlines():
        if line.lstrip().startswith("#") or "epoch" not in line or "loss" not in line:
            continue
        values = {k: float(v) for k, v in _PAIR.findall(line)}
        if "epoch" in values and "loss" in values:
            rows[values["epoch"]] = values
    df = pd.DataFrame(list(rows.values()))
    if len(df):
        df["epoch"] = df["epoch"].astype(int)
        df = df.sort_values("epoch").reset_index(drop=True)
    return df


def plot_loss(
    log: str | Path | pd.DataFrame, out: str | Path, columns: Sequence[str] = ("loss", "mse", "val_loss", "kl")
) -> Path:
    """Loss per epoch from a ``train.log`` path (or its parsed table); columns present are drawn on twin axes
    (``kl`` on the right; ``val_loss``, the held-out tilts' error, beside the training ``mse``)."""
    df = parse_train_log(log) if not isinstance(log, pd.DataFrame) else log
    if df.empty:
        raise InputError(f"no 'epoch … loss …' lines in {log}")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax2 = None
    for col in columns:
        if col not in df:
            continue
        if col == "kl":
            ax2 = ax.twinx()
            ax2.plot(df["epoch"], df[col], "s--", color="tab:red", label=col)
            ax2.set_ylabel("KL")
        else:
            ax.plot(df["epoch"], df[col], "o-", label=col)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    if ax2 is not None:
        ax2.legend(loc="upper center")
    ax.set_title("training and held-out loss" if "val_loss" in df else "training loss")
    return _save(fig, out)


def plot_metrics(df: pd.DataFrame, columns: Sequence[str], out: str | Path, title: str = "", x: str = "epoch") -> Path:
    """Line plot of the ``columns`` present in ``df`` against column ``x`` (e.g. convergence criteria per epoch)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for col in columns:
        if col in df:
            ax.plot(df[x], df[col], "o-", label=col)
    ax.set_xlabel(x)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylim(min(0.0, float(np.nanmin(df[[c for c in columns if c in df]].to_numpy(), initial=0.0))), 1.05)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _save(fig, out)


def plot_path(
    coords: np.ndarray, path_coords: np.ndarray, out: str | Path, axis_names: Sequence[str] = ("PC1", "PC2"), title=""
) -> Path:
    """Particles (n, 2) in grey with a path (m, 2) drawn over them, start and end marked."""
    coords, path_coords = np.asarray(coords, dtype=np.float64), np.asarray(path_coords, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(coords[:, 0], coords[:, 1], c="lightgrey", s=10, linewidths=0)
    ax.plot(path_coords[:, 0], path_coords[:, 1], "o-", color="tab:red", ms=4)
    ax.annotate("start", path_coords[0, :2], fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.annotate("end", path_coords[-1, :2], fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    return _save(fig, out)
