"""How well our forward model reproduces a particle set's images from its true map (shared by several tests)."""

from __future__ import annotations

import numpy as np
import torch

from tomodrgn.data import TiltSeriesDataset, collate
from tomodrgn.io.particles import ParticleSeries
from tomodrgn.kernels import half_lattice, masked_lattice
from tomodrgn.simulate.forward import sample_spectra, volume_spectra
from tomodrgn.training.loss import gather_image_pixels, render_pixels


def render_error(
    series: ParticleSeries, vol: np.ndarray, origin_sign: float = 1.0, treat_as_plain: bool = False, n_p: int = 6
) -> float:
    """Relative error between the first ``n_p`` particles' images and our forward model: the true map's central
    slices (4× oversampled spectrum) → CTF (² for premultiplied images, unless ``treat_as_plain``) · exposure filter ·
    origin shift (× ``origin_sign``)."""
    ds = TiltSeriesDataset(series, sequential=True)
    b = collate([ds[i] for i in range(n_p)])
    n = n_p * ds.n_tilts
    lat = half_lattice(ds.box_size, ds.pixel_size, 300.0)
    dose = b["dose"].reshape(n)
    ml = masked_lattice(
        lat, b["rotation"].reshape(n, 3, 3), dose, b["mid_dose"].reshape(n), b["tilt_weight"].reshape(n)
    )
    f = sample_spectra(volume_spectra(vol[None], 4), ml.coords.double())[:, 0]
    h_pos, h_neg = ((f.real - f.imag) / ds.norm[1]).float(), ((f.real + f.imag) / ds.norm[1]).float()
    d1 = ds.box_size + 1
    img = torch.cat(gather_image_pixels(b["images"].reshape(n, d1, d1), lat, ml))
    ctf = b["ctf"].reshape(n, -1)
    if treat_as_plain:
        ctf = ctf[:, :7]
    shift = origin_sign * b["shift"].reshape(n, 2)
    pred = torch.cat(render_pixels(h_pos, h_neg, lat, ml, ctf, shift, dose))
    return float(torch.linalg.norm(pred - img) / torch.linalg.norm(img))
