"""``analyze_volumes``: heterogeneity analysed in volume space rather than latent space (as tomoDRGN's command).

Volumes are decoded at ``n_volumes`` latent positions — the particles nearest the k-means centres of z (on-data,
default) or a random subset of particles; every particle when ``n_volumes`` ≥ their number — optionally masked (a
given mask, or :func:`soft_mask` of their mean), then PCA (:func:`tomodrgn.analysis.volumes.volume_pca`) and k-means
on the volume PC coordinates. Every particle takes the volume cluster of its nearest sampled latent position.

Outputs under ``outdir`` (default ``<run>/analyze_volumes.<epoch>/``)::

    volumes/vol_NNN.mrc, volumes/particles.txt   sampled volumes and the particle each was decoded from
    volumes/source.json                          what decoded them (``source``), checked by ``resume``
    mask.mrc                                     the mask used (if any)
    vol_pca.png, vol_pca_variance.png            volume PC1/PC2 scatter coloured by cluster; explained variance
    vol_pca_coords.npy, labels_volumes.npy       PC coordinates and cluster of each sampled volume
    kmeans<k>/labels.npy                         volume cluster of every particle (STAR order)
    kmeans<k>/cluster_NNN.txt (.star)            per-cluster particle lists (and STAR subsets)
    kmeans<k>/centre_vol_NNN.mrc                 sampled volume nearest each cluster centre
    pcN/vol_NNN.mrc                              mean + t·component N, t from the 5th to 95th percentile
    report.md
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomodrgn.analysis.latent import _as_z, kmeans, nearest_to_centres
from tomodrgn.analysis.metrics import soft_mask
from tomodrgn.analysis.volumes import Decoder, VolumePCA, volume_pca
from tomodrgn.io.errors import InputError

PCA_BATCH = 64  # volumes per IncrementalPCA batch: memory ~ this many volumes (float64), whatever their number
DECODE_BATCH = 32  # volumes per decoder call: the z-free part of the decoder is computed once per call


@dataclass
class VolumeSpaceResult:
    """``sample_particles`` (n_volumes,) particles decoded; ``pca`` of their volumes; ``volume_labels``
    (n_volumes,), ``particle_labels`` (n_particles,) volume clusters; written ``files``; ``report``."""

    outdir: Path
    sample_particles: np.ndarray
    pca: VolumePCA
    volume_labels: np.ndarray
    particle_labels: np.ndarray
    pixel_size: float
    files: dict = field(default_factory=dict)
    report: Path | None = None


def sample_latent(z: np.ndarray, n: int, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """Indices (≤ n,) of particles whose z are decoded: nearest the k-means centres (``kmeans``) or random; every
    particle when n ≥ their number (k-means with a centre per particle would cost O(n²) for the same answer)."""
    z = _as_z(z)
    if n >= len(z):
        return np.arange(len(z), dtype=np.int64)
    n = max(1, n)
    if method == "kmeans":
        return np.unique(nearest_to_centres(z, kmeans(z, n, seed)[1]))
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(len(z), n, replace=False)).astype(np.int64)
    raise InputError(f"--sampling must be 'kmeans' or 'random', got {method!r}")


def volume_clusters(
    vols: np.ndarray | Callable[[], Iterable[np.ndarray]],
    n_components: int = 3,
    k: int = 5,
    mask: np.ndarray | None = None,
    seed: int = 0,
    n_volumes: int | None = None,
    batch_size: int = PCA_BATCH,
) -> tuple[VolumePCA, np.ndarray, np.ndarray]:
    """PCA of volumes and k-means on their PC coordinates: (pca, labels (m,), centre volume index (k,)).

    ``vols``: an array (m, D, D, D), or a factory of a fresh iterable of volumes (D, D, D) with ``n_volumes`` = m
    (read from disk: never all in memory). The PCA is streamed in batches of ``batch_size`` volumes."""
    if callable(vols):
        chunks, m = vols, int(n_volumes)
    else:
        m = len(vols)
        chunks = lambda: (vols[i : i + batch_size] for i in range(0, m, batch_size))  # noqa: E731
    n_components = max(1, min(n_components, m - 1 if m > 1 else 1))
    res = volume_pca(chunks, n_components=n_components, batch_size=min(batch_size, m), mask=mask)
    k = max(1, min(k, m))
    labels, centres = kmeans(res.coords, k, seed)
    return res, labels, nearest_to_centres(res.coords, centres)


def pc_volumes(res: VolumePCA, pc: int, n_points: int = 5, lo: float = 5.0, hi: float = 95.0) -> np.ndarray:
    """Volumes (n_points, D, D, D) ``mean + t · component`` along volume PC ``pc`` (1-based), t over the
    ``lo``–``hi`` percentiles of the sampled volumes' coordinates."""
    t = np.linspace(*np.percentile(res.coords[:, pc - 1], [lo, hi]), n_points)
    return res.mean[None] + t[:, None, None, None] * res.components[pc - 1][None]


def analyze_volumes(
    decode: Decoder,
    z: np.ndarray,
    outdir: str | Path,
    pixel_size: float,
    n_volumes: int = 50,
    sampling: str = "kmeans",
    mask: np.ndarray | str | None = "auto",
    n_components: int = 3,
    k: int = 5,
    n_pc_points: int = 5,
    star=None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    resume: bool = False,
    source: dict | None = None,
    volume_paths: list[Path] | None = None,
) -> VolumeSpaceResult:
    """Volume-space PCA and clustering (module docstring). ``mask``: an array (D, D, D), ``"auto"`` (soft mask of the
    mean sampled volume) or None; ``star``: training STAR path or ``ParticleSeries`` for the per-cluster STAR
    subsets (skipped when None). ``source``: what decodes (e.g. run, epoch, hand), recorded beside the volumes;
    ``resume``: keep the volumes an interrupted call with the same particles and ``source`` wrote in ``outdir``
    (each file is complete or absent: :func:`~tomodrgn.io.mrc.write_mrc`) and decode only the others.
    ``volume_paths``: volumes decoded before, one per particle in z's order (e.g. ``eval_vol`` of every particle's
    z, the published tomoDRGN's ``analyze_volumes --voldir``): analysed as they are, nothing decoded."""
    from tomodrgn.io.mrc import read_mrc

    z = _as_z(z)
    out = Path(outdir)
    if volume_paths is None:
        picks = sample_latent(z, n_volumes, sampling, seed)
        paths, total = _decode_volumes(decode, z, picks, out / "volumes", pixel_size, resume, source or {}, progress)
    else:
        picks, paths, total = _given_volumes(volume_paths, len(z))
    out.mkdir(parents=True, exist_ok=True)

    def volumes():
        return (read_mrc(path)[0] for path in paths)

    files: dict = {"volumes": out / "volumes" / "particles.txt" if volume_paths is None else paths[0].parent}
    mask = _resolve_mask(mask, total, len(paths), out, pixel_size, files)
    res, vlabels, centre_vols = volume_clusters(volumes, n_components, k, mask, seed, n_volumes=len(paths))
    k = int(vlabels.max()) + 1
    _write_volume_pca(res, vlabels, centre_vols, out, files)
    # each particle → its nearest sampled latent position → that volume's cluster (its own, when all were decoded)
    plabels = vlabels if len(picks) == len(z) else vlabels[nearest_to_centres(z[picks], z)]
    lists, centre_paths, stars = _write_clusters(plabels, k, centre_vols, paths, star, out / f"kmeans{k}", pixel_size)
    _write_pc_volumes(res, n_pc_points, out, pixel_size, files)
    decoded = _describe_volumes(len(z), len(picks), sampling, None if volume_paths is None else paths[0].parent)
    clusters = (lists, centre_paths, stars)
    report = _write_volume_report(res, vlabels, plabels, clusters, decoded, mask is not None, out, pixel_size, files)
    files.update(cluster_lists=lists, centre_volumes=centre_paths, cluster_stars=stars)
    return VolumeSpaceResult(out, picks, res, vlabels, plabels, pixel_size, files, report)


def _describe_volumes(n_particles: int, n_volumes: int, sampling: str, given: Path | None) -> str:
    """What the ``n_volumes`` analysed volumes are, for the report: those of the folder ``given`` (one per particle),
    one decoded per particle, or decoded at ``sampling`` latent positions of the ``n_particles``."""
    if given is not None:
        return f"the {n_particles} volumes of {given} (one per particle)"
    if n_volumes == n_particles:
        return f"one volume decoded for each of the {n_particles} particles"
    return f"{n_volumes} volumes decoded at {sampling} latent positions of {n_particles} particles"


def _resolve_mask(
    mask: np.ndarray | str | None, total: np.ndarray, n: int, out: Path, pixel_size: float, files: dict
) -> np.ndarray | None:
    """The mask (D, D, D) float32 to apply, or None: ``"auto"`` is :func:`soft_mask` of the mean of the ``n``
    volumes summing to ``total``; a mask is checked against the volumes' shape and written to ``out/mask.mrc``
    (``pixel_size`` Å/px), recorded in ``files["mask"]``."""
    from tomodrgn.io.mrc import write_mrc

    if isinstance(mask, str):
        if mask != "auto":
            raise InputError(f"mask must be an array, 'auto' or None, got {mask!r}")
        mask = soft_mask((total / n).astype(np.float32))
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != total.shape:
            raise InputError(f"mask has shape {mask.shape}, the volumes {total.shape}")
        files["mask"] = write_mrc(out / "mask.mrc", mask, pixel_size)
    return mask


def _write_volume_pca(res: VolumePCA, vlabels: np.ndarray, centre_vols: np.ndarray, out: Path, files: dict) -> None:
    """Write the sampled volumes' PC coordinates and clusters (``vol_pca_coords.npy``, ``labels_volumes.npy``) and
    the PC1/PC2 scatter (PC2 = 0 with a single component) and explained-variance plots (``files`` ``pca_plot``,
    ``variance_plot``)."""
    from tomodrgn.analysis import plots

    np.save(out / "vol_pca_coords.npy", res.coords)
    np.save(out / "labels_volumes.npy", vlabels)
    files["pca_plot"] = plots.plot_volume_pca(
        res.coords, vlabels, centre_vols, res.explained_variance_ratio, out / "vol_pca.png"
    )
    files["variance_plot"] = plots.plot_explained_variance(
        res.explained_variance_ratio, out / "vol_pca_variance.png", "PCA of volumes"
    )


def _write_clusters(
    plabels: np.ndarray,
    k: int,
    centre_vols: np.ndarray,
    paths: list[Path],
    star,
    kdir: Path,
    pixel_size: float,
) -> tuple[list[Path], list[Path], list[Path]]:
    """Write the ``k`` volume clusters of the particles to ``kdir``: ``labels.npy`` (``plabels``, STAR order),
    ``cluster_NNN.txt`` index lists, ``centre_vol_NNN.mrc`` (the sampled volume ``paths[centre_vols[c]]``,
    ``pixel_size`` Å/px) and, when ``star`` is given, ``cluster_NNN.star`` subsets. Returns the paths written:
    (lists, centre volumes, STAR subsets (empty without ``star``)), each indexed by cluster."""
    from tomodrgn.export.selections import filter_star, write_index_list
    from tomodrgn.io.mrc import read_mrc, write_mrc

    kdir.mkdir(exist_ok=True)
    np.save(kdir / "labels.npy", plabels)
    lists = [
        write_index_list(kdir / f"cluster_{c:03d}.txt", np.flatnonzero(plabels == c), f"volume cluster {c} of {k}")
        for c in range(k)
    ]
    centre_paths = [
        write_mrc(kdir / f"centre_vol_{c:03d}.mrc", read_mrc(paths[i])[0], pixel_size)
        for c, i in enumerate(centre_vols)
    ]
    stars = []
    if star is not None:
        stars = [filter_star(star, kdir / f"cluster_{c:03d}.star", labels=plabels, keep=[c]) for c in range(k)]
    return lists, centre_paths, stars


def _write_pc_volumes(res: VolumePCA, n_pc_points: int, out: Path, pixel_size: float, files: dict) -> None:
    """Write ``n_pc_points`` volumes along each volume PC N (:func:`pc_volumes`) to ``out/pcN/vol_NNN.mrc``
    (``pixel_size`` Å/px), recorded in ``files["pcN"]``."""
    from tomodrgn.io.mrc import write_mrc

    for pc in range(1, res.components.shape[0] + 1):
        series = pc_volumes(res, pc, n_pc_points)
        (out / f"pc{pc}").mkdir(exist_ok=True)
        files[f"pc{pc}"] = [
            write_mrc(out / f"pc{pc}" / f"vol_{j:03d}.mrc", v, pixel_size) for j, v in enumerate(series)
        ]


def _write_volume_report(
    res: VolumePCA,
    vlabels: np.ndarray,
    plabels: np.ndarray,
    clusters: tuple[list[Path], list[Path], list[Path]],
    decoded: str,
    masked: bool,
    out: Path,
    pixel_size: float,
    files: dict,
) -> Path:
    """Write ``out/report.md``: what was analysed (``decoded``, ``pixel_size`` Å/px, ``masked``) with the explained
    variance and the plots of ``files``, a table of the clusters (particles, sampled volumes, and ``clusters``: the
    (lists, centre volumes, STAR subsets) of :func:`_write_clusters`) and the PC volumes of ``files``."""
    from tomodrgn.analysis.report import image, link, table, write_report

    lists, centre_paths, stars = clusters
    k = len(lists)
    sizes = np.bincount(plabels, minlength=k)
    rows = [
        {
            "cluster": c,
            "particles": int(sizes[c]),
            "sampled volumes": int((vlabels == c).sum()),
            "centre volume": link(centre_paths[c], out),
            "list": link(lists[c], out),
            **({"star": link(stars[c], out)} if stars else {}),
        }
        for c in range(k)
    ]
    evr = ", ".join(f"PC{i + 1} {r:.1%}" for i, r in enumerate(res.explained_variance_ratio))
    lines = [
        f"{decoded} ({pixel_size:g} Å/px); mask: {'yes' if masked else 'none'}. Explained variance: {evr}.",
        image(files["pca_plot"], out, "volume PCA"),
        image(files["variance_plot"], out, "explained variance"),
    ]
    pcs = [link(p, out) for pc in range(1, res.components.shape[0] + 1) for p in files[f"pc{pc}"]]
    sections = [("Volume PCA", lines), (f"k-means in volume space (k = {k})", table(rows)), ("Volume PCs", pcs)]
    return write_report(out / "report.md", "tomoDRGN volume-space analysis", sections)


def volume_files(folder: str | Path) -> list[Path]:
    """The ``.mrc`` volumes of ``folder`` in the order of the number ending their names (``vol_000.mrc``,
    ``vol_001.mrc``, … as ``eval_vol`` writes them); InputError naming the folder when there are none."""
    folder = Path(folder)
    found = [p for p in folder.glob("*.mrc") if re.search(r"(\d+)$", p.stem)]
    if not found:
        raise InputError(f"{folder}: no numbered .mrc volumes (vol_000.mrc, vol_001.mrc, …)")
    return sorted(found, key=lambda p: int(re.search(r"(\d+)$", p.stem).group(1)))


def _given_volumes(paths: list[Path], n_particles: int) -> tuple[np.ndarray, list[Path], np.ndarray]:
    """(particles (one per volume), paths, sum of the volumes) of volumes decoded before, one per particle."""
    paths = [Path(p) for p in paths]
    if len(paths) != n_particles:
        raise InputError(f"{paths[0].parent}: {len(paths)} volumes for the run's {n_particles} particles (one each)")
    return np.arange(n_particles, dtype=np.int64), paths, _volume_sum(paths)


def _volume_sum(paths: list[Path]) -> np.ndarray | None:
    """The sum (D, D, D) float64 of the volumes in ``paths``, read one at a time (None when there are none)."""
    from tomodrgn.io.mrc import read_mrc

    total = None
    for p in paths:
        v = read_mrc(p)[0].astype(np.float64)
        total = v if total is None else total + v
    return total


def _decode_volumes(
    decode: Decoder,
    z: np.ndarray,
    picks: np.ndarray,
    folder: Path,
    pixel_size: float,
    resume: bool,
    source: dict,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[Path], np.ndarray]:
    """Decode the volume of each particle in ``picks`` to ``folder/vol_NNN.mrc`` (``DECODE_BATCH`` at a time, never
    all in memory): (paths, sum of the volumes (D, D, D) float64). ``particles.txt`` and ``source.json`` are written
    first; ``resume`` keeps the volumes already there when both match (:class:`InputError` naming the folder if not)."""
    import json

    from tomodrgn.export.selections import write_index_list
    from tomodrgn.io.index_lists import read_index_list
    from tomodrgn.io.mrc import write_mrc

    listing, recorded = folder / "particles.txt", folder / "source.json"
    source = json.loads(json.dumps(source, default=str))  # as it reads back
    paths = [folder / f"vol_{i:03d}.mrc" for i in range(len(picks))]
    done = np.zeros(len(picks), dtype=bool)
    if resume and listing.exists():
        before = read_index_list(listing)
        if not np.array_equal(before, picks):
            raise InputError(f"--resume: {listing} lists other particles than this call decodes; use a new -o folder")
        was = json.loads(recorded.read_text()) if recorded.exists() else {}
        if was != source:
            raise InputError(f"--resume: the volumes in {folder} were decoded from {was}, not {source}")
        done = np.array([p.exists() for p in paths], dtype=bool)
    folder.mkdir(parents=True, exist_ok=True)
    write_index_list(listing, picks, "particle of each vol_NNN")
    recorded.write_text(json.dumps(source) + "\n")
    # volumes of an interrupted call count towards the mean (the auto mask)
    total = _volume_sum([paths[i] for i in np.flatnonzero(done)])
    todo = np.flatnonzero(~done)
    for start in range(0, len(todo), DECODE_BATCH):
        rows = todo[start : start + DECODE_BATCH]
        vols = np.asarray(decode(z[picks[rows]]), dtype=np.float32)
        vols = vols.reshape(len(rows), *vols.shape[-3:])
        for i, v in zip(rows, vols):
            write_mrc(paths[i], v, pixel_size)
            total = v.astype(np.float64) if total is None else total + v
        if progress is not None:
            progress(int(done.sum()) + start + len(rows), len(picks))
    return paths, total
