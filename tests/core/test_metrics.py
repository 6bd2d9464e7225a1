"""FSC, resolution, soft mask, CC, ARI and matched confusion matrix (tomodrgn.analysis.metrics)."""

import numpy as np
import pytest
import torch
from torch_fourier_shell_correlation import fourier_shell_correlation

from tomodrgn.analysis.metrics import (
    adjusted_rand_index,
    cc,
    cc_to_reference,
    confusion_matrix,
    fsc,
    resolution_at,
    soft_mask,
)

D = 24


def _blob(d=D, width=0.1, centre=(0.0, 0.0, 0.0)):
    x = np.linspace(-1, 1, d, endpoint=False)
    z, y, xx = np.meshgrid(x, x, x, indexing="ij")
    return np.exp(-((xx - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) / width)


def _numpy_fsc(a, b):
    """Direct FSC: full FFT, each voxel weighted max(0, 1 - |r - i|) into shell i (r in voxels)."""
    d = a.shape[0]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    k = np.fft.fftfreq(d) * d
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    out = [1.0]
    for i in range(1, d // 2 + 1):
        w = np.clip(1 - np.abs(r - i), 0, None)
        num = np.sum(w * fa * np.conj(fb)).real
        out.append(num / np.sqrt(np.sum(w * np.abs(fa) ** 2) * np.sum(w * np.abs(fb) ** 2)))
    return np.array(out)


def test_fsc_with_itself_is_one():
    vol = np.random.default_rng(0).normal(size=(D, D, D))
    freq, curve = fsc(vol, vol, pixel_size=2.0)
    assert curve.shape == freq.shape == (D // 2 + 1,)
    np.testing.assert_allclose(curve, 1.0, atol=1e-12)
    np.testing.assert_allclose(freq[1], 1 / (D * 2.0))
    np.testing.assert_allclose(freq[-1], 1 / (2 * 2.0))  # Nyquist


def test_fsc_matches_direct_numpy_and_package():
    rng = np.random.default_rng(1)
    g = _blob()
    a, b = g + 0.3 * rng.normal(size=g.shape), g + 0.3 * rng.normal(size=g.shape)
    _, curve = fsc(a, b, 1.5)
    np.testing.assert_allclose(curve, _numpy_fsc(a, b), atol=1e-10)
    # torch-fourier-shell-correlation uses the same shells on the half (rfft) space: equal where signal dominates
    pkg = fourier_shell_correlation(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(curve[:4], pkg[:4], atol=0.05)


def test_fsc_decreases_with_noise_and_resolution_follows():
    rng = np.random.default_rng(2)
    g = _blob(width=0.05)
    noise = [rng.normal(size=(4, D, D, D)) for _ in range(2)]
    mean_fsc, res = [], []
    for sigma in (0.01, 0.1, 0.5):
        freq, curve = fsc(g + sigma * noise[0][0], g + sigma * noise[1][0], pixel_size=3.0)
        mean_fsc.append(curve[1:].mean())
        res.append(resolution_at(freq, curve, 0.5))
    assert mean_fsc[0] > mean_fsc[1] > mean_fsc[2]
    assert res[0] < res[1] < res[2]  # more noise → worse (larger) resolution in Å
    assert res[0] >= 2 * 3.0  # never better than Nyquist


def test_resolution_at_interpolates_crossing():
    freq = np.arange(11) / 100.0  # Å⁻¹
    curve = 1.0 - freq * 10  # crosses 0.5 at 0.05 Å⁻¹, 0.143 at 0.0857 Å⁻¹
    assert resolution_at(freq, curve, 0.5) == pytest.approx(20.0)
    assert resolution_at(freq, curve, 0.143) == pytest.approx(1 / 0.0857)
    assert resolution_at(freq, np.ones(11), 0.143) == pytest.approx(10.0)  # never crosses → Nyquist


def test_soft_mask_properties():
    vol = np.zeros((40, 40, 40), dtype=np.float32)
    vol[15:25, 15:25, 15:25] = 1.0  # 1.6 % of the box: the 99th percentile is 1, threshold 0.5
    m = soft_mask(vol)
    assert m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1
    assert np.all(m[15:25, 15:25, 15:25] == 1)
    line = m[20, 20, :]  # along x through the cube centre: cube x = 15..24
    assert np.all(line[25:28] == 1)  # dilated 3 px
    assert 0 < line[28] < 1 and np.all(np.diff(line[27:38]) <= 0)  # cosine falls off
    assert line[24 + 3 + 5] == pytest.approx(0.5, abs=1e-6)  # half-way down the 10 px edge
    assert line[37] == 0 and line[1] == 0  # ≥ 3 + 10 px away: outside
    assert m[20, 20, 5] == pytest.approx(m[20, 20, 34])  # symmetric
    with pytest.raises(ValueError, match="threshold"):
        soft_mask(vol, threshold=2.0)


def test_cc_properties():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(8, 8, 8))
    assert cc(a, a) == pytest.approx(1.0)
    assert cc(a, -a) == pytest.approx(-1.0)
    assert cc(a, 3 * a + 2) == pytest.approx(1.0)
    b = a.copy()
    b[:4] = rng.normal(size=(4, 8, 8))
    mask = np.zeros_like(a)
    mask[4:] = 1
    assert cc(a, b) < 0.9
    assert cc(a, b, mask) == pytest.approx(1.0)
    assert abs(cc(a, rng.normal(size=a.shape))) < 0.2


def test_cc_to_reference_streams_volumes_and_chunks():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(6, 6, 6))

    def gen():
        yield ref  # a single volume
        yield np.stack([ref, -ref, ref + 0.01 * rng.normal(size=ref.shape)])  # a chunk

    out = cc_to_reference(gen(), ref)
    assert out.shape == (4,)
    np.testing.assert_allclose(out[:3], [1, 1, -1], atol=1e-12)
    assert 0.99 < out[3] < 1


def test_ari_perfect_permuted_random():
    rng = np.random.default_rng(5)
    truth = np.repeat(np.arange(4), 50)
    perm = np.array([2, 0, 3, 1])[truth]
    assert adjusted_rand_index(truth, truth) == pytest.approx(1.0)
    assert adjusted_rand_index(truth, perm) == pytest.approx(1.0)
    assert abs(adjusted_rand_index(truth, rng.integers(0, 4, 200))) < 0.05


def test_confusion_matrix_matches_clusters():
    truth = np.repeat([0, 1, 2], 10)
    pred = np.array([7] * 10 + [5] * 10 + [9] * 10)
    pred[0] = 5  # one class-0 particle lands in the class-1 cluster
    res = confusion_matrix(truth, pred)
    assert res.mapping == {7: 0, 5: 1, 9: 2}
    assert res.pred_labels.tolist() == [7, 5, 9]
    np.testing.assert_array_equal(res.matrix, [[9, 1, 0], [0, 10, 0], [0, 0, 10]])
    assert res.accuracy == pytest.approx(29 / 30)
    # more clusters than classes: the unmatched cluster comes last
    res2 = confusion_matrix(truth, np.r_[np.repeat([3, 1], 10), np.repeat([0, 2], 5)])
    assert res2.matrix.shape == (3, 4) and res2.matrix[:, -1].sum() == 5
