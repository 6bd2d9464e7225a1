"""Held-out tilts: an objective measure of how well the model predicts images it never trained on.

With ``TrainConfig.val_tilts`` = K, K tilt images of every particle are kept out of training (out of the training
draws, the encoder's input and the normalisation estimate). The choice is fixed and seeded: in tilt-angle order the
particle's n tilts are cut into K equal runs and one position is taken in each, at the same seeded fractional offset
(position ⌊(u + j)·n/K⌋, j = 0…K−1, u ~ U[0, 1) seeded by the seed and the particle's name, so a particle keeps its
choice in any subset of the particles), so the held-out tilts spread over the tilt range.

Each epoch the decoder predicts the held-out images from z = μ of the training tilts (no sampling); the held-out
error is the weighted squared error Σ w·(pred − img)² / Σ w with the loss's weights (dose × tilt weight, the same
kept lattice points, see :mod:`tomodrgn.training.loss`), i.e. directly comparable with the training ``mse``.
Per particle, ``score`` = error with the population's mean μ − error with the particle's own μ (> 0: the particle's
own latent explains its unseen images better than the average structure does; a measure of what the latent explains
beyond noise); ``rel_score`` divides it by the mean-z error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tomodrgn.data.dataset import TiltSeriesDataset, collate
from tomodrgn.data.heldout import heldout_split
from tomodrgn.io.errors import InputError
from tomodrgn.kernels import HalfLattice, half_lattice
from tomodrgn.runs.folder import RunFolder
from tomodrgn.runs.model import encoder_images, make_dataset
from tomodrgn.runs.trained import load_model
from tomodrgn.runtime.distributed import DistContext, all_gather_objects, all_reduce_sum
from tomodrgn.training.step import batch_lattice, rendered_and_observed


@dataclass
class HeldOutSet:
    """Views of a training dataset: ``encoder`` (each particle's training tilts, in file order, as the encoder sees
    them for the written latents) and ``heldout`` (its K held-out tilts)."""

    encoder: TiltSeriesDataset
    heldout: TiltSeriesDataset

    @property
    def k(self) -> int:
        return self.heldout.n_tilts


def heldout_set(ds: TiltSeriesDataset, k: int, seed: int, all_tilts: bool) -> HeldOutSet:
    """The held-out views of training dataset ``ds`` (built with ``tilt_rows`` = the training rows of
    :func:`heldout_split`); ``all_tilts``: the encoder sees all training tilts (else ``ds.n_tilts`` of them)."""
    _, held = heldout_split(ds.series, k, seed)
    enc = ds.with_tilts(None if all_tilts else ds.n_tilts, sequential=True)
    return HeldOutSet(enc, ds.with_rows(held, k, sequential=True))


@torch.no_grad()
def particle_errors(
    model: torch.nn.Module,
    val: HeldOutSet,
    indices: np.ndarray,
    lattice: HalfLattice,
    config,
    device: torch.device | str,
    z: torch.Tensor | None = None,
    batch_size: int = 32,
    mu_all: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Held-out (Σ w·err², Σ w) per particle of ``indices`` and their μ (None when homogeneous).

    The decoder is fed each particle's own μ from its training tilts (an encoder pass over ``val.encoder``, or rows
    of ``mu_all`` (n_particles, zdim) when given: latents already computed from the same tilts), or the single latent
    ``z`` (zdim,) if given (then no μ is returned).
    """

    device = torch.device(device)
    fm = model.decoder.feature_matrix
    sse, wsum, mus = [], [], []
    for start in range(0, len(indices), batch_size):
        chunk = [int(i) for i in indices[start : start + batch_size]]
        held = {k: v.to(device) for k, v in collate([val.heldout[i] for i in chunk]).items()}
        b = held["images"].shape[0]
        mu = None
        if model.encoder is not None and z is None and mu_all is not None:
            mu = torch.as_tensor(mu_all[chunk], dtype=torch.float32, device=device)
            mus.append(mu.cpu().numpy())
        elif model.encoder is not None and z is None:
            enc = {k: v.to(device) for k, v in collate([val.encoder[i] for i in chunk]).items()}
            images = encoder_images(enc["images"], enc["ctf"], lattice, config, enc["dose"], enc["shift"])
            mu = model.encode(images, enc["rotation"])[0].float()
            mus.append(mu.cpu().numpy())
        latent = mu if z is None else z.to(device, torch.float32).expand(b, -1)
        ml, point_particle = batch_lattice(lattice, held, fm, config.backend)
        h_pos, h_neg = model.decoder(ml.coords, ml.features, latent, point_particle if latent is not None else None)
        (pred_pos, pred_neg), (img_pos, img_neg) = rendered_and_observed(h_pos, h_neg, lattice, ml, held, config)
        err = ml.weight * ((pred_pos - img_pos) ** 2 + (pred_neg - img_neg) ** 2)
        sse.append(torch.zeros(b, device=device).index_add_(0, point_particle, err).cpu().numpy())
        wsum.append(2.0 * torch.zeros(b, device=device).index_add_(0, point_particle, ml.weight).cpu().numpy())
    return np.concatenate(sse), np.concatenate(wsum), (np.concatenate(mus) if mus else None)


def evaluate_heldout(
    model: torch.nn.Module,
    val: HeldOutSet,
    lattice: HalfLattice,
    config,
    device: torch.device | str,
    ctx: DistContext | None = None,
    per_particle: bool = True,
    batch_size: int = 32,
    mu_all: np.ndarray | None = None,
) -> tuple[float, pd.DataFrame | None]:
    """(held-out error of all particles, per-particle table or None).

    Under torchrun each process takes every world_size-th particle; sums are all-reduced and the table gathered
    (every process must call this). The table has ``index``, ``particle``, ``err`` (own z), and for a VAE ``err_mean_z``
    (the population's mean μ), ``score`` = err_mean_z − err and ``rel_score`` = score / err_mean_z. ``mu_all``:
    every particle's μ from the encoder view's tilts, if already computed (saves the encoder pass).
    """
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    mine = np.arange(rank, len(val.heldout), world)
    was_training = model.training
    model.eval()
    try:
        sse, wsum, mu = particle_errors(model, val, mine, lattice, config, device, None, batch_size, mu_all)
        dev = torch.device(device)
        tot = torch.tensor([sse.sum(), wsum.sum()], dtype=torch.float64, device=dev)
        if ctx is not None:
            tot = all_reduce_sum(tot, ctx)
        val_loss = float(tot[0] / tot[1])
        if not per_particle:
            return val_loss, None
        cols = {"index": mine, "err": sse.astype(np.float64) / wsum}
        if mu is not None:
            zsum = torch.cat(
                [torch.as_tensor(mu.sum(0), dtype=torch.float64), torch.tensor([len(mine)], dtype=torch.float64)]
            )
            zsum = all_reduce_sum(zsum.to(dev), ctx) if ctx is not None else zsum
            z_mean = (zsum[:-1] / zsum[-1]).float()
            sse_m, wsum_m, _ = particle_errors(model, val, mine, lattice, config, device, z_mean, batch_size)
            cols["err_mean_z"] = sse_m.astype(np.float64) / wsum_m
            cols["score"] = cols["err_mean_z"] - cols["err"]
            cols["rel_score"] = cols["score"] / cols["err_mean_z"]
        parts = all_gather_objects(pd.DataFrame(cols), ctx) if ctx is not None else [pd.DataFrame(cols)]
        table = pd.concat(parts).sort_values("index").reset_index(drop=True)
        names = val.heldout.series.particle_names
        table.insert(1, "particle", [names[i] for i in table["index"]])
        return val_loss, table
    finally:
        model.train(was_training)


def write_heldout(table: pd.DataFrame, outdir: Path, epoch: int) -> Path:
    """``heldout.{epoch}.csv`` (atomic) in the run directory."""

    path = RunFolder(outdir).heldout(epoch)
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def heldout_scores(
    run_dir: str | Path,
    epoch: int | None = None,
    star: str | Path | None = None,
    device: str = "cpu",
    batch_size: int = 32,
) -> tuple[float, pd.DataFrame]:
    """(held-out error, per-particle table) of a run trained with ``val_tilts`` > 0, at checkpoint ``epoch``
    (latest when None), recomputed from the checkpoint (the same numbers the loop writes to ``heldout.N.csv``).

    Table columns: ``index``, ``particle``, ``err`` (weighted error of the particle's held-out tilts predicted from its
    own μ); for a VAE also ``err_mean_z`` (predicted from the population's mean μ), ``score`` = err_mean_z − err (> 0:
    the particle's latent explains its unseen images better than the average structure) and ``rel_score`` =
    score / err_mean_z. ``star``: the particles (default: the STAR file the run was trained on).
    """

    tm = load_model(run_dir, epoch, device)
    cfg = tm.config
    if not cfg.val_tilts:
        raise InputError(f"{run_dir}: trained without --val-tilts; there are no held-out tilts to score")
    ds = make_dataset(star if star is not None else tm.metadata["star_path"], cfg, norm=tuple(tm.metadata["norm"]))
    if ds.box_size != tm.box_size:
        raise InputError(
            f"{ds.series.star_path}: particles give box {ds.box_size}, the model was trained at {tm.box_size}"
        )
    lattice = half_lattice(ds.box_size, ds.pixel_size, float(tm.metadata["voltage"])).to(tm.device)
    val = heldout_set(ds, cfg.val_tilts, cfg.seed, cfg.resolved_z_all_tilts)
    return evaluate_heldout(tm.model, val, lattice, cfg, tm.device, batch_size=batch_size)
