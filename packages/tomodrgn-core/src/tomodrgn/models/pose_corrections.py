"""Learned corrections of upstream poses (``--refine-poses``): per particle a small rotation and a 3-D origin shift,
per tilt image a 2-D shift, trained with the decoder by gradient descent under a Gaussian prior.

Conventions (``docs/architecture.md``, poses): an image's pose A maps reference coordinates to image coordinates
(x_img = A·x_ref; the central slice at image frequency k samples the map at Aᵀk, ``k @ A`` as a row), and its 2-D
``shift`` (Å) is what :func:`tomodrgn.training.loss.render_pixels` applies to the prediction. The corrected pose
and shift of image i of particle p are

    A'ᵢ = Aᵢ · exp([ωₚ]×)                  ωₚ (3,) rad: a rotation in the particle's own (reference) frame
    s'ᵢ = sᵢ + (Aᵢ · eₚ)_xy + δᵢ            eₚ (3,) Å: the particle's 3-D origin in its reference frame, seen
                                            through each tilt's pose; δᵢ (2,) Å: the image's own residual shift

A rotation ΔR in the particle's subtomogram frame (A'_particle = ΔR·A_particle, as upstream errors are often
described) is the same set of poses with ω = A_particleᵀ·ΔR-vector: every image of the particle shares it, so the
reference-frame form needs no knowledge of the tilt geometry. The parameters are stored in units of their prior
widths (σ_rot rad, σ_origin Å, σ_tilt Å), so that one learning rate suits all three and the prior is ½|θ|².
"""

from __future__ import annotations

import torch
from torch import nn


def rotation_matrices(omega: torch.Tensor) -> torch.Tensor:
    """exp([ω]×) (..., 3, 3) of rotation vectors ``omega`` (..., 3) rad: the rotation by |ω| about ω/|ω|
    (``torch.linalg.matrix_exp`` of the skew matrix; differentiable, exact at ω = 0)."""
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1),
                        torch.stack([-y, x, zero], -1)], -2)  # fmt: skip
    return torch.linalg.matrix_exp(skew)


class PoseCorrections(nn.Module):
    """The corrections of ``n_particles`` particles and ``n_images`` tilt images (module docstring), zero at start.

    ``rotation`` (n_particles, 3), ``origin`` (n_particles, 3) and ``tilt_shift`` (n_images, 2) are embeddings with
    sparse gradients (a batch touches its own rows only; :class:`torch.optim.SparseAdam` updates just those), in
    units of ``sigma_rad``, ``sigma_origin_A`` and ``sigma_tilt_A``."""

    def __init__(
        self, n_particles: int, n_images: int, sigma_rad: float, sigma_origin_A: float, sigma_tilt_A: float
    ) -> None:
        super().__init__()
        self.rotation = nn.Embedding(n_particles, 3, sparse=True)
        self.origin = nn.Embedding(n_particles, 3, sparse=True)
        self.tilt_shift = nn.Embedding(n_images, 2, sparse=True)
        for table in (self.rotation, self.origin, self.tilt_shift):
            nn.init.zeros_(table.weight)
        self.register_buffer("sigma", torch.tensor([sigma_rad, sigma_origin_A, sigma_tilt_A], dtype=torch.float32))

    def corrected(self, rotation: torch.Tensor, shift: torch.Tensor, index: torch.Tensor, tilt_index: torch.Tensor):
        """(A' (B, T, 3, 3), s' (B, T, 2) Å) of a batch: its poses ``rotation`` and shifts ``shift`` (Å) corrected,
        ``index`` (B,) its particles, ``tilt_index`` (B, T) its images (rows of the particle series)."""
        omega = self.rotation(index) * self.sigma[0]  # (B, 3) rad
        e = self.origin(index) * self.sigma[1]  # (B, 3) Å
        delta = self.tilt_shift(tilt_index) * self.sigma[2]  # (B, T, 2) Å
        rotation = rotation.float()
        corrected = rotation @ rotation_matrices(omega)[:, None]
        moved = torch.einsum("btij,bj->bti", rotation, e)[..., :2]
        return corrected, shift.float() + moved + delta

    def prior(self, index: torch.Tensor, tilt_index: torch.Tensor) -> torch.Tensor:
        """−log prior (up to a constant) of a batch's corrections: ½ Σ |θ|² over its particles' and images' rows."""
        rows = (self.rotation(index), self.origin(index), self.tilt_shift(tilt_index))
        return 0.5 * sum((r.float() ** 2).sum() for r in rows)

    def table(self) -> dict[str, torch.Tensor]:
        """The corrections in physical units: ``rotation_rad`` (n, 3) rotation vectors, ``origin_A`` (n, 3) Å,
        ``tilt_shift_A`` (n_images, 2) Å."""
        with torch.no_grad():
            return {
                "rotation_rad": (self.rotation.weight * self.sigma[0]).detach().cpu(),
                "origin_A": (self.origin.weight * self.sigma[1]).detach().cpu(),
                "tilt_shift_A": (self.tilt_shift.weight * self.sigma[2]).detach().cpu(),
            }
