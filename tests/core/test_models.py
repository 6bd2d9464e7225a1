"""Models: shapes, pooling invariances, Hartley symmetry of the decoder, volume ↔ slice consistency."""

import numpy as np
import pytest
import torch

from tomodrgn.kernels import half_lattice, masked_lattice
from tomodrgn.models import (
    POOLING_MODES,
    HartleyDecoder,
    Pooling,
    TiltSeriesEncoder,
    TomoDRGN,
    canonical_flip,
    parse_arch,
)
from tomodrgn.physics.hartley import ht3_center, iht3_center
from tomodrgn.physics.pose import random_rotations

D = 16


def test_parse_arch():
    assert parse_arch("256x3") == (256, 3)
    assert parse_arch((64, 2)) == (64, 2)
    with pytest.raises(ValueError, match="nodes x layers"):
        parse_arch("256-3")


@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_encoder_shapes(pooling):
    torch.manual_seed(0)
    enc = TiltSeriesEncoder(D, zdim=5, n_tilts=4, arch_a=(32, 2), arch_b=(32, 2), embed_dim=8, pooling=pooling)
    mu, logvar = enc(torch.randn(3, 4, D + 1, D + 1))
    assert mu.shape == (3, 5) and logvar.shape == (3, 5)
    assert torch.isfinite(mu).all() and torch.isfinite(logvar).all()


@pytest.mark.parametrize("mode", ["max", "mean", "median", "set"])
def test_pooling_permutation_invariant(mode):
    torch.manual_seed(1)
    pool = Pooling(mode, 8, 5)
    x = torch.randn(4, 5, 8)
    perm = torch.randperm(5)
    while torch.equal(perm, torch.arange(5)):
        perm = torch.randperm(5)
    torch.testing.assert_close(pool(x), pool(x[:, perm]), rtol=1e-5, atol=1e-6)


def test_concatenate_pooling_order_dependent():
    pool = Pooling("concatenate", 8, 5)
    x = torch.randn(4, 5, 8)
    assert pool(x).shape == (4, 40)
    assert not torch.allclose(pool(x), pool(x[:, [1, 0, 2, 3, 4]]))
    with pytest.raises(ValueError, match="built for 5 tilts"):
        pool(torch.randn(4, 6, 8))


def _decoder(zdim=0):
    torch.manual_seed(2)
    dec = HartleyDecoder(D, zdim=zdim, arch=(32, 3), feat_sigma=0.5)
    for p in dec.parameters():  # make b (the odd channel) clearly non-zero
        p.data.normal_(0, 0.3)
    return dec


def test_feature_matrix_is_buffer_and_cryodrgn_scaled():
    dec = _decoder()
    assert "feature_matrix" in dec.state_dict()
    assert "feature_matrix" not in dict(dec.named_parameters())
    assert dec.feature_matrix.shape == (3, 3 * D // 2)
    # gaussian featurisation: 2π·B ~ feat_sigma·(D/2)·N(0,1)
    big = HartleyDecoder(64, feat_sigma=0.5, n_features=3000).feature_matrix * 2 * np.pi
    assert abs(float(big.std()) - 0.5 * 32) < 0.8


def test_decoder_hermitian_symmetry():
    dec = _decoder(zdim=3)
    x = torch.rand(200, 3) - 0.5
    z = torch.randn(2, 3)
    pp = torch.randint(0, 2, (200,))
    h_pos, h_neg = dec(x, z=z, point_particle=pp)
    m_pos, m_neg = dec(-x, z=z, point_particle=pp)
    torch.testing.assert_close(m_pos, h_neg, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m_neg, h_pos, rtol=1e-5, atol=1e-6)
    assert (h_pos - h_neg).abs().max() > 1e-3  # b ≠ 0: the relation is not trivial
    # precomputed features (as the lattice kernel gives them) give the same values
    f_pos, _ = dec(x, features=dec.featurize(x), z=z, point_particle=pp)
    torch.testing.assert_close(f_pos, h_pos, rtol=1e-5, atol=1e-5)


def test_decoded_spectrum_is_hermitian_so_volume_is_real():
    """a + ib sampled on a symmetric odd grid inverse-transforms to a real volume."""
    dec = _decoder()
    n = D + 1
    ax = torch.linspace(-0.5, 0.5, n)
    zz, yy, xx = torch.meshgrid(ax, ax, ax, indexing="ij")
    c = torch.stack([xx, yy, zz], -1).reshape(-1, 3)
    with torch.no_grad():
        h_pos, h_neg = dec(c)
    a, b = (h_pos + h_neg) / 2, (h_neg - h_pos) / 2
    b[len(b) // 2] = 0  # DC (never trained) has no odd part
    f = torch.complex(a.double(), b.double()).reshape(n, n, n)
    vol = torch.fft.ifftn(torch.fft.ifftshift(f))
    assert vol.imag.abs().max() < 1e-6 * vol.real.abs().max()
    assert vol.real.abs().max() > 0


def test_hartley_volume_matches_decoder_at_grid_points():
    dec = _decoder(zdim=2)
    z = torch.randn(2)
    ht = dec.hartley_volume(z)
    assert ht.shape == (D, D, D)
    vol = iht3_center(ht.double())
    torch.testing.assert_close(ht3_center(vol), ht.double(), rtol=1e-6, atol=1e-6)
    # every in-sphere grid point, evaluated directly, equals the assembled volume
    idx = torch.arange(D)
    iz, iy, ix = torch.meshgrid(idx, idx, idx, indexing="ij")
    c = torch.stack([ix, iy, iz], -1).reshape(-1, 3).float().sub(D // 2).div(D)
    inside = (c * c).sum(-1) <= 0.25
    inside[(D // 2) * (D * D + D + 1)] = False  # DC: set to the even part
    with torch.no_grad():
        h, _ = dec(c[inside], z=z[None], point_particle=torch.zeros(int(inside.sum()), dtype=torch.long))
    torch.testing.assert_close(ht.reshape(-1)[inside], h, rtol=1e-5, atol=1e-5)
    outside = (c * c).sum(-1) > 0.25
    assert (ht.reshape(-1)[outside] == 0).all()


@pytest.mark.parametrize("cache_bytes", [1 << 30, 0])
def test_hartley_volumes_equal_one_call_per_latent(cache_bytes):
    """Decoding many latents in one call (the z-free features and first layer kept, or recomputed when they do not fit
    the cache) gives, bit for bit, the volumes of one :meth:`hartley_volume` call each."""
    dec = _decoder(zdim=2)
    z = torch.randn(3, 2)
    many = list(dec.hartley_volumes(z, chunk=500, cache_bytes=cache_bytes))
    assert len(many) == 3
    for row, vol in zip(z, many):
        torch.testing.assert_close(vol, dec.hartley_volume(row, chunk=500), rtol=0, atol=0)
    assert not torch.equal(many[0], many[1])
    homogeneous = _decoder(zdim=0)
    (only,) = homogeneous.hartley_volumes(None)
    torch.testing.assert_close(only, homogeneous.hartley_volume(None), rtol=0, atol=0)
    with pytest.raises(ValueError, match="pass z"):
        next(dec.hartley_volumes(None))


@pytest.mark.parametrize("perm", [[0, 1, 2], [2, 0, 1], [1, 2, 0]])
def test_volume_slice_equals_decoded_image_slice(perm):
    """Central slice of the generated volume at coords @ R equals the decoder's predictions for that image."""
    dec = _decoder(zdim=2)
    z = torch.randn(1, 2)
    R = torch.eye(3)[perm]  # rotations that map lattice points onto grid points
    lat = half_lattice(D, 4.0)
    ml = masked_lattice(lat, R[None], torch.zeros(1), torch.zeros(1), torch.ones(1), dec.feature_matrix, "torch")
    with torch.no_grad():
        h_pos, h_neg = dec(ml.coords, ml.features, z, torch.zeros(len(ml.point), dtype=torch.long))
    ht = dec.hartley_volume(z[0])
    g = torch.round(ml.coords * D).long() + D // 2  # (x, y, z) grid indices of k; −k at D − g
    ok = ((g > 0) & (g < D)).all(1)
    assert ok.sum() > 0.8 * len(ok)
    pos = ht[g[ok, 2], g[ok, 1], g[ok, 0]]
    neg = ht[D - g[ok, 2], D - g[ok, 1], D - g[ok, 0]]
    torch.testing.assert_close(pos, h_pos[ok], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(neg, h_neg[ok], rtol=1e-5, atol=1e-5)


def test_canonical_flip_is_a_half_space():
    x = torch.rand(500, 3) - 0.5
    x[:50, 2] = 0
    x[:10, 1] = 0
    assert not (canonical_flip(x) & canonical_flip(-x)).any()
    assert (canonical_flip(x) | canonical_flip(-x)).all()


@pytest.mark.parametrize(("zdim", "encoder"), [(0, "per-tilt"), (4, "per-tilt"), (4, "reference-frame")])
def test_full_model_forward_and_backward(zdim, encoder):
    torch.manual_seed(3)
    model = TomoDRGN(
        D, zdim, n_tilts=3, enc_arch_a=(16, 1), enc_arch_b=(16, 1), embed_dim=4, dec_arch=(16, 2), encoder=encoder
    )
    lat = half_lattice(D, 4.0)
    rot = torch.as_tensor(random_rotations(6, np.random.default_rng(0)), dtype=torch.float32)
    ml = masked_lattice(
        lat, rot, torch.arange(6.0) * 3, torch.arange(6.0) * 3, torch.ones(6), model.decoder.feature_matrix
    )
    images = torch.randn(2, 3, D + 1, D + 1)
    h_pos, h_neg, mu, logvar = model(images, ml.coords, ml.features, ml.image // 3, rotations=rot.reshape(2, 3, 3, 3))
    assert h_pos.shape == h_neg.shape == ml.point.shape
    assert (mu is None) == (zdim == 0)
    (h_pos.square().sum() + h_neg.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_decoder_point_blocks_on_cpu_same_values_and_gradients(monkeypatch):
    """On the CPU the MLP runs over the points in blocks (small activations: heap-reused, in cache); values and
    gradients are those of one call over all points. On a GPU all points go in one call."""
    from tomodrgn.models import decoder as decoder_module
    from tomodrgn.models.decoder import point_block

    assert point_block(10**6, 256, torch.device("cpu")) == 2048  # 2 MiB of float32 activations a layer
    assert point_block(10**6, 4096, torch.device("cpu")) == 128
    assert point_block(10**6, 256, torch.device("cuda")) == 10**6
    torch.manual_seed(0)
    dec = HartleyDecoder(16, zdim=3, arch=(32, 3))
    coords = torch.rand(1000, 3) - 0.5
    z = torch.randn(4, 3, requires_grad=True)
    point_particle = torch.randint(0, 4, (1000,))

    def values_and_grads(block_bytes):
        monkeypatch.setattr(decoder_module, "CPU_BLOCK_BYTES", block_bytes)
        dec.zero_grad()
        z.grad = None
        h_pos, h_neg = dec(coords, None, z, point_particle)
        (h_pos.square().sum() + (h_neg * torch.arange(1000)).sum()).backward()
        return [h_pos.detach(), h_neg.detach(), z.grad.clone()] + [p.grad.clone() for p in dec.parameters()]

    one = values_and_grads(1 << 40)
    blocks = values_and_grads(64 * 4 * 32)  # 64 points a block: 16 blocks, the last one short
    for a, b in zip(one, blocks, strict=True):  # float32 sums in another order: within 1e-5 of the largest value
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5 * float(a.abs().max()))
