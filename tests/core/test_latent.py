"""PCA, UMAP, k-means, on-data centres, traversals (tomodrgn.analysis.latent) and volume-space analyses."""

import numpy as np
import pytest

from tomodrgn.analysis.latent import kmeans, nearest_to_centres, path_between, pc_traversal, pca, umap_embed
from tomodrgn.analysis.metrics import adjusted_rand_index
from tomodrgn.analysis.volumes import (
    StreamedPCA,
    convergence,
    iter_decoded,
    latent_convergence,
    list_epochs,
    volume_pca,
)


def _blobs(n_per=30, zdim=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]], dtype=float)[:, :zdim]
    z = np.concatenate([c + 0.3 * rng.normal(size=(n_per, zdim)) for c in centres])
    return z, np.repeat(np.arange(3), n_per), centres


def test_pca_recovers_dominant_axis():
    rng = np.random.default_rng(0)
    axis = np.array([1.0, 2.0, 0.0, -1.0]) / np.sqrt(6)
    z = rng.normal(size=(200, 1)) * 5 * axis + 0.1 * rng.normal(size=(200, 4)) + 3.0
    res = pca(z, 2)
    assert res.coords.shape == (200, 2) and res.components.shape == (2, 4)
    assert abs(res.components[0] @ axis) > 0.999
    assert res.explained_variance_ratio[0] > 0.99
    np.testing.assert_allclose(res.mean, z.mean(0))
    assert pca(z, 10).coords.shape == (200, 4)  # clipped to zdim


def test_kmeans_on_separated_blobs():
    z, truth, centres = _blobs()
    labels, found = kmeans(z, 3, seed=0)
    assert labels.shape == (90,) and found.shape == (3, 4)
    assert adjusted_rand_index(truth, labels) == pytest.approx(1.0)
    idx = nearest_to_centres(z, found)
    # each on-data centre particle lies in a different true blob, and is its cluster's member
    assert sorted(truth[idx].tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(labels[idx], np.arange(3))
    with pytest.raises(ValueError, match="k = 100"):
        kmeans(z, 100)


def test_umap_shape_and_small_fallback():
    z, truth, _ = _blobs(n_per=20)
    emb = umap_embed(z, seed=0)
    assert emb.shape == (60, 2) and np.all(np.isfinite(emb))
    # blobs stay separated in the embedding: k-means on it recovers them
    assert adjusted_rand_index(truth, kmeans(emb, 3)[0]) == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="PCA instead"):
        small = umap_embed(z[:5])
    assert small.shape == (5, 2)


def test_pc_traversal_and_path():
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, 500)
    z = np.stack([t, 0.01 * rng.normal(size=500), np.zeros(500)], 1)
    pts, values = pc_traversal(z, pc=1, n_points=5)
    assert pts.shape == (5, 3)
    proj = pca(z).coords[:, 0]
    np.testing.assert_allclose(values[[0, -1]], np.percentile(proj, [5, 95]))
    assert np.all(np.diff(values) > 0)
    # the points lie on the z_x axis, from about −0.9 to 0.9 (or reversed, PCA sign is arbitrary)
    np.testing.assert_allclose(sorted(np.abs(pts[[0, -1], 0])), np.abs(np.percentile(t, [5, 95])), atol=0.02)
    with pytest.raises(ValueError, match="PC4"):
        pc_traversal(z, pc=4)
    path = path_between(np.zeros(3), np.ones(3), 3)
    np.testing.assert_allclose(path, [[0, 0, 0], [0.5, 0.5, 0.5], [1, 1, 1]])


def _moving_blob(shift, d=12):
    x = np.linspace(-1, 1, d)
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    return np.exp(-((xx - 0.15 * shift) ** 2 + yy**2 + zz**2) / 0.1)


@pytest.mark.parametrize("batch", [7, 30])
def test_streamed_pca_equals_sklearn_incremental_pca(batch):
    """The Gram-matrix update gives sklearn IncrementalPCA's components (signs included), singular values, explained
    variance, mean and projections, batch for batch, on rows much longer than a batch (as volumes are)."""
    from sklearn.decomposition import IncrementalPCA

    rng = np.random.default_rng(5)
    x = (rng.normal(size=(95, 3)) * [4.0, 2.0, 1.0]) @ rng.normal(size=(3, 2000)) + rng.normal(size=(95, 2000))
    x += rng.normal(size=2000)  # an offset the mean must carry
    ours, ref = StreamedPCA(3), IncrementalPCA(n_components=3)
    for start in range(0, len(x), batch):
        if len(x[start : start + batch]) >= 3:
            ours.partial_fit(x[start : start + batch])
            ref.partial_fit(x[start : start + batch])
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-9)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-8)
    np.testing.assert_allclose(ours.transform(x), ref.transform(x), atol=1e-7)


def test_streamed_volume_pca_recovers_1d_variation():
    rng = np.random.default_rng(2)
    t = rng.uniform(-1, 1, 120)

    def decode(zc):  # z (n, 1) → volumes: a blob moving along x
        return np.stack([_moving_blob(s) for s in zc[:, 0]])

    res = volume_pca(lambda: iter_decoded(t[:, None], decode, chunk_size=7), n_components=3, batch_size=20)
    assert res.components.shape == (3, 12, 12, 12) and res.coords.shape == (120, 3)
    assert res.explained_variance_ratio[0] > 0.9
    assert np.all(np.diff(res.explained_variance_ratio) <= 0)
    # PC1 coordinate follows the hidden shift (small shifts: the blob's derivative dominates)
    assert abs(np.corrcoef(t, res.coords[:, 0])[0, 1]) > 0.99
    # the streamed result equals the exact PCA of all volumes at once
    flat = np.stack([_moving_blob(s) for s in t]).reshape(120, -1)
    _, sv, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    assert abs(res.components[0].ravel() @ vt[0]) > 0.999
    np.testing.assert_allclose(res.explained_variance_ratio[0], sv[0] ** 2 / (sv**2).sum(), rtol=1e-3)
    np.testing.assert_allclose(res.mean, flat.mean(0).reshape(12, 12, 12), atol=1e-5)


def test_convergence_between_epochs(tmp_path):
    z, _, _ = _blobs(n_per=15, zdim=2)
    rng = np.random.default_rng(3)
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    np.save(tmp_path / "z.0.npy", rng.normal(size=z.shape))  # untrained: unrelated to later epochs
    np.save(tmp_path / "z.1.npy", z)
    np.save(tmp_path / "z.2.npy", z @ rot * 2 + 1)  # same space, rotated and scaled
    assert list_epochs(tmp_path) == [0, 1, 2]
    same = latent_convergence(z, z @ rot * 2 + 1, k=3)
    assert same["r2_linear"] == pytest.approx(1.0) and same["kmeans_ari"] == pytest.approx(1.0)

    def decoder_for_epoch(epoch):  # epoch 0 decodes everything to one volume; later epochs follow z[0]
        return lambda zc: np.stack([_moving_blob(np.tanh(v[0]) if epoch else -3.0) for v in zc])

    rows = convergence(tmp_path, k=3, decoder_for_epoch=decoder_for_epoch, n_volumes=3)
    assert [(r["epoch_prev"], r["epoch"]) for r in rows] == [(0, 1), (1, 2)]
    assert rows[0]["r2_linear"] < 0.5 < rows[1]["r2_linear"]
    assert rows[1]["kmeans_ari"] == pytest.approx(1.0)
    assert rows[0]["volume_cc"] < 0.99 and rows[1]["volume_cc"] < 1.0


def test_umap_leaves_torchs_thread_count_alone():
    """numba (under UMAP) resets torch's thread count; a training after an analysis in the same process (the plugin,
    a notebook) ran 5–10× slower on 2 cores before the count was put back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        umap_embed(np.random.default_rng(0).normal(size=(60, 3)))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
