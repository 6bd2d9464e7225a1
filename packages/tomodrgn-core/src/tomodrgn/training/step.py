"""One training step's forward model: the latent noise, the decoder + loss terms of a batch, and a memory-only
trial step for the batch-size search (the encoder's input: :mod:`tomodrgn.runs.model`; the loop that calls them:
:mod:`tomodrgn.training.loop`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.profiler import record_function

from tomodrgn.data.dataset import collate
from tomodrgn.kernels import HalfLattice, MaskedLattice, masked_lattice
from tomodrgn.runs.checkpoint import rng_state, set_rng_state
from tomodrgn.runs.config import TrainConfig
from tomodrgn.runs.model import encoder_images
from tomodrgn.runtime.precision import amp_enabled
from tomodrgn.training.loss import combine, gather_image_pixels, loss_terms, render_pixels


def particle_noise(seed: int, epoch: int, index: np.ndarray, zdim: int) -> torch.Tensor:
    """Standard-normal ε (B, zdim) as a hash of (seed, epoch, particle, dimension): identical however the batch is
    split across processes, so one process and N processes train the same model."""
    with np.errstate(over="ignore"):
        x = (
            np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
            + np.uint64(epoch) * np.uint64(0xBF58476D1CE4E5B9)
            + np.asarray(index, dtype=np.uint64)[:, None] * np.uint64(0x94D049BB133111EB)
            + np.arange(2 * zdim, dtype=np.uint64)[None, :] * np.uint64(0x2545F4914F6CDD1D)
        )
        x = x ^ (x >> np.uint64(30))  # splitmix64 finaliser
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = ((x >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u1, u2 = u[:, :zdim], u[:, zdim:]
    return torch.from_numpy(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).to(torch.float32)


def batch_forward(
    model: torch.nn.Module,
    decoder_fm: torch.Tensor,
    lattice: HalfLattice,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    eps: torch.Tensor | None,
    backend: str,
    refine: bool = False,
):
    """Forward model on one batch (on device): returns (LossTerms, μ, log σ²). ``refine``: the batch's poses and
    shifts carry learned corrections (:mod:`tomodrgn.training.pose_refinement`): the kept points are rotated here,
    differentiably, and the encoder sees the corrected poses without passing gradients to them."""
    b = batch["images"].shape[0]
    rotation, shift = batch["rotation"], batch["shift"]
    with record_function("tomodrgn.lattice_mask"):
        ml, point_particle = batch_lattice(lattice, batch, None if refine else decoder_fm, backend)
    if refine:  # the lattice kernels do not differentiate by the pose
        n = rotation.shape[0] * rotation.shape[1]
        ml.coords = torch.einsum("kj,kji->ki", lattice.coords[ml.point], rotation.reshape(n, 3, 3)[ml.image])
        rotation, shift = rotation.detach(), shift.detach()
    use_amp = amp_enabled(config.amp, batch["images"].device)
    enc_in = None
    if config.latent_dim:
        with record_function("tomodrgn.encoder_input"):
            enc_in = encoder_images(batch["images"], batch["ctf"], lattice, config, batch["dose"], shift)
    with torch.autocast(device_type=batch["images"].device.type, dtype=torch.bfloat16, enabled=use_amp):
        h_pos, h_neg, mu, logvar = model(enc_in, ml.coords, ml.features, point_particle, eps, rotation)
    if use_amp and mu is not None:  # the KL term (and the latents kept) in fp32
        mu, logvar = mu.float(), logvar.float()
    with record_function("tomodrgn.render_loss"):
        (pred_pos, pred_neg), (img_pos, img_neg) = rendered_and_observed(h_pos, h_neg, lattice, ml, batch, config)
        terms = loss_terms(pred_pos, pred_neg, img_pos, img_neg, ml.weight, mu, logvar, b)
    return terms, mu, logvar


def batch_lattice(
    lattice: HalfLattice, batch: dict[str, torch.Tensor], feature_matrix: torch.Tensor | None, backend: str
) -> tuple[MaskedLattice, torch.Tensor]:
    """The kept (dose-allowed) half-lattice points of a batch's B × T images and each point's particle in the batch.

    ``feature_matrix`` featurises the points inside the kernel on CUDA (on CPU the decoder featurises them).
    """
    images = batch["images"]
    b, t = images.shape[:2]
    n = b * t
    ml = masked_lattice(
        lattice,
        batch["rotation"].detach().reshape(n, 3, 3),
        batch["dose"].reshape(n),
        batch["mid_dose"].reshape(n),
        batch["tilt_weight"].reshape(n),
        feature_matrix=feature_matrix if images.device.type == "cuda" else None,
        backend=backend,
    )
    return ml, torch.div(ml.image, t, rounding_mode="floor")


def rendered_and_observed(
    h_pos: torch.Tensor,
    h_neg: torch.Tensor,
    lattice: HalfLattice,
    ml: MaskedLattice,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((predicted at k, at −k), (observed at k, at −k)) pixels of a batch's kept points, from decoded Hartley
    values: CTF (² when premultiplied), exposure filter when ``config.dose_filter``, origin shift."""
    images = batch["images"]
    n = images.shape[0] * images.shape[1]
    dose = batch["dose"].reshape(n)
    pred = render_pixels(
        h_pos.float(),
        h_neg.float(),
        lattice,
        ml,
        batch["ctf"].reshape(n, -1),
        batch["shift"].reshape(n, 2),
        dose if config.dose_filter else None,
    )
    return pred, gather_image_pixels(images.reshape(n, *images.shape[2:]), lattice, ml)


def training_trial(model, decoder_fm, lattice, ds, config, device: torch.device) -> Callable[[int], None]:
    """``trial(b)``: forward + backward of ``model`` on the first ``b`` particles of ``ds``, for memory only: no
    optimiser step; gradients and random states are put back."""

    def trial(b: int) -> None:
        state = rng_state()
        try:
            batch = collate([ds[i] for i in range(min(b, len(ds)))])
            eps = None
            if config.latent_dim:
                eps = particle_noise(config.seed, 0, batch["index"].numpy(), config.latent_dim).to(device)
            batch = {k: v.to(device) for k, v in batch.items()}
            terms, _, _ = batch_forward(model, decoder_fm, lattice, batch, config, eps, config.backend)
            loss, _, _ = combine(terms, terms.wsum.detach(), terms.wsum.new_tensor(float(b)), 1.0)
            loss.backward()
        finally:
            model.zero_grad(set_to_none=True)
            set_rng_state(state)

    return trial
