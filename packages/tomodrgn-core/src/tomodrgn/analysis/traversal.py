"""Latent traversals written as volume series: along a principal component of z, and shortest paths through the
particles' k-nearest-neighbour graph in z between chosen particles (as tomoDRGN's ``graph_traversal``).

Outputs of a traversal (``write_traversal``) in its folder: ``vol_NNN.mrc`` (D³, the training pixel size),
``z_values.txt`` (one z per line), ``path.png`` (the path over the particles' z PCA) and, for graph paths,
``path_particles.txt`` (the particle indices visited, STAR order).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import dijkstra
from sklearn.neighbors import kneighbors_graph

from tomodrgn.analysis.latent import _as_z, pc_traversal, pca
from tomodrgn.analysis.volumes import Decoder
from tomodrgn.io.errors import InputError


@dataclass
class Traversal:
    """A written traversal: ``z`` (m, zdim) points, ``volume_paths`` (m), ``particles`` (m,) indices visited (graph
    paths) or None, ``values`` (m,) PC coordinates (PC traversals) or path length so far in z (graph paths),
    ``outdir``."""

    z: np.ndarray
    volume_paths: list[Path]
    particles: np.ndarray | None
    values: np.ndarray
    outdir: Path


def knn_graph(z: np.ndarray, k: int = 10, avg_neighbors: float | None = None):
    """Symmetric sparse k-nearest-neighbour graph of z (edge weights = Euclidean distances). ``avg_neighbors``:
    keep only edges shorter than the (n · avg_neighbors)-th shortest neighbour distance, each particle counted as its
    own neighbour at distance 0 as the published tomoDRGN's ``--avg-neighbors`` counts it."""
    z = _as_z(z)
    g = kneighbors_graph(z, n_neighbors=max(1, min(k, len(z) - 1)), mode="distance")
    if avg_neighbors is not None:
        distances = np.sort(g.data)
        nth = int(len(z) * avg_neighbors) - len(z)  # the n self-distances come first
        cut = distances[min(len(distances), max(1, nth)) - 1]
        g.data[g.data > cut] = 0
        g.eliminate_zeros()
    return g.maximum(g.T)


def graph_path(z: np.ndarray, anchors: Sequence[int], k: int = 10, avg_neighbors: float | None = None) -> np.ndarray:
    """Particle indices on the shortest path through the k-NN graph of z (:func:`knn_graph`) visiting ``anchors`` in
    order (the anchors included, no repeats at the joins). Raises :class:`InputError` naming anchors that are not
    connected; where only the ``avg_neighbors`` cut parts them, a warning says so and every k-NN edge is used."""
    z = _as_z(z)
    anchors = [int(a) for a in anchors]
    if len(anchors) < 2:
        raise InputError(f"graph traversal needs at least 2 anchor particles, got {anchors}")
    bad = [a for a in anchors if not 0 <= a < len(z)]
    if bad:
        raise InputError(f"anchor particle {bad[0]} out of range 0..{len(z) - 1}")
    try:
        return _shortest_path(knn_graph(z, k, avg_neighbors), anchors, k)
    except InputError:
        if avg_neighbors is None:
            raise
        message = f"--avg-neighbors {avg_neighbors:g} leaves anchors unconnected; using every edge of the {k}-NN graph"
        warnings.warn(message, UserWarning, stacklevel=2)
        return _shortest_path(knn_graph(z, k), anchors, k)


def _shortest_path(graph, anchors: list[int], k: int) -> np.ndarray:
    path = [anchors[0]]
    for a, b in zip(anchors[:-1], anchors[1:]):
        _, pred = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
        if a != b and pred[b] < 0:
            raise InputError(f"particles {a} and {b} are not connected in the {k}-NN graph of z: raise --max-neighbors")
        leg, node = [], b
        while node != a:
            leg.append(int(node))
            node = pred[node]
        path.extend(reversed(leg))
    return np.asarray(path, dtype=np.int64)


def write_traversal(
    decode: Decoder,
    z_points: np.ndarray,
    outdir: str | Path,
    pixel_size: float,
    z_all: np.ndarray,
    values: np.ndarray,
    particles: np.ndarray | None = None,
    title: str = "",
    progress: Callable[[int, int], None] | None = None,
    anchors: Sequence[int] | None = None,
    anchor_names: Sequence[str] | None = None,
) -> Traversal:
    """Decode ``z_points`` (m, zdim) into ``vol_NNN.mrc`` under ``outdir`` and write ``z_values.txt``, ``path.png``
    (over the PCA of ``z_all``; every anchor marked: positions ``anchors`` in the path named ``anchor_names``,
    default the start and the end) and ``path_particles.txt`` when ``particles`` is given."""
    from tomodrgn.analysis import plots
    from tomodrgn.export.selections import write_index_list
    from tomodrgn.io.mrc import write_mrc

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    z_points = np.atleast_2d(np.asarray(z_points, dtype=np.float64))
    paths = []
    for i, zi in enumerate(z_points):
        vol = np.asarray(decode(zi[None]))
        paths.append(write_mrc(out / f"vol_{i:03d}.mrc", vol.reshape(vol.shape[-3:]), pixel_size))
        if progress is not None:
            progress(i + 1, len(z_points))
    np.savetxt(out / "z_values.txt", z_points, header=f"{title}; values: {np.round(values, 4).tolist()}")
    if particles is not None:
        write_index_list(out / "path_particles.txt", particles, f"{title}: particles visited, in path order")
    plots.save_figure(traversal_figure(z_all, z_points, title, anchors, anchor_names), out / "path.png")
    return Traversal(z_points, paths, particles, np.asarray(values, dtype=np.float64), out)


def traversal_figure(
    z_all: np.ndarray,
    z_points: np.ndarray,
    title: str = "",
    anchors: Sequence[int] | None = None,
    anchor_names: Sequence[str] | None = None,
):
    """The path ``z_points`` (m, zdim) over the particles ``z_all`` (n, zdim) in their PC1/PC2 plane (axes with
    their % of variance), every anchor marked (:func:`tomodrgn.analysis.plots.path_figure`): a Figure."""
    from tomodrgn.analysis import plots

    res = pca(z_all, 2)
    proj = (np.atleast_2d(z_points) - res.mean) @ res.components.T
    pad = lambda c: c if c.shape[1] >= 2 else np.pad(c, ((0, 0), (0, 2 - c.shape[1])))  # noqa: E731
    return plots.path_figure(pad(res.coords), pad(proj), ("PC1", "PC2"), title, anchors, anchor_names,
                             res.explained_variance_ratio)  # fmt: skip


def pc_traversal_run(
    decode: Decoder,
    z: np.ndarray,
    outdir: str | Path,
    pixel_size: float,
    pcs: Sequence[int] = (1, 2),
    n_points: int = 10,
    lo_percentile: float = 5.0,
    hi_percentile: float = 95.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, Traversal]:
    """Volumes along each principal component in ``pcs`` (1-based) of z, ``outdir/pcN/`` (see
    :func:`tomodrgn.analysis.latent.pc_traversal`)."""
    z = _as_z(z)
    out = {}
    for pc in pcs:
        if pc > min(z.shape):
            raise InputError(f"PC{pc} does not exist: z has {min(z.shape)} principal components")
        zp, values = pc_traversal(z, pc, n_points, lo_percentile, hi_percentile)
        ends = (f"start: percentile {lo_percentile:g}", f"end: percentile {hi_percentile:g}")
        out[pc] = write_traversal(decode, zp, Path(outdir) / f"pc{pc}", pixel_size, z, values, title=f"PC{pc}",
                                  progress=progress, anchors=[0, len(zp) - 1], anchor_names=ends)  # fmt: skip
    return out


def anchor_positions(path: np.ndarray, anchors: Sequence[int]) -> list[int]:
    """Position of each of ``anchors`` (particle indices, in visiting order) in ``path`` (particle indices of
    :func:`graph_path`): each searched from the previous one's position on; anchors not on the path are left out."""
    path = np.asarray(path)
    out, start = [], 0
    for a in anchors:
        hits = np.flatnonzero(path[start:] == int(a))
        if hits.size:
            start += int(hits[0])
            out.append(start)
    return out


def graph_anchor_marks(path: np.ndarray, anchors: Sequence[int]) -> tuple[list[int], list[str]]:
    """(positions in ``path`` of every anchor (:func:`anchor_positions`), their names: ``start: particle i``,
    ``via: particle j`` …, ``end: particle k``) for the path picture."""
    at = anchor_positions(path, anchors)
    role = lambda i: "start" if i == 0 else "end" if i == len(at) - 1 else "via"  # noqa: E731
    return at, [f"{role(i)}: particle {int(path[p])}" for i, p in enumerate(at)]


def graph_traversal_run(
    decode: Decoder,
    z: np.ndarray,
    anchors: Sequence[int],
    outdir: str | Path,
    pixel_size: float,
    k: int = 10,
    progress: Callable[[int, int], None] | None = None,
    path: np.ndarray | None = None,
) -> Traversal:
    """Volumes at the particles on the k-NN-graph shortest path through ``anchors`` (:func:`graph_path`; ``path``:
    that path, found before)."""
    z = _as_z(z)
    idx = graph_path(z, anchors, k) if path is None else np.asarray(path, dtype=np.int64)
    steps = np.linalg.norm(np.diff(z[idx], axis=0), axis=1)
    values = np.concatenate([[0.0], np.cumsum(steps)])
    title = "graph path " + " → ".join(str(int(a)) for a in anchors)
    at, names = graph_anchor_marks(idx, anchors)
    return write_traversal(decode, z[idx], outdir, pixel_size, z, values, idx, title, progress, at, names)


def truth_coordinate_near(z: np.ndarray, coordinate: np.ndarray, z_points: np.ndarray, n_near: int = 10) -> np.ndarray:
    """Ground-truth path coordinate matching each latent point: the median true ``coordinate`` (n,) of the
    ``n_near`` particles nearest (in z) to each of ``z_points`` (m, zdim). For simulated continuous data."""
    z = _as_z(z)
    zp = np.atleast_2d(np.asarray(z_points, dtype=np.float64))
    d = ((zp[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    near = np.argsort(d, axis=1)[:, : max(1, min(n_near, len(z)))]
    return np.median(np.asarray(coordinate, dtype=np.float64)[near], axis=1)


def truth_volumes_along(
    truth_path: str | Path, z: np.ndarray, z_points: np.ndarray, n_near: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth volumes (m, D, D, D) matching latent points of a simulated *continuous* dataset, and their path
    coordinates (m,): for each point, the median true coordinate of its ``n_near`` nearest particles in z
    (:func:`truth_coordinate_near`); the volume is the exact conformation of the particle whose true coordinate is
    closest to it (``truth.npz`` amplitudes/offsets rendered by the simulator's phantom)."""
    from tomodrgn.simulate.phantom import render_particle
    from tomodrgn.simulate.presets import get_preset

    truth = np.load(truth_path)
    coordinate = np.asarray(truth["coordinate"], dtype=np.float64)
    if not np.isfinite(coordinate).all():
        raise InputError(f"{truth_path}: no continuous 'coordinate' per particle (not the continuous preset)")
    s = truth_coordinate_near(z, coordinate, z_points, n_near)
    d = int(truth["box_size"])
    phantom = get_preset(str(truth["preset"])).phantom
    vols = []
    for si in s:
        i = int(np.argmin(np.abs(coordinate - si)))
        vols.append(render_particle(phantom, d, truth["amplitudes"][i], truth["offsets"][i] * d))
    return np.stack(vols), s
