"""PNG plots for analyses (matplotlib, Agg backend; no display needed).

Each picture has a ``*_figure`` function returning the :class:`matplotlib.figure.Figure` (for tests and for callers
that compose it) and a ``plot_*`` wrapper that writes it to ``out`` and returns that path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tomodrgn.io.errors import InputError

DENSITY_MIN_POINTS = 200
"""A latent plot of at least this many points has a density layer under them (fewer: the points are the density)."""
CLUSTER_LEGEND_MAX = 10
"""A latent plot with at most this many clusters has a legend (number, size); every cluster is also numbered at its
centre, which is what a plot of more clusters shows."""


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Write ``fig`` to ``out`` (PNG, 120 dpi, parent folders made); returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out


def _legend_place(n_points: int) -> str:
    """Legend location: the emptiest corner ("best") for a plot of up to 5,000 points, where finding it is quick."""
    return "best" if n_points <= 5000 else "upper right"


def _axis_label(name: str, variance: Sequence[float] | None, i: int) -> str:
    """``name`` with its share of the variance (``variance[i]``, a fraction) when known: ``PC1 (42.1 % of
    variance)``."""
    if variance is None or i >= len(variance) or not np.isfinite(variance[i]):
        return name
    return f"{name} ({100.0 * float(variance[i]):.1f} % of variance)"


def count_ticks(vmax: float) -> list[float]:
    """Colour-bar ticks for counts from 1 to ``vmax``: 1, 2, 5, 10, 20, 50 … (powers of ten alone when that would
    give more than six), written as plain numbers by the caller."""
    series = [m * 10**e for e in range(10) for m in (1, 2, 5) if m * 10**e <= max(vmax, 1.0)]
    return series if len(series) <= 6 else [10**e for e in range(10) if 10**e <= vmax]


def _density_layer(fig: Figure, ax, coords: np.ndarray, unit: str) -> None:
    """Grey hexagon counts of ``coords`` under everything else (zorder 0, log colour scale) with a colour bar
    ticked in plain counts (1, 10, 100)."""
    grid = int(np.clip(0.8 * np.sqrt(len(coords)), 15, 60))  # hexagons across: finer with more points
    greys = ListedColormap(colormaps["Greys"](np.linspace(0.03, 0.45, 64)), "light greys")  # never black
    hb = ax.hexbin(coords[:, 0], coords[:, 1], gridsize=grid, cmap=greys, mincnt=1, norm=LogNorm(), linewidths=0)
    hb.set_zorder(0)
    vmax = max(float(np.max(hb.get_array())), 2.0)
    hb.set_clim(1.0, vmax)
    cbar = fig.colorbar(hb, ax=ax, label=f"{unit} per hexagon", shrink=0.8, pad=0.02)
    cbar.set_ticks(count_ticks(vmax))
    cbar.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    cbar.ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    cbar.ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def cluster_palette(n: int) -> list[tuple[float, float, float]]:
    """``n`` colours, one per cluster in label order (tab10 then tab20b, repeated): the same cluster keeps its
    colour whatever the number of clusters."""
    palette = list(colormaps["tab10"].colors) + list(colormaps["tab20b"].colors)
    return [tuple(palette[i % len(palette)]) for i in range(n)]


def _label_clusters(ax, coords, names, idx, colours, centres, unit: str) -> None:
    """Number each cluster at its centre (``centres[i]`` for the i-th label, else the median of its points) in a
    white box edged in its colour (gid ``cluster <label>``); a legend (number and size) when there are at most
    :data:`CLUSTER_LEGEND_MAX` clusters."""
    sizes = np.bincount(idx, minlength=len(names))
    for i, name in enumerate(names):
        if centres is not None and i < len(centres):
            x, y = centres[i, :2]
        else:
            x, y = np.median(coords[idx == i, :2], axis=0)
        box = {"boxstyle": "round,pad=0.25", "fc": "white", "ec": colours[i], "lw": 1.8, "alpha": 0.85}
        ax.text(x, y, str(name), ha="center", va="center", fontsize=7, fontweight="bold", bbox=box, zorder=4,
                gid=f"cluster {name}")  # fmt: skip
        if len(names) <= CLUSTER_LEGEND_MAX:
            ax.scatter([], [], color=colours[i], s=20, label=f"{name} ({sizes[i]} {unit})")
    if len(names) <= CLUSTER_LEGEND_MAX:
        ax.legend(title="cluster", fontsize=7, title_fontsize=7, loc=_legend_place(len(coords)), framealpha=0.8)


def latent_figure(
    coords: np.ndarray,
    labels: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    axis_names: Sequence[str] = ("PC1", "PC2"),
    title: str = "",
    variance: Sequence[float] | None = None,
    unit: str = "particles",
) -> Figure:
    """2-D latent scatter of ``coords`` (n, 2) over a faint hexagon density (from :data:`DENSITY_MIN_POINTS`
    points; colour bar in plain counts of ``unit``), points coloured by cluster ``labels`` (n,), each cluster numbered
    at its centre (``centres`` (k, 2), the i-th for the i-th smallest label; else its median) and listed in a legend
    when there are few.
    ``variance``: the fraction of variance of each axis (PCA), written on the axis labels."""
    coords = np.asarray(coords, dtype=np.float64)
    centres = None if centres is None else np.atleast_2d(np.asarray(centres, dtype=np.float64))
    fig = Figure(figsize=(6.4, 5))
    ax = fig.add_subplot()
    if len(coords) >= DENSITY_MIN_POINTS:
        _density_layer(fig, ax, coords, unit)
    size = 4 if len(coords) > 5000 else 6 if len(coords) > 1000 else 12 if len(coords) > 200 else 25
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], c="tab:blue", s=size, zorder=2, alpha=0.8, linewidths=0)
        if centres is not None:
            ax.scatter(centres[:, 0], centres[:, 1], c="k", marker="x", s=40, zorder=3)
    else:
        names, idx = np.unique(np.asarray(labels), return_inverse=True)
        colours = cluster_palette(len(names))
        ax.scatter(coords[:, 0], coords[:, 1], c=[colours[i] for i in idx], s=size, zorder=2, alpha=0.8, linewidths=0)
        _label_clusters(ax, coords, names, idx, colours, centres, unit)
    ax.set_xlabel(_axis_label(axis_names[0], variance, 0))
    ax.set_ylabel(_axis_label(axis_names[1], variance, 1))
    ax.set_title(f"{title}: {len(coords)} {unit}" if title else f"{len(coords)} {unit}")
    return fig


def plot_latent(
    coords: np.ndarray,
    out: str | Path,
    labels: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    axis_names: Sequence[str] = ("PC1", "PC2"),
    title: str = "",
    variance: Sequence[float] | None = None,
    unit: str = "particles",
) -> Path:
    """Write :func:`latent_figure` to ``out`` (PNG)."""
    return save_figure(latent_figure(coords, labels, centres, axis_names, title, variance, unit), out)


def volume_pca_figure(
    coords: np.ndarray, labels: np.ndarray, centre_volumes: np.ndarray, variance: Sequence[float]
) -> Figure:
    """:func:`latent_figure` of sampled volumes: their volume PC1/PC2 ``coords`` (n, n_pc; PC2 = 0 with a single
    component), clusters ``labels`` (n,) numbered at the volumes ``centre_volumes`` (k,) nearest their centres,
    axes with their fraction of ``variance``; counted as sampled volumes, not particles."""
    coords = np.asarray(coords, dtype=np.float64)
    coords2 = coords[:, :2] if coords.shape[1] >= 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return latent_figure(coords2, labels, coords2[np.asarray(centre_volumes, dtype=np.int64)],
                         ("volume PC1", "volume PC2"), "volume PCA", variance, "sampled volumes")  # fmt: skip


def plot_volume_pca(
    coords: np.ndarray, labels: np.ndarray, centre_volumes: np.ndarray, variance: Sequence[float], out: str | Path
) -> Path:
    """Write :func:`volume_pca_figure` to ``out`` (PNG)."""
    return save_figure(volume_pca_figure(coords, labels, centre_volumes, variance), out)


def explained_variance_figure(ratio: np.ndarray, title: str = "PCA of z") -> Figure:
    """Bar chart of the fraction of variance per principal component, with the cumulative sum."""
    ratio = np.asarray(ratio, dtype=np.float64)
    x = np.arange(1, len(ratio) + 1)
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    ax.bar(x, ratio, color="tab:blue", label="per PC")
    ax.plot(x, np.cumsum(ratio), "o-", color="tab:orange", label="cumulative")
    ax.set_xlabel("principal component")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("fraction of variance explained")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title(title)
    return fig


def plot_explained_variance(ratio: np.ndarray, out: str | Path, title: str = "PCA of z") -> Path:
    """Write :func:`explained_variance_figure` to ``out`` (PNG)."""
    return save_figure(explained_variance_figure(ratio, title), out)


def fsc_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], thresholds: Sequence[float] = (0.5, 0.143), title: str = "FSC"
) -> Figure:
    """FSC curves ``{name: (freq Å⁻¹, fsc)}`` with a labelled horizontal line at each threshold."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, (freq, curve) in curves.items():
        ax.plot(freq, curve, label=name)
    for t in thresholds:
        ax.axhline(t, color="grey", ls="--", lw=0.8, gid=f"threshold {t:g}")
        ax.annotate(f"{t:g}", (1.0, t), xycoords=("axes fraction", "data"), xytext=(2, 0),
                    textcoords="offset points", va="center", fontsize=7, color="grey")  # fmt: skip
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    if curves:
        ax.legend(fontsize=7)
    ax.set_title(title)
    return fig


def plot_fsc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out: str | Path,
    thresholds: Sequence[float] = (0.5, 0.143),
    title: str = "FSC",
) -> Path:
    """Write :func:`fsc_figure` to ``out`` (PNG)."""
    return save_figure(fsc_figure(curves, thresholds, title), out)


def confusion_figure(
    matrix: np.ndarray,
    true_names: Sequence | None = None,
    pred_names: Sequence | None = None,
    title: str = "confusion matrix",
) -> Figure:
    """Heatmap of a confusion matrix (rows: true classes, columns: predicted clusters) with counts."""
    m = np.asarray(matrix)
    fig = Figure(figsize=(1.5 + 0.5 * m.shape[1], 1 + 0.5 * m.shape[0]))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="viridis")
    fig.colorbar(im, ax=ax, label="particles")
    if m.size <= 400:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="w" if v < m.max() / 2 else "k")
    ax.set_xticks(range(m.shape[1]), [str(p) for p in (pred_names if pred_names is not None else range(m.shape[1]))])
    ax.set_yticks(range(m.shape[0]), [str(t) for t in (true_names if true_names is not None else range(m.shape[0]))])
    ax.set_xlabel("predicted cluster")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def plot_confusion(
    matrix: np.ndarray,
    out: str | Path,
    true_names: Sequence | None = None,
    pred_names: Sequence | None = None,
    title: str = "confusion matrix",
) -> Path:
    """Write :func:`confusion_figure` to ``out`` (PNG)."""
    return save_figure(confusion_figure(matrix, true_names, pred_names, title), out)


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


LOSS_LABELS = {
    "loss": "loss (MSE + β·KL)",
    "mse": "training MSE",
    "val_loss": "held-out tilts' MSE",
    "kl": "KL (right axis)",
}
"""Legend names of the ``train.log`` columns drawn by :func:`loss_figure`."""


def loss_figure(log: str | Path | pd.DataFrame, columns: Sequence[str] = ("loss", "mse", "val_loss", "kl")) -> Figure:
    """Loss per epoch from a ``train.log`` path (or its parsed table): the columns present, the weighted mean squared
    error per lattice point (of the normalised images) on the left axis, ``kl`` (nats per particle) on a right
    axis; one legend for both."""
    df = parse_train_log(log) if not isinstance(log, pd.DataFrame) else log
    if df.empty:
        raise InputError(f"no 'epoch … loss …' lines in {log}")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    top, handles = ax, []
    for col in columns:
        if col not in df:
            continue
        if col == "kl":
            top = ax.twinx()
            handles += top.plot(df["epoch"], df[col], "s--", color="tab:red", label=LOSS_LABELS[col])
            top.set_ylabel("KL divergence (nats per particle)")
        else:
            handles += ax.plot(df["epoch"], df[col], "o-", label=LOSS_LABELS.get(col, col))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("weighted MSE per lattice point")
    # one legend for both axes, under the plot: it hides no line of either
    top.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    ax.set_title("training and held-out loss" if "val_loss" in df else "training loss")
    return fig


def plot_loss(
    log: str | Path | pd.DataFrame, out: str | Path, columns: Sequence[str] = ("loss", "mse", "val_loss", "kl")
) -> Path:
    """Write :func:`loss_figure` to ``out`` (PNG)."""
    return save_figure(loss_figure(log, columns), out)


def metrics_figure(
    df: pd.DataFrame,
    columns: Sequence[str],
    title: str = "",
    x: str = "epoch",
    thresholds: Mapping[str, float] | None = None,
    ylabel: str = "value",
    xlabel: str | None = None,
) -> Figure:
    """Line plot of the ``columns`` present in ``df`` against column ``x`` (e.g. convergence criteria per epoch),
    with a dashed line of the same colour at each column's threshold in ``thresholds`` (the values a verdict uses;
    gid ``threshold <column>``)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    present = [c for c in columns if c in df]
    for col in present:
        (line,) = ax.plot(df[x], df[col], "o-", label=col)
        if thresholds and col in thresholds:
            t = float(thresholds[col])
            ax.axhline(t, color=line.get_color(), ls="--", lw=1.0, label=f"{col} ≥ {t:g}", gid=f"threshold {col}")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylim(min(0.0, float(np.nanmin(df[present].to_numpy(), initial=0.0))), 1.05)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the plot
    ax.set_title(title)
    return fig


def plot_metrics(
    df: pd.DataFrame,
    columns: Sequence[str],
    out: str | Path,
    title: str = "",
    x: str = "epoch",
    thresholds: Mapping[str, float] | None = None,
    ylabel: str = "value",
    xlabel: str | None = None,
) -> Path:
    """Write :func:`metrics_figure` to ``out`` (PNG)."""
    return save_figure(metrics_figure(df, columns, title, x, thresholds, ylabel, xlabel), out)


def path_figure(
    coords: np.ndarray,
    path_coords: np.ndarray,
    axis_names: Sequence[str] = ("PC1", "PC2"),
    title: str = "",
    anchors: Sequence[int] | None = None,
    anchor_names: Sequence[str] | None = None,
    variance: Sequence[float] | None = None,
) -> Figure:
    """Particles ``coords`` (n, 2) in grey with a path ``path_coords`` (m, 2) over them; every anchor (positions
    ``anchors`` in the path, default its start and end) marked (one Line2D, gid ``anchors``) and named
    (``anchor_names``, default start / via / end). ``variance``: each axis's fraction of variance."""
    coords, path_coords = np.asarray(coords, dtype=np.float64), np.asarray(path_coords, dtype=np.float64)
    anchors = [0, len(path_coords) - 1] if anchors is None else [int(a) for a in anchors]
    if anchor_names is None:
        anchor_names = ["start", *["via"] * (len(anchors) - 2), "end"] if len(anchors) > 1 else ["start"]
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    ax.scatter(coords[:, 0], coords[:, 1], c="lightgrey", s=8, linewidths=0, label=f"{len(coords)} particles")
    ax.plot(path_coords[:, 0], path_coords[:, 1], "o-", color="tab:red", ms=3, lw=1.2,
            label=f"path ({len(path_coords)} points)")  # fmt: skip
    at = path_coords[anchors]
    ax.plot(at[:, 0], at[:, 1], ls="none", marker="o", ms=9, mfc="gold", mec="black", zorder=4,
            label=f"anchors ({len(anchors)})", gid="anchors")  # fmt: skip
    for (x, y), name in zip(at[:, :2], anchor_names):
        ax.annotate(name, (x, y), fontsize=8, xytext=(6, 6), textcoords="offset points", zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})  # fmt: skip
    ax.set_xlabel(_axis_label(axis_names[0], variance, 0))
    ax.set_ylabel(_axis_label(axis_names[1], variance, 1))
    ax.legend(fontsize=7, loc=_legend_place(len(coords)))
    ax.set_title(title)
    return fig


def plot_path(
    coords: np.ndarray,
    path_coords: np.ndarray,
    out: str | Path,
    axis_names: Sequence[str] = ("PC1", "PC2"),
    title: str = "",
    anchors: Sequence[int] | None = None,
    anchor_names: Sequence[str] | None = None,
    variance: Sequence[float] | None = None,
) -> Path:
    """Write :func:`path_figure` to ``out`` (PNG)."""
    return save_figure(path_figure(coords, path_coords, axis_names, title, anchors, anchor_names, variance), out)
