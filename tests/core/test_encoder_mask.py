"""The encoder's input mask (cryoDRGN's --enc-mask): only pixels within the radius reach encoder A."""

import pytest
import torch

from tomodrgn.models.encoder import TiltSeriesEncoder
from tomodrgn.physics.lattice import Lattice


def test_enc_mask_restricts_encoder_input_pixels():
    D = 16
    lat = Lattice(D)
    full = TiltSeriesEncoder(D, zdim=2, n_tilts=3)
    small = TiltSeriesEncoder(D, zdim=2, n_tilts=3, enc_mask=4)
    assert len(full.mask_index) == lat.circular_mask.sum()
    assert 0 < len(small.mask_index) < len(full.mask_index)
    assert (lat.radius_px[small.mask_index.numpy()] <= 4).all()
    # pixels outside the mask do not change the embedding
    torch.manual_seed(0)
    images = torch.randn(2, 3, D + 1, D + 1)
    outside = torch.ones((D + 1) ** 2, dtype=torch.bool)
    outside[small.mask_index] = False
    noisy = images.reshape(2, 3, -1).clone()
    noisy[:, :, outside] += 100.0
    mu1, lv1 = small(images)
    mu2, lv2 = small(noisy.reshape(images.shape))
    torch.testing.assert_close(mu1, mu2)
    torch.testing.assert_close(lv1, lv2)
    with pytest.raises(ValueError, match="enc_mask"):
        TiltSeriesEncoder(D, zdim=2, n_tilts=3, enc_mask=9)
