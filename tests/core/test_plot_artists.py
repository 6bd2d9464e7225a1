"""The analysis pictures read at a glance: their artists (legends, cluster numbers, axis labels, threshold lines,
colour-bar ticks, anchor markers) checked on real figures drawn from real latent spaces (issue 35, item 3)."""

import re

import numpy as np
import pandas as pd
import pytest

from tomodrgn.analysis import plots
from tomodrgn.analysis.convergence import (
    DEFAULT_THRESHOLDS,
    FSC_CONSECUTIVE,
    FSC_REFERENCE,
    epoch_rows,
    stability_figures,
)
from tomodrgn.analysis.latent import kmeans, pca
from tomodrgn.analysis.metrics import fsc
from tomodrgn.analysis.traversal import graph_anchor_marks, graph_path, traversal_figure
from tomodrgn.analysis.volumes import volume_pca

D = 8
SCIENTIFIC = re.compile(r"×|\\times|\^|e[+-]?\d|\$")  # 1×10⁰, $10^{0}$, 1e+00


def _classes(n=600, zdim=6, k=4, seed=0):
    """z of ``k`` well separated classes (n, zdim) and the class of each particle."""
    rng = np.random.default_rng(seed)
    centres = 5.0 * rng.normal(size=(k, zdim))
    truth = rng.integers(0, k, n)
    return centres[truth] + rng.normal(size=(n, zdim)), truth


def _blobs(z):
    """A real decoder: z (n, zdim) → volumes (n, D, D, D), a gaussian blob placed by z's first three values."""
    x = np.linspace(-1, 1, D)
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    c = 0.05 * np.asarray(z)[:, :3]
    return np.exp(-((xx - c[:, 0, None, None, None]) ** 2 + (yy - c[:, 1, None, None, None]) ** 2
                    + (zz - c[:, 2, None, None, None]) ** 2) / 0.1)  # fmt: skip


def _drawn(fig):
    fig.draw_without_rendering()  # tick labels and legend texts are set at draw time
    return fig


def _cluster_texts(ax):
    return {t.get_gid(): t for t in ax.texts if (t.get_gid() or "").startswith("cluster ")}


def test_latent_plot_numbers_every_cluster_density_under_points_plain_colourbar():
    z, _ = _classes()
    res = pca(z)
    labels, centres = kmeans(z, 20)
    centres_pc = ((centres - res.mean) @ res.components.T)[:, :2]
    fig = _drawn(plots.latent_figure(res.coords[:, :2], labels, centres_pc, ("PC1", "PC2"), "z PCA",
                                     res.explained_variance_ratio))  # fmt: skip
    ax, cbar_ax = fig.axes
    texts = _cluster_texts(ax)
    assert set(texts) == {f"cluster {c}" for c in range(20)}  # every cluster numbered, at its centre
    for c in range(20):
        assert texts[f"cluster {c}"].get_text() == str(c)
        assert texts[f"cluster {c}"].get_position() == pytest.approx(tuple(centres_pc[c]))
    assert ax.get_legend() is None  # 20 clusters: numbers, not a 20-entry legend
    density, points = ax.collections[0], ax.collections[1]
    assert len(points.get_offsets()) == len(z) and density.get_zorder() < points.get_zorder()
    ticks = [t.get_text() for t in cbar_ax.get_yticklabels() if t.get_text()]
    assert ticks and ticks[0] == "1" and not any(SCIENTIFIC.search(t) for t in ticks)
    assert all(float(t) == int(float(t)) for t in ticks)  # counts: 1, 2, 5, 10 …
    assert "particles" in cbar_ax.get_ylabel()
    r = res.explained_variance_ratio
    assert ax.get_xlabel() == f"PC1 ({100 * r[0]:.1f} % of variance)"
    assert ax.get_ylabel() == f"PC2 ({100 * r[1]:.1f} % of variance)"


def test_latent_plot_few_clusters_have_a_legend_with_sizes():
    z, _ = _classes(n=300)
    labels, _ = kmeans(z, 4)
    emb = pca(z).coords[:, :2]
    fig = _drawn(plots.latent_figure(emb, labels, None, ("UMAP1", "UMAP2"), "z UMAP"))
    ax = fig.axes[0]
    entries = [t.get_text() for t in ax.get_legend().get_texts()]
    sizes = np.bincount(labels)
    assert entries == [f"{c} ({sizes[c]} particles)" for c in range(4)]
    assert len(_cluster_texts(ax)) == 4
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("UMAP1", "UMAP2")  # no variance for UMAP


def test_count_ticks_are_plain_counts():
    assert plots.count_ticks(3) == [1, 2]
    assert plots.count_ticks(60) == [1, 2, 5, 10, 20, 50]
    assert plots.count_ticks(4000) == [1, 10, 100, 1000]


def test_volume_pca_counts_sampled_volumes_not_particles():
    z, _ = _classes(n=240)
    vols = _blobs(z[::8])  # 30 sampled volumes
    res = volume_pca(lambda: [vols], 4)
    vlabels, vcentres = kmeans(res.coords, 3)
    centre_vols = np.argmin(((res.coords[None] - vcentres[:, None]) ** 2).sum(-1), axis=1)
    fig = _drawn(plots.volume_pca_figure(res.coords, vlabels, centre_vols, res.explained_variance_ratio))
    ax = fig.axes[0]
    words = [ax.get_title(), *(t.get_text() for t in ax.get_legend().get_texts())]
    words += [a.get_ylabel() for a in fig.axes[1:]]
    assert all("particle" not in w for w in words) and "30 sampled volumes" in ax.get_title()
    assert ax.get_xlabel().startswith("volume PC1 (") and "% of variance" in ax.get_ylabel()
    assert set(_cluster_texts(ax)) == {"cluster 0", "cluster 1", "cluster 2"}


def test_loss_plot_has_one_legend_and_labelled_axes(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(
        f"epoch {e} (k/4) loss {1 / (e + 1):.5f} mse {0.9 / (e + 1):.5f} kl {2 + e:.3f} val_loss {0.95 / (e + 1):.5f}\n"
        for e in range(4)
    ))  # fmt: skip
    fig = _drawn(plots.loss_figure(log))
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None] + list(fig.legends)
    assert len(legends) == 1
    assert len(legends[0].get_texts()) == 4  # loss, mse, val_loss and kl in the one legend
    ax, ax_kl = fig.axes
    assert ax.get_xlabel() == "epoch" and "MSE" in ax.get_ylabel() and "KL" in ax_kl.get_ylabel()


def test_convergence_plots_draw_the_verdict_thresholds():
    rng = np.random.default_rng(1)
    z0, _ = _classes(n=120)
    zs = {e: z0 + rng.normal(scale=1.0 / (e + 1), size=z0.shape) for e in range(4)}
    rows, _ = epoch_rows(zs, lambda e: _blobs, pixel_size=10.0, k=10, n_volumes=3)
    figs = stability_figures(pd.DataFrame(rows), DEFAULT_THRESHOLDS)
    assert set(figs) == {"latent_stability", "volume_stability"}
    drawn = {}
    for fig in figs.values():
        ax = fig.axes[0]
        assert ax.get_ylabel() and ax.get_xlabel().startswith("epoch")
        for line in ax.lines:
            if (line.get_gid() or "").startswith("threshold "):
                assert np.ptp(line.get_ydata()) == 0
                drawn[line.get_gid().removeprefix("threshold ")] = line.get_ydata()[0]
    assert drawn == DEFAULT_THRESHOLDS  # the very constants of the verdict, one line each


def test_fsc_plot_draws_the_levels_convergence_nn_reads():
    x = np.linspace(-1, 1, D)
    vol = np.exp(-(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2) / 0.1)
    curve = fsc(vol, vol + 0.1 * np.random.default_rng(0).normal(size=vol.shape), 5.0)
    for levels in ((FSC_CONSECUTIVE,), FSC_REFERENCE):
        ax = plots.fsc_figure({"a→b": curve}, levels).axes[0]
        ys = sorted(ln.get_ydata()[0] for ln in ax.lines if (ln.get_gid() or "").startswith("threshold"))
        assert ys == sorted(levels) and ax.get_ylabel() == "FSC" and "1/Å" in ax.get_xlabel()


def test_graph_traversal_marks_every_anchor():
    rng = np.random.default_rng(2)
    t = rng.uniform(0, 3, 400)
    z = 3.0 * np.c_[np.cos(t), np.sin(t), t / 3] + 0.1 * rng.normal(size=(400, 3))
    anchors = [int(np.argmin(t)), int(np.argmin(np.abs(t - 1.0))), int(np.argmin(np.abs(t - 2.0))), int(np.argmax(t))]
    idx = graph_path(z, anchors)
    at, names = graph_anchor_marks(idx, anchors)
    assert [int(idx[p]) for p in at] == anchors
    ax = traversal_figure(z, z[idx], "graph path", at, names).axes[0]
    (marks,) = [ln for ln in ax.lines if ln.get_gid() == "anchors"]
    res = pca(z, 2)
    assert np.c_[marks.get_xdata(), marks.get_ydata()] == pytest.approx(res.coords[anchors])
    labels = [t.get_text() for t in ax.texts]
    assert labels == [f"start: particle {anchors[0]}", f"via: particle {anchors[1]}",
                      f"via: particle {anchors[2]}", f"end: particle {anchors[3]}"]  # fmt: skip
    assert "% of variance" in ax.get_xlabel()


def test_analyze_report_embeds_every_picture_it_writes(tmp_path):
    import json

    from tomodrgn.analysis.pipeline import analyze_run

    z, _ = _classes(n=80, zdim=3, k=3)
    run = tmp_path / "run"
    run.mkdir()
    np.save(run / "z.0.npy", z)
    np.save(run / "z.npy", z)
    (run / "config.json").write_text(json.dumps({"mode": "vae", "zdim": 3, "pixel_size": 4.0}))
    (run / "train.log").write_text("epoch 0 loss 1.5 mse 1.4 kl 3.2\nepoch 1 loss 0.9 mse 0.85 kl 4.1\n")
    res = analyze_run(run, k=3, decode=_blobs, n_pc_traversal=3, umap=False)
    report = res.report.read_text()
    embedded = set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report))
    written = {p.relative_to(res.outdir).as_posix() for p in res.outdir.rglob("*.png")}
    assert {"pc1/path.png", "pc2/path.png", "z_pca.png", "loss.png"} <= written
    assert embedded == written  # every picture shown, no link to a picture that is not there
