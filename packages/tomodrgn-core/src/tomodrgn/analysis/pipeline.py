"""``analyze_run``: the standard analysis of a training run, and ``evaluate_against_truth`` for simulated data.

Outputs of ``analyze_run`` under ``<run_dir>/analyze.<epoch>/`` (``docs/architecture.md``, "Analysis outputs")::

    z_pca.png, z_pca_variance.png, z_umap.png, loss.png     latent plots (k-means colours and numbers over a faint
                                                            density), explained variance, loss curve
    z_pca.npy, z_umap.npy                                   2-D coordinates per particle
    kmeans<k>/labels.npy, centres.npy, centre_indices.txt   k-means labels (STAR particle order) and on-data centres
    kmeans<k>/cluster_NNN.txt (.star)                       per-cluster particle index lists (and filtered STARs)
    kmeans<k>/vol_NNN.mrc                                   volume at the particle nearest each centre
    pc1/vol_NNN.mrc, pc1/z_values.txt (pc2 likewise)        volumes along PC traversals (5th→95th percentile)
    pc1/path.png (pc2 likewise)                             the traversal over the particles' PC1/PC2
    spatial/neighbours.csv, spatial/summary_same_cluster.csv  nearest neighbours in tomograms (when the STAR has
                                                            coordinates), chimerax/<tomogram>.cxc placing them
    report.md                                               links to all of the above

The decoder is an argument (``z (n, zdim) -> volumes (n, D, D, D)``), by default
``tomodrgn.runs.trained.load_model(run_dir, epoch).decode``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.analysis import plots
from tomodrgn.analysis.latent import PCAResult, kmeans, nearest_to_centres, pc_traversal, pca, umap_embed
from tomodrgn.analysis.metrics import ConfusionResult, adjusted_rand_index, cc, confusion_matrix
from tomodrgn.analysis.outputs import ANALYZE, output_folder
from tomodrgn.analysis.pose_report import write_pose_report
from tomodrgn.analysis.report import image, link, table, write_report
from tomodrgn.analysis.volumes import Decoder
from tomodrgn.export.selections import write_index_list
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import write_mrc
from tomodrgn.runs.folder import RunFolder
from tomodrgn.runs.particles import apply_run_selection

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as each stage advances."""


@dataclass
class AnalysisResult:
    """What :func:`analyze_run` computed and wrote (paths are absolute)."""

    outdir: Path
    epoch: int | None
    z: np.ndarray
    pca: PCAResult
    umap: np.ndarray | None
    labels: np.ndarray
    centres: np.ndarray
    centre_indices: np.ndarray
    pixel_size: float
    files: dict[str, Path | list[Path]] = field(default_factory=dict)
    report: Path | None = None


def _run_metadata(run_dir: Path, epoch: int | None) -> tuple[dict, dict]:
    """(config.json, dataset metadata of the epoch's checkpoint: star_path, pixel_size of decoded volumes …).

    Either is {} when absent; an unreadable checkpoint gives a warning naming it.
    """
    cfg = RunFolder(run_dir).load_config()
    dataset: dict = {}
    try:
        from tomodrgn.runs.checkpoint import find_checkpoint, load_checkpoint

        dataset = dict(load_checkpoint(find_checkpoint(run_dir, epoch)).get("dataset") or {})
    except FileNotFoundError:
        pass
    except (ValueError, ImportError) as e:
        warnings.warn(f"no dataset metadata from the checkpoint in {run_dir}: {e}", stacklevel=3)
    return cfg, dataset


def _star_of(*metas: Mapping) -> Path | None:
    for meta in metas:
        for key in ("star_path", "star", "particles"):
            if meta.get(key):
                return Path(meta[key])
    return None


def _as_2d(coords: np.ndarray) -> np.ndarray:
    return coords[:, :2] if coords.shape[1] >= 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def _decode_to_files(
    decode: Decoder, z: np.ndarray, paths: list[Path], pixel_size: float, chunk: int, stage: str, progress
) -> None:
    for start in range(0, len(z), chunk):
        vols = np.asarray(decode(z[start : start + chunk]))
        if vols.ndim == 3:
            vols = vols[None]
        for v, p in zip(vols, paths[start : start + chunk]):
            write_mrc(p, v, pixel_size)
        if progress is not None:
            progress(stage, min(start + chunk, len(z)), len(z))


def _spatial_outputs(series, labels, vol_paths, pixel_size, out: Path, files: dict) -> list[str]:
    """Nearest neighbours per tomogram and cluster (CSV) and ChimeraX scripts placing each particle's cluster
    volume in its tomogram; returns report lines."""
    from tomodrgn.analysis.spatial import nearest_neighbours, neighbour_summary, particle_poses, particle_positions
    from tomodrgn.export.chimerax import write_chimerax_scripts

    sdir = out / "spatial"
    sdir.mkdir(exist_ok=True)
    tomos, pos = particle_positions(series)
    rots = particle_poses(series)
    nn_all = nearest_neighbours(pos, tomos, rots)
    nn_same = nearest_neighbours(pos, tomos, rots, labels)
    per_particle = pd.DataFrame(
        {
            "particle": series.particle_names,
            "tomogram": tomos,
            "cluster": labels,
            "nn_index": nn_all.index,
            "nn_distance_A": nn_all.distance,
            **{f"nn_dir_ref_{a}": nn_all.direction_ref[:, i] for i, a in enumerate("xyz")},
            "nn_same_cluster_index": nn_same.index,
            "nn_same_cluster_distance_A": nn_same.distance,
        }
    )
    files["neighbours"] = sdir / "neighbours.csv"
    per_particle.to_csv(files["neighbours"], index=False)
    summary = neighbour_summary(nn_same, labels)
    files["neighbour_summary"] = sdir / "summary_same_cluster.csv"
    summary.to_csv(files["neighbour_summary"], index=False)
    files["chimerax"] = write_chimerax_scripts(
        out / "chimerax", [vol_paths[c] for c in labels], pos, rots, tomos, series.box_size, pixel_size, labels
    )
    return [
        "Nearest neighbour of each particle in its tomogram (any cluster, and same cluster only); directions in "
        "the particle's reference frame (d_ref = Aᵀ d, see tomodrgn.analysis.spatial).",
        link(files["neighbours"], out),
        link(files["neighbour_summary"], out),
        "ChimeraX scripts placing each particle's cluster volume in its tomogram (open with `chimerax <file>`):",
        *[link(p, out) for p in files["chimerax"]],
    ]


def _mirrored(decode: Decoder) -> Decoder:
    """The decoder whose volumes are ``decode``'s mirrored."""
    from tomodrgn.physics.hand import flip_hand

    return lambda z: flip_hand(np.asarray(decode(z)))


def analyze_run(
    run_dir: str | Path,
    epoch: int | None = None,
    k: int = 20,
    decode: Decoder | None = None,
    n_pc_traversal: int = 10,
    umap: bool = True,
    outdir: str | Path | None = None,
    progress: Progress | None = None,
    pixel_size: float | None = None,
    star: str | Path | None = None,
    seed: int = 0,
    chunk_size: int = 8,
    overwrite: bool = False,
    flip_hand: bool = False,
    device: str = "cpu",
) -> AnalysisResult:
    """Standard analysis of a training run (see the module docstring for the files written).

    ``epoch`` None: the latest (``z.npy``). ``k`` is clipped to the particle count. ``device``: where the run's model
    decodes volumes (:func:`tomodrgn.runtime.device.resolve_device`). ``pixel_size`` (Å) of written
    volumes defaults to the model's, else the run's metadata. ``star`` (default: the training STAR recorded in the
    run, restricted to the run's ``--first`` / ``--ind`` particles; a STAR given must match z row for row) enables
    per-cluster filtered STAR files; a STAR that cannot be read is reported and skipped. The output folder
    (``outdir``, default ``<run>/analyze.<epoch>``) must be new or empty unless ``overwrite``, which removes what an
    earlier analyze wrote there first (:mod:`tomodrgn.analysis.outputs`). ``flip_hand``: every
    volume written mirrored (z → −z about voxel D/2, :func:`tomodrgn.physics.hand.flip_hand`); the ChimeraX scripts
    then place mirrored maps at the particles' poses, so for placement in the tomograms analyse without it.
    """
    run_dir = Path(run_dir).absolute()
    run = RunFolder(run_dir)
    z, epoch = run.load_z(epoch)
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise InputError(f"latents in {run_dir} have shape {z.shape}, expected (n_particles, zdim)")
    where = Path(outdir) if outdir is not None else run.analysis(epoch)
    folder = output_folder(where, outdir is not None, ANALYZE, overwrite, inputs=[star] if star is not None else [])
    decode, cfg, dataset, pixel_size = _run_decoder(run_dir, epoch, decode, flip_hand, pixel_size, device)
    out = folder.prepare()
    a = _Analysis(out, z, decode, pixel_size, chunk_size, progress)
    k_eff = min(k, len(z))
    if k_eff < k:
        a.notes.append(f"k = {k} reduced to the particle count {len(z)}.")
    res_pca, emb, labels, centres, centre_idx = _latent_outputs(a, run, k_eff, seed, umap)
    star_given = star is not None
    tomograms_star = None if star_given else cfg.get("tomograms_star")  # the run's, for its training STAR
    series = _cluster_series(a, Path(star) if star_given else _star_of(dataset, cfg), cfg, star_given, tomograms_star)
    spatial_lines = _cluster_outputs(a, labels, centres, centre_idx, series)
    traversals = _traversal_outputs(a, n_pc_traversal)
    if run.poses(epoch).is_file():  # a --refine-poses run: the distribution of its corrections
        files, a.pose_lines = write_pose_report(run.poses(epoch), out)
        a.files.update(files)
    report = _write_analysis_report(a, run_dir.name, epoch, labels, centre_idx, spatial_lines, traversals)
    a.step("report")
    return AnalysisResult(out, epoch, z, res_pca, emb, labels, centres, centre_idx, pixel_size, a.files, report)


@dataclass
class _Analysis:
    """What the stages of :func:`analyze_run` share: the output folder, z, the decoder and what has been written."""

    out: Path
    z: np.ndarray
    decode: Decoder
    pixel_size: float
    chunk_size: int
    progress: Progress | None
    files: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    pose_lines: list = field(default_factory=list)  # of a --refine-poses run (analysis.pose_report)

    def step(self, stage: str, done: int = 1, total: int = 1) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def decode_to(self, z: np.ndarray, paths: list[Path], stage: str) -> None:
        _decode_to_files(self.decode, z, paths, self.pixel_size, self.chunk_size, stage, self.progress)


def _run_decoder(
    run_dir: Path, epoch, decode: Decoder | None, flip_hand: bool, pixel_size: float | None, device: str = "cpu"
):
    """(decoder, config dict, dataset metadata, pixel size of the volumes): the run's model unless ``decode`` is
    given; the pixel size from the checkpoint's metadata first, then the config."""
    if decode is None:
        from tomodrgn.runs.trained import load_model

        model = load_model(run_dir, epoch, device=device, flip_hand=flip_hand)
        decode = model.decode
        cfg, dataset = model.config.to_dict(), dict(model.metadata)
    else:
        cfg, dataset = _run_metadata(run_dir, epoch)
        if flip_hand:
            decode = _mirrored(decode)
    if pixel_size is None:
        # decoded volumes have the training box's pixel size (after any Fourier crop): checkpoint metadata first
        pixel_size = dataset.get("pixel_size") or cfg.get("pixel_size")
        if pixel_size is None:
            raise InputError(f"pixel size unknown for {run_dir}: pass pixel_size= (Å)")
    return decode, cfg, dataset, float(pixel_size)


def _latent_outputs(a: _Analysis, run: RunFolder, k_eff: int, seed: int, umap: bool):
    """PCA, k-means and (``umap``) UMAP of z with their plots, and the loss curve: (pca, umap coords, labels,
    centres, on-data centre particles)."""
    z, out, files = a.z, a.out, a.files
    res_pca = pca(z)
    labels, centres = kmeans(z, k_eff, seed)
    centre_idx = nearest_to_centres(z, centres)
    pc2d = _as_2d(res_pca.coords)
    centres_pc = _as_2d((centres - res_pca.mean) @ res_pca.components.T)
    np.save(out / "z_pca.npy", res_pca.coords)
    files["z_pca"] = plots.plot_latent(
        pc2d, out / "z_pca.png", labels, centres_pc, ("PC1", "PC2"), "z PCA", res_pca.explained_variance_ratio
    )
    files["z_pca_variance"] = plots.plot_explained_variance(
        res_pca.explained_variance_ratio, out / "z_pca_variance.png"
    )
    a.step("latent")
    emb = None
    if umap:
        emb = umap_embed(z, seed)
        np.save(out / "z_umap.npy", emb)
        files["z_umap"] = plots.plot_latent(
            emb, out / "z_umap.png", labels, emb[centre_idx], ("UMAP1", "UMAP2"), "z UMAP"
        )
        a.step("umap")
    if run.log.exists():
        try:
            files["loss"] = plots.plot_loss(run.log, out / "loss.png")
        except ValueError as e:
            a.notes.append(f"No loss plot: {e}.")
    return res_pca, emb, labels, centres, centre_idx


def _cluster_series(a: _Analysis, star: Path | None, cfg: dict, star_given: bool, tomograms_star):
    """The particles of ``star`` one per row of z (the run's training selection when it is the run's STAR), or
    None with a note when there is no STAR or it cannot be read."""
    if star is None:
        return None
    from tomodrgn.io.particles import read_particles

    try:
        series = read_particles(star, pixel_size=cfg.get("pixel_size"), tomograms_star=tomograms_star, ctf="unused",
                                dose="unused")  # fmt: skip
        if not star_given:  # the run's training STAR: only the particles it was trained on (--first / --ind)
            series = apply_run_selection(series, cfg)
        if series.n_particles != len(a.z):
            raise InputError(f"{star} has {series.n_particles} particles but z has {len(a.z)}")
    except (OSError, ValueError) as e:
        a.notes.append(f"No per-cluster STAR files: {e}.")
        return None
    return series


def _cluster_outputs(a: _Analysis, labels, centres, centre_idx, series) -> list[str]:
    """``kmeans<k>/``: labels, centres, index lists, the volume at each on-data centre, per-cluster STARs (with
    ``series``) and the spatial outputs (when it has positions); returns the spatial report lines."""
    k_eff = len(centres)
    kdir = a.out / f"kmeans{k_eff}"
    kdir.mkdir(exist_ok=True)
    np.save(kdir / "labels.npy", labels)
    np.save(kdir / "centres.npy", centres)
    write_index_list(kdir / "centre_indices.txt", centre_idx, "particle nearest each k-means centre, cluster order")
    a.files["cluster_lists"] = [
        write_index_list(kdir / f"cluster_{c:03d}.txt", np.flatnonzero(labels == c), f"cluster {c} of {k_eff}")
        for c in range(k_eff)
    ]
    vol_paths = [kdir / f"vol_{c:03d}.mrc" for c in range(k_eff)]
    a.decode_to(a.z[centre_idx], vol_paths, "cluster volumes")
    a.files["cluster_volumes"] = vol_paths
    spatial_lines: list[str] = []
    if series is not None:
        from tomodrgn.export.selections import filter_star

        try:
            a.files["cluster_stars"] = [
                filter_star(series, kdir / f"cluster_{c:03d}.star", labels=labels, keep=[c]) for c in range(k_eff)
            ]
        except (OSError, ValueError) as e:
            a.notes.append(f"No per-cluster STAR files: {e}.")
            series = None
        if series is not None and series.position is not None:
            spatial_lines = _spatial_outputs(series, labels, vol_paths, a.pixel_size, a.out, a.files)
    a.step("clusters")
    return spatial_lines


def _traversal_outputs(a: _Analysis, n_points: int) -> dict[int, np.ndarray]:
    """``pc1/``, ``pc2/``: volumes along the first two PCs of z (5th → 95th percentile); {pc: PC values}."""
    n, zdim = a.z.shape
    traversals: dict[int, np.ndarray] = {}
    for pc in (1, 2):
        if pc > min(zdim, n) or n_points < 1:
            continue
        zp, values = pc_traversal(a.z, pc, n_points)
        pdir = a.out / f"pc{pc}"
        pdir.mkdir(exist_ok=True)
        np.savetxt(pdir / "z_values.txt", zp, header=f"z along PC{pc}; PC{pc} values: {np.round(values, 4).tolist()}")
        paths = [pdir / f"vol_{j:03d}.mrc" for j in range(n_points)]
        a.decode_to(zp, paths, f"PC{pc} traversal")
        a.files[f"pc{pc}_volumes"] = paths
        a.files[f"pc{pc}_path"] = _traversal_plot(a.z, zp, pdir / "path.png", f"PC{pc} traversal")
        traversals[pc] = values
    return traversals


def _traversal_plot(z: np.ndarray, z_path: np.ndarray, out: Path, title: str) -> Path:
    """``out``: the points ``z_path`` (m, zdim) over the particles' z (n, zdim) in their PC1/PC2 plane, the first
    and last (5th and 95th percentile) marked."""
    res = pca(z, 2)
    coords, path = _as_2d(res.coords), _as_2d((z_path - res.mean) @ res.components.T)
    names = ("start: percentile 5", "end: percentile 95")
    return plots.plot_path(coords, path, out, ("PC1", "PC2"), title, [0, len(path) - 1], names,
                           res.explained_variance_ratio)  # fmt: skip


def _write_analysis_report(a: _Analysis, run_name: str, epoch, labels, centre_idx, spatial_lines, traversals) -> Path:
    out, files = a.out, a.files
    n, zdim = a.z.shape
    k_eff = len(centre_idx)
    sizes = np.bincount(labels, minlength=k_eff)
    rows = [
        {
            "cluster": c,
            "particles": int(sizes[c]),
            "centre particle": int(centre_idx[c]),
            "volume": link(files["cluster_volumes"][c], out),
            "list": link(files["cluster_lists"][c], out),
            **({"star": link(files["cluster_stars"][c], out)} if "cluster_stars" in files else {}),
        }
        for c in range(k_eff)
    ]
    latent_lines = [f"{n} particles, zdim {zdim}, epoch {epoch}; volumes at {a.pixel_size:g} Å/px.", *a.notes]
    latent_lines += [image(files["z_pca"], out, "z PCA"), image(files["z_pca_variance"], out, "explained variance")]
    if "z_umap" in files:
        latent_lines.append(image(files["z_umap"], out, "z UMAP"))
    if "loss" in files:
        latent_lines.append(image(files["loss"], out, "loss"))
    sections = [("Latent space", latent_lines), (f"k-means (k = {k_eff})", table(rows))]
    if spatial_lines:
        sections.append(("Particles in their tomograms", spatial_lines))
    for pc, values in traversals.items():
        sections.append(
            (
                f"PC{pc} traversal",
                [
                    f"PC{pc} from {values[0]:.3g} to {values[-1]:.3g} (5th to 95th percentile).",
                    image(files[f"pc{pc}_path"], out, f"PC{pc} traversal over the particles"),
                ]
                + [link(p, out) for p in files[f"pc{pc}_volumes"]],
            )
        )
    if "pose_corrections" in files:
        sections.append(("Pose corrections", [*a.pose_lines, image(files["pose_corrections"], out, "corrections")]))
    return write_report(out / "report.md", f"tomoDRGN analysis of {run_name}", sections)


@dataclass
class TruthEvaluation:
    """Agreement of predicted clusters with ground truth: ``ari``, matched ``confusion``, and ``cc_per_class``
    (true class → real-space CC of its volume with the volume of the predicted cluster matched to it)."""

    ari: float
    confusion: ConfusionResult
    cc_per_class: dict


def evaluate_against_truth(
    labels_true: np.ndarray,
    labels_pred: np.ndarray,
    volumes_pred: Mapping | np.ndarray | None = None,
    volumes_true: Mapping | np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> TruthEvaluation:
    """ARI, Hungarian-matched confusion matrix and per-class volume CC.

    ``volumes_pred[p]`` is the volume of predicted cluster ``p`` and ``volumes_true[t]`` of true class ``t``
    (arrays indexed by integer label, or mappings); classes without a matched cluster get CC NaN.
    """
    conf = confusion_matrix(labels_true, labels_pred)
    ccs: dict = {}
    if volumes_pred is not None and volumes_true is not None:
        inverse = {t: p for p, t in conf.mapping.items()}
        for t in conf.true_labels.tolist():
            p = inverse.get(t)
            ccs[t] = float("nan") if p is None else cc(volumes_pred[p], volumes_true[t], mask)
    return TruthEvaluation(adjusted_rand_index(labels_true, labels_pred), conf, ccs)
