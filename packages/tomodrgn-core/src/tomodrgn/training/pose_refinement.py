"""``--refine-poses``: the pose corrections of a run (:mod:`tomodrgn.models.pose_corrections`), their optimiser,
their prior in the training loss, and what a checkpoint keeps of them.

The objective is the maximum a posteriori one under Gaussian noise: the data term SSE/(2σ²) plus ½|θ|² per
particle and image (θ in prior widths). Our loss is the weighted mean squared error SSE/W, so the prior enters
multiplied by 2σ²/W, with σ² the batch's own mean squared error (detached): a particle's correction is pulled
towards zero as much as its images' noise warrants, whatever the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tomodrgn.data.dataset import TiltSeriesDataset
from tomodrgn.io.errors import InputError
from tomodrgn.models.pose_corrections import PoseCorrections
from tomodrgn.runs.config import TrainConfig


@dataclass
class PoseRefinement:
    """A run's pose corrections, trained from epoch ``start_epoch`` on by ``optimizer`` (SparseAdam)."""

    corrections: PoseCorrections
    optimizer: torch.optim.SparseAdam
    start_epoch: int

    def active(self, epoch: int) -> bool:
        return epoch >= self.start_epoch

    def corrected(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch with its poses and shifts corrected (differentiable in the corrections)."""
        rotation, shift = self.corrections.corrected(
            batch["rotation"], batch["shift"], batch["index"], batch["tilt_index"]
        )
        return {**batch, "rotation": rotation, "shift": shift}

    def prior_loss(self, batch: dict[str, torch.Tensor], mse: torch.Tensor, wsum: torch.Tensor) -> torch.Tensor:
        """The prior's part of the loss (module docstring): 2·mse/W · ½Σ|θ|² over the batch's rows."""
        return (2.0 * mse.detach() / wsum.detach()) * self.corrections.prior(batch["index"], batch["tilt_index"])

    def state_dict(self) -> dict:
        return {"corrections": self.corrections.state_dict(), "optimizer": self.optimizer.state_dict()}

    def write(self, path: Path, ds: TiltSeriesDataset) -> Path:
        """``poses.E.npz``: the corrections in physical units (:meth:`PoseCorrections.table`) with the particles'
        names, each image row's particle and the prior widths (rad per axis, Å, Å), for export and analysis."""
        table = {k: v.numpy() for k, v in self.corrections.table().items()}
        series = ds.series
        image_particle = np.empty(series.n_images, dtype=np.int64)
        for p, rows in enumerate(series.image_indices):
            image_particle[rows] = p
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **table, particle_names=np.asarray(series.particle_names), image_particle=image_particle,
                 prior_widths=self.corrections.sigma.cpu().numpy())  # fmt: skip
        tmp.replace(path)
        return path


def pose_refinement(config: TrainConfig, ds: TiltSeriesDataset, device: torch.device, saved: dict | None,
                    distributed: bool) -> PoseRefinement | None:  # fmt: skip
    """The pose refinement of a run with ``config`` on ``ds`` (None without ``--refine-poses``), restored from the
    checkpoint ``saved`` when resuming. Prior widths in pixels are of the stacks as on disk."""
    if not config.refine_poses:
        return None
    if distributed:
        raise InputError("--refine-poses runs in one process for now: start it without torchrun")
    px = ds.series.pixel_size
    sigma_rad = math.radians(config.pose_prior_deg) / math.sqrt(3.0)  # per axis: the rms angle is pose_prior_deg
    sigma_origin, sigma_tilt = config.pose_prior_px * px, config.tilt_shift_prior_px * px
    corrections = PoseCorrections(ds.n_particles, ds.series.n_images, sigma_rad, sigma_origin, sigma_tilt).to(device)
    optimizer = torch.optim.SparseAdam(list(corrections.parameters()), lr=config.pose_lr)
    if saved is not None and "poses" in saved:
        corrections.load_state_dict(saved["poses"]["corrections"])
        optimizer.load_state_dict(saved["poses"]["optimizer"])
    return PoseRefinement(corrections, optimizer, config.refine_poses_after)
