"""Convergence of a training run across its checkpoint epochs, and an objective stopping rule.

Latent stability (consecutive saved epochs ``z.{e_prev}.npy`` → ``z.{e}.npy``, same particles, same order):

- ``knn_preservation``: mean fraction of each particle's ``k`` nearest neighbours in z that are still among its
  ``k`` nearest neighbours at the next epoch (1 = the same neighbourhoods; ≈ k/n for unrelated embeddings; by
  default k = 5 % of the particles, at least 10: small neighbourhoods on a noisy continuum never stabilise);
- ``cca_mean``: mean canonical correlation of the two embeddings (1 = the same space up to any invertible linear
  map, which the model may legitimately change between epochs);
- ``procrustes_r2``: 1 − Procrustes disparity after translation, rotation/reflection and scaling;
- ``r2_linear`` and ``kmeans_ari`` from :func:`tomodrgn.analysis.volumes.latent_convergence`.

Volume stability: the particles nearest the k-means centres of the *last* epoch are decoded at every epoch from that
epoch's own z (fixed particles, not fixed coordinates, since the latent space moves); ``volume_cc`` is the mean
real-space CC and ``volume_fsc05_A`` the mean FSC = 0.5 resolution (Å) between consecutive epochs.

The verdict: the run is *stable from epoch N* when every consecutive pair from N on meets all thresholds.
A run trained with held-out tilts (``--val-tilts``) adds a second line from ``val_loss`` in ``train.log``: the epoch
where the held-out error is minimal and whether it has risen since (overfitting: stop there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import procrustes
from sklearn.neighbors import NearestNeighbors

from tomodrgn.analysis.latent import kmeans, nearest_to_centres
from tomodrgn.analysis.metrics import cc, fsc, named_mask, resolution_at
from tomodrgn.analysis.outputs import CONVERGENCE_NN, CONVERGENCE_VAE, output_folder
from tomodrgn.analysis.volumes import Decoder, latent_convergence, list_epochs
from tomodrgn.io.errors import InputError
from tomodrgn.runs.folder import RunFolder

DEFAULT_THRESHOLDS = {"knn_preservation": 0.4, "cca_mean": 0.9, "volume_cc": 0.95}
"""Minimum value of each criterion for a pair of epochs to count as stable (criteria absent from a row are skipped)."""
FSC_CONSECUTIVE = 0.5
"""FSC level at which ``convergence_nn`` reads the resolution of two consecutive epochs' maps (its verdict)."""
FSC_REFERENCE = (0.5, 0.143)
"""FSC levels at which ``convergence_nn`` reads the resolution against a reference map."""
LATENT_COLUMNS = ("knn_preservation", "cca_mean", "procrustes_r2", "r2_linear", "kmeans_ari")
"""The latent criteria drawn in ``latent_stability.png``."""


def knn_indices(z: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of each row's ``k`` nearest other rows (Euclidean; ``k`` clipped to n − 1)."""
    z = np.asarray(z, dtype=np.float64)
    k = max(1, min(k, len(z) - 1))
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    return idx[:, 1:]


def knn_preservation(z_a: np.ndarray, z_b: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each particle's ``k`` nearest neighbours in ``z_a`` that are also among them in ``z_b``."""
    if len(z_a) != len(z_b):
        raise InputError(f"knn_preservation: {len(z_a)} vs {len(z_b)} particles")
    a, b = knn_indices(z_a, k), knn_indices(z_b, k)
    shared = [len(np.intersect1d(ra, rb, assume_unique=True)) for ra, rb in zip(a, b)]
    return float(np.mean(shared) / a.shape[1])


def canonical_correlations(z_a: np.ndarray, z_b: np.ndarray) -> np.ndarray:
    """Canonical correlations (min(rank a, rank b),) of two embeddings, descending (QR + SVD; 1 = linearly equal)."""
    qs = []
    for z in (z_a, z_b):
        z = np.asarray(z, dtype=np.float64)
        z = z - z.mean(0)
        q, r = np.linalg.qr(z)
        keep = np.abs(np.diag(r)) > 1e-10 * max(np.abs(np.diag(r)).max(), 1e-300)
        qs.append(q[:, keep])
    if qs[0].shape[1] == 0 or qs[1].shape[1] == 0:
        return np.zeros(1)
    return np.clip(np.linalg.svd(qs[0].T @ qs[1], compute_uv=False), 0.0, 1.0)


def procrustes_r2(z_a: np.ndarray, z_b: np.ndarray) -> float:
    """1 − Procrustes disparity of ``z_b`` fitted to ``z_a`` (scipy; translation, rotation/reflection, scale)."""
    a, b = np.asarray(z_a, dtype=np.float64), np.asarray(z_b, dtype=np.float64)
    if np.ptp(a, 0).max() == 0 or np.ptp(b, 0).max() == 0:
        return 0.0
    return float(1.0 - procrustes(a, b)[2])


def latent_stability(z_a: np.ndarray, z_b: np.ndarray, k: int = 10, n_clusters: int = 10, seed: int = 0) -> dict:
    """All latent criteria of the module docstring for two epochs' z (n, zdim)."""
    return {
        "knn_preservation": knn_preservation(z_a, z_b, k),
        "cca_mean": float(np.mean(canonical_correlations(z_a, z_b))),
        "procrustes_r2": procrustes_r2(z_a, z_b),
        **latent_convergence(z_a, z_b, n_clusters, seed),
    }


def volume_stability(vols_a: np.ndarray, vols_b: np.ndarray, pixel_size: float, mask: np.ndarray | None = None) -> dict:
    """Mean CC and mean FSC = 0.5 resolution (Å) of paired volumes (n, D, D, D)."""
    ccs = [cc(a, b, mask) for a, b in zip(vols_a, vols_b)]
    res = [resolution_at(*fsc(a, b, pixel_size, mask), 0.5) for a, b in zip(vols_a, vols_b)]
    return {"volume_cc": float(np.mean(ccs)), "volume_fsc05_A": float(np.mean(res))}


def stable_from(rows: list[dict], thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS) -> int | None:
    """First epoch from which every consecutive pair (row ``epoch``) meets all thresholds; None if the last fails."""
    ok = [all(r[c] >= t for c, t in thresholds.items() if c in r and np.isfinite(r[c])) for r in rows]
    start = None
    for r, good in zip(rows, ok):
        if good and start is None:
            start = r["epoch_prev"]
        elif not good:
            start = None
    return start


def verdict(rows: list[dict], thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS) -> str:
    """One line: ``stable from epoch N by …`` or which criteria the last pair of epochs fails."""
    used = {c: t for c, t in thresholds.items() if rows and c in rows[-1]}
    crit = ", ".join(f"{c} ≥ {t:g}" for c, t in used.items())
    n = stable_from(rows, used)
    if n is not None:
        return f"stable from epoch {n} by {crit} (between consecutive saved epochs)"
    last = rows[-1]
    fails = ", ".join(f"{c} = {last[c]:.3g} < {t:g}" for c, t in used.items() if not last[c] >= t)
    return f"not yet stable at epoch {last['epoch']}: {fails}; train longer"


def heldout_verdict(log: pd.DataFrame, tolerance: float = 0.005) -> str | None:
    """One line on the held-out error (column ``val_loss`` of a parsed ``train.log``), None without one: the epoch
    where it is minimal, and whether it has since risen by more than ``tolerance`` (relative: overfitting)."""
    if "val_loss" not in log or log["val_loss"].isna().all():
        return None
    d = log.dropna(subset=["val_loss"]).reset_index(drop=True)
    i = int(d["val_loss"].idxmin())
    best_e, best = int(d["epoch"][i]), float(d["val_loss"][i])
    last_e, last = int(d["epoch"].iloc[-1]), float(d["val_loss"].iloc[-1])
    if last_e == best_e:
        return f"held-out error minimal at the last epoch {best_e} ({best:.4g}): still improving"
    rise = last / best - 1.0
    if rise > tolerance:
        return (
            f"held-out error minimal at epoch {best_e} ({best:.4g}), {100 * rise:.1f} % higher by epoch {last_e}: "
            f"overfitting; use the checkpoint nearest epoch {best_e}"
        )
    return f"held-out error minimal at epoch {best_e} ({best:.4g}), flat since (epoch {last_e}: {last:.4g})"


@dataclass
class ConvergenceResult:
    """Per-pair criteria (``table``, one row per consecutive epoch pair), ``verdict`` line, ``stable_epoch`` (or
    None), written ``files`` and the Markdown ``report``."""

    table: pd.DataFrame
    verdict: str
    stable_epoch: int | None
    files: dict = field(default_factory=dict)
    report: Path | None = None
    heldout: str | None = None  # the held-out error's line (runs trained with --val-tilts)


def epoch_rows(
    zs: Mapping[int, np.ndarray],
    decoder_for_epoch: Callable[[int], Decoder] | None = None,
    pixel_size: float = 1.0,
    k: int = 10,
    n_volumes: int = 5,
    seed: int = 0,
    mask: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], np.ndarray | None]:
    """Criteria rows for consecutive epochs of ``zs`` {epoch: z}; returns (rows, indices of the decoded particles)."""
    epochs = sorted(zs)
    picks = None
    if decoder_for_epoch is not None:
        z_last = zs[epochs[-1]]
        _, centres = kmeans(z_last, min(n_volumes, len(z_last)), seed)
        picks = np.unique(nearest_to_centres(z_last, centres))
    rows, prev = [], None
    for i, e in enumerate(epochs):
        vols = None if picks is None else np.asarray(decoder_for_epoch(e)(zs[e][picks]))
        if i > 0:
            row = {"epoch_prev": epochs[i - 1], "epoch": e}
            row.update(latent_stability(zs[epochs[i - 1]], zs[e], k, min(n_volumes, len(zs[e])), seed))
            if vols is not None:
                row.update(volume_stability(prev, vols, pixel_size, mask))
            rows.append(row)
        prev = vols
        if progress is not None:
            progress(i + 1, len(epochs))
    return rows, picks


def convergence_vae(
    run_dir: str | Path,
    outdir: str | Path | None = None,
    epochs: list[int] | None = None,
    k: int | None = None,
    n_volumes: int = 5,
    thresholds: Mapping[str, float] | None = None,
    decode: bool = True,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    ground_truth: Sequence[str | Path] | None = None,
) -> ConvergenceResult:
    """Convergence analysis of a VAE run; writes into ``outdir`` (default ``<run>/convergence``; new or empty unless
    ``overwrite``, which removes an earlier call's files first: :mod:`tomodrgn.analysis.outputs`):
    ``convergence.csv``, ``latent_stability.png``, ``volume_stability.png`` (with ``decode``), ``loss.png``,
    ``report.md``; with ``ground_truth`` maps (and ``decode``) ``ground_truth_cc.csv``:
    per epoch and map, the best CC of the compared particles' volumes with it (the published tomoDRGN's
    ``--ground-truth``)."""
    from tomodrgn.analysis import plots
    from tomodrgn.analysis.report import table, write_report
    from tomodrgn.runs.trained import load_model

    run_dir = Path(run_dir)
    where = Path(outdir) if outdir is not None else RunFolder(run_dir).output("convergence", None)
    folder = output_folder(where, outdir is not None, CONVERGENCE_VAE, overwrite, ground_truth or ())
    epochs = list_epochs(run_dir) if epochs is None else sorted(epochs)
    if len(epochs) < 2:
        raise InputError(f"convergence_vae needs ≥ 2 saved epochs (z.N.npy) in {run_dir}, found {epochs}")
    zs = {e: np.load(RunFolder(run_dir).z(e)) for e in epochs}
    if k is None:
        k = max(10, round(0.05 * len(zs[epochs[0]])))
    thresholds = dict(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    dec, pixel_size = None, 1.0
    if decode:
        pixel_size = load_model(run_dir, epochs[-1], device).pixel_size
        dec = lambda e: load_model(run_dir, e, device).decode  # noqa: E731
    rows, picks = epoch_rows(zs, dec, pixel_size, k, n_volumes, seed, progress=progress)
    out = folder.prepare()
    df = pd.DataFrame(rows)
    files = {"table": out / "convergence.csv"}
    df.to_csv(files["table"], index=False)
    files.update(_stability_plots(df, thresholds, out, decode))
    if ground_truth and decode and picks is not None:
        files["ground_truth"] = out / "ground_truth_cc.csv"
        ground_truth_cc(ground_truth, zs, dec, picks).to_csv(files["ground_truth"], index=False)
    held = None
    log = RunFolder(run_dir).log
    if log.exists():
        held = heldout_verdict(plots.parse_train_log(log))
        try:
            files["loss"] = plots.plot_loss(log, out / "loss.png")
        except ValueError:
            pass
    line = verdict(rows, thresholds)
    (out / "verdict.txt").write_text(line + "\n" + (held + "\n" if held else ""))
    lines = [f"**{line}**", *([f"**{held}**"] if held else [])]
    lines.append(f"k = {k} nearest neighbours; {len(zs[epochs[0]])} particles; epochs {epochs}.")
    if picks is not None:
        lines.append(f"Volumes decoded for particles {picks.tolist()} (nearest the last epoch's k-means centres).")
    lines += table(rows) + _pictures(files, out)
    report = write_report(out / "report.md", f"Convergence of {run_dir.name}", [("Verdict and criteria", lines)])
    return ConvergenceResult(df, line, stable_from(rows, thresholds), files, report, held)


def _pictures(files: Mapping[str, Path], out: Path) -> list[str]:
    """Markdown image lines (captioned with their names) for every PNG of ``files``, relative to ``out``."""
    from tomodrgn.analysis.report import image

    return [image(p, out, p.stem.replace("_", " ")) for p in files.values() if Path(p).suffix == ".png"]


def stability_figures(df: pd.DataFrame, thresholds: Mapping[str, float], volumes: bool = True) -> dict:
    """{``latent_stability``, ``volume_stability`` (``volumes`` and a ``volume_cc`` column)}: Figures of the
    criteria per pair of consecutive epochs (rows of ``df``), each with a dashed line at the threshold the verdict
    uses for it (``thresholds``, default :data:`DEFAULT_THRESHOLDS`)."""
    from tomodrgn.analysis import plots

    xlabel = "epoch (compared with the previous saved epoch)"
    figures = {
        "latent_stability": plots.metrics_figure(
            df, LATENT_COLUMNS, "latent stability", thresholds=thresholds,
            ylabel="agreement with the previous epoch (1 = same)", xlabel=xlabel,
        )
    }  # fmt: skip
    if volumes and "volume_cc" in df:
        figures["volume_stability"] = plots.metrics_figure(
            df, ["volume_cc"], "volume stability", thresholds=thresholds,
            ylabel="real-space CC with the previous epoch's volume", xlabel=xlabel,
        )  # fmt: skip
    return figures


def _stability_plots(df: pd.DataFrame, thresholds: Mapping[str, float], out: Path, volumes: bool) -> dict:
    """Write :func:`stability_figures` as ``latent_stability.png`` (``latent_plot``) and ``volume_stability.png``
    (``volume_plot``); returns {key: path}."""
    from tomodrgn.analysis.plots import save_figure

    keys = {"latent_stability": "latent_plot", "volume_stability": "volume_plot"}
    return {keys[n]: save_figure(f, out / f"{n}.png") for n, f in stability_figures(df, thresholds, volumes).items()}


def ground_truth_cc(maps: Sequence[str | Path], zs: dict, decode: Callable, picks: np.ndarray) -> pd.DataFrame:
    """Per epoch and ground-truth map: the best CC of the volumes decoded at particles ``picks`` with that map."""
    from tomodrgn.io.mrc import read_mrc

    truths = {Path(p).stem: read_mrc(p)[0] for p in maps}
    rows = []
    for e, z in zs.items():
        volumes = decode(e)(z[picks])
        for name, truth in truths.items():
            if truth.shape != volumes[0].shape:
                raise InputError(f"ground truth {name} has shape {truth.shape}, the decoded volumes {volumes[0].shape}")
            rows.append({"epoch": e, "ground_truth": name, "best_cc": max(cc(v, truth) for v in volumes)})
    return pd.DataFrame(rows)


def convergence_nn(
    run_dir: str | Path,
    outdir: str | Path | None = None,
    reference: str | Path | None = None,
    mask: bool = False,
    device: str = "cpu",
    overwrite: bool = False,
    flip_hand: bool = False,
    max_epoch: int | None = None,
) -> ConvergenceResult:
    """Convergence of a homogeneous run: FSC between consecutive checkpoints' maps and (``reference`` MRC given)
    against the reference. Writes ``convergence_nn.csv``, ``fsc_epochs.png``, ``fsc_reference.png``, ``report.md``
    and each epoch's map ``map.N.mrc`` into ``outdir`` (default ``<run>/convergence_nn``; new or empty unless
    ``overwrite``, which removes an earlier call's files first). ``mask``: a mask of
    the last map applied to every FSC (True or "soft", "sphere", "tight": :func:`named_mask`); ``max_epoch``: the
    checkpoints of epochs < ``max_epoch`` only. Verdict: stable from the first epoch whose FSC = 0.5 with the next
    epoch's map
    stays at Nyquist (within 1 px) from there on. ``flip_hand``: the maps mirrored (a ``reference`` then compares in
    the mirrored hand)."""
    from tomodrgn.analysis import plots
    from tomodrgn.analysis.report import table, write_report
    from tomodrgn.io.mrc import read_mrc, write_mrc
    from tomodrgn.runs.checkpoint import list_checkpoints
    from tomodrgn.runs.trained import load_model

    run_dir = Path(run_dir)
    where = Path(outdir) if outdir is not None else RunFolder(run_dir).output("convergence_nn", None)
    folder = output_folder(where, outdir is not None, CONVERGENCE_NN, overwrite, [reference] if reference else [])
    epochs = [key[0] - 1 for key, _ in list_checkpoints(run_dir) if key[1] == 0] if run_dir.is_dir() else []
    epochs = [e for e in epochs if max_epoch is None or e < max_epoch]
    if len(epochs) < 2:
        raise InputError(f"convergence_nn needs ≥ 2 epoch checkpoints (weights.N.pt) in {run_dir}")
    out = folder.prepare()
    maps, px = {}, 1.0
    for e in epochs:
        model = load_model(run_dir, e, device, flip_hand=flip_hand)
        if model.zdim != 0:
            raise InputError(f"{run_dir} is a VAE run: use convergence_vae (convergence_nn is for train_nn runs)")
        px = model.pixel_size
        maps[e] = model.decode(None)[0]
        write_mrc(out / f"map.{e}.mrc", maps[e], px)
    m = named_mask(mask, maps[epochs[-1]]) if mask else None
    ref = None
    if reference is not None:
        ref, _ = read_mrc(reference)
        if ref.shape != maps[epochs[-1]].shape:
            raise InputError(f"reference {reference} has shape {ref.shape}, the run's maps {maps[epochs[-1]].shape}")
    rows, curves, ref_curves = [], {}, {}
    for a, b in zip(epochs[:-1], epochs[1:]):
        freq, curve = fsc(maps[a], maps[b], px, m)
        curves[f"{a}→{b}"] = (freq, curve)
        row = {"epoch_prev": a, "epoch": b, "fsc05_A": resolution_at(freq, curve, FSC_CONSECUTIVE),
               "cc": cc(maps[a], maps[b], m)}  # fmt: skip
        if ref is not None:
            rf, rc = fsc(maps[b], ref, px, m)
            ref_curves[f"epoch {b}"] = (rf, rc)
            row["ref_fsc05_A"], row["ref_fsc0143_A"] = (resolution_at(rf, rc, t) for t in FSC_REFERENCE)
        rows.append(row)
    df = pd.DataFrame(rows)
    files = {"table": out / "convergence_nn.csv"}
    files["fsc_epochs"] = plots.plot_fsc(curves, out / "fsc_epochs.png", (FSC_CONSECUTIVE,), "FSC between epochs")
    df.to_csv(files["table"], index=False)
    if ref_curves:
        files["fsc_reference"] = plots.plot_fsc(
            ref_curves, out / "fsc_reference.png", FSC_REFERENCE, "FSC to reference"
        )
    nyquist = 2.0 * px
    limit = 1.0 / (1.0 / nyquist - 1.0 / (len(maps[epochs[-1]]) * px))  # one shell below Nyquist
    for r in rows:
        r["at_nyquist"] = float(r["fsc05_A"] <= limit + 1e-6)
    stable = stable_from(rows, {"at_nyquist": 1.0})
    line = (
        f"stable from epoch {stable} by FSC = 0.5 between consecutive maps at ≤ {limit:.3g} Å (Nyquist {nyquist:g} Å)"
        if stable is not None
        else f"not yet stable at epoch {epochs[-1]}: consecutive maps agree to {rows[-1]['fsc05_A']:.3g} Å (FSC 0.5)"
    )
    (out / "verdict.txt").write_text(line + "\n")
    lines = [f"**{line}**", *table(rows), *_pictures(files, out)]
    report = write_report(out / "report.md", f"Convergence of {run_dir.name}", [("Verdict and FSC", lines)])
    return ConvergenceResult(df, line, stable, files, report)
