"""analyze_run on run directories written here, with real decoders built from ground-truth volumes."""

import json
import re

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from tomodrgn.analysis.metrics import adjusted_rand_index
from tomodrgn.analysis.pipeline import analyze_run, evaluate_against_truth
from tomodrgn.analysis.plots import parse_train_log
from tomodrgn.io.index_lists import read_index_list
from tomodrgn.io.mrc import mrc_pixel_size, read_mrc
from tomodrgn.io.particles import read_particles
from tomodrgn.simulate import simulate_dataset

D = 16


def _phantoms():
    x = np.linspace(-1, 1, D)
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    centres = [(0.3, 0, 0), (0, 0.3, 0), (0, 0, -0.3)]
    return np.stack([np.exp(-((xx - a) ** 2 + (yy - b) ** 2 + (zz - c) ** 2) / 0.05) for a, b, c in centres])


def _nearest_class_decoder(class_z, volumes):
    """z (n, zdim) → the ground-truth volume of the nearest class centre (n, D, D, D)."""

    def decode(z):
        d2 = ((np.asarray(z)[:, None, :] - class_z[None]) ** 2).sum(-1)
        return volumes[np.argmin(d2, axis=1)]

    return decode


def _png_variance(path):
    img = mpimg.imread(path)
    return float(img[..., :3].var())


def _write_run(run, z, extra_config):
    run.mkdir(parents=True)
    np.save(run / "z.0.npy", z + 0.01)
    np.save(run / "z.1.npy", z)
    np.save(run / "z.npy", z)
    (run / "config.json").write_text(json.dumps({"mode": "vae", "zdim": z.shape[1], **extra_config}))
    (run / "train.log").write_text(
        "# start epoch 0 step 0: 60 particles, D=16, 1 process(es), device cpu, beta 0.001\n"
        "epoch 0 loss 1.500000 mse 1.400000 kl 3.2000 beta 0.001 particles/s 50.0 time 1.2s -> weights.0.pt\n"
        "epoch 1 loss 0.900000 mse 0.850000 kl 4.1000 beta 0.001 particles/s 51.0 time 1.1s -> weights.1.pt\n"
    )


def test_analyze_run_writes_expected_files(tmp_path):
    rng = np.random.default_rng(0)
    class_z = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0]], dtype=float)
    truth = np.repeat(np.arange(3), 20)
    z = class_z[truth] + 0.5 * rng.normal(size=(60, 3))
    run = tmp_path / "run"
    _write_run(run, z, {"pixel_size": 4.0})
    vols = _phantoms()
    stages = []
    res = analyze_run(
        run, k=3, decode=_nearest_class_decoder(class_z, vols), n_pc_traversal=4, umap=False,
        progress=lambda stage, done, total: stages.append(stage),
    )  # fmt: skip
    out = run / "analyze.1"
    assert res.outdir == out and res.epoch == 1 and res.pixel_size == 4.0
    assert adjusted_rand_index(truth, res.labels) == pytest.approx(1.0)
    assert {"latent", "cluster volumes", "PC1 traversal", "report"} <= set(stages)
    for name in ("z_pca.png", "z_pca_variance.png", "loss.png", "report.md", "z_pca.npy", "kmeans3/labels.npy"):
        assert (out / name).exists(), name
    for png in ("z_pca.png", "z_pca_variance.png", "loss.png"):
        assert _png_variance(out / png) > 1e-3, png  # not blank
    # per-cluster lists partition the particles; centre particles are in their clusters
    lists = [read_index_list(out / f"kmeans3/cluster_{c:03d}.txt") for c in range(3)]
    assert sorted(np.concatenate(lists).tolist()) == list(range(60))
    centre_idx = read_index_list(out / "kmeans3/centre_indices.txt")
    np.testing.assert_array_equal(res.labels[centre_idx], np.arange(3))
    # cluster volumes are the ground-truth volumes of the matching classes, at the right pixel size
    for c in range(3):
        vol, apix = read_mrc(out / f"kmeans3/vol_{c:03d}.mrc")
        assert apix == pytest.approx(4.0)
        np.testing.assert_allclose(vol, vols[truth[centre_idx[c]]], atol=1e-6)
    # PC traversal volumes (4 per PC, PC1 and PC2) and their z values
    for pc in (1, 2):
        assert len(list((out / f"pc{pc}").glob("vol_*.mrc"))) == 4
        assert np.loadtxt(out / f"pc{pc}/z_values.txt").shape == (4, 3)
        assert mrc_pixel_size(out / f"pc{pc}/vol_000.mrc") == pytest.approx(4.0)
    # every link in the report points to an existing file
    report = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert len(links) >= 3 + 3 * 2 + 8
    for link in links:
        assert (out / link).exists(), link
    # loss parsing of the training log format
    log = parse_train_log(run / "train.log")
    assert log["epoch"].tolist() == [0, 1] and log["loss"].tolist() == [1.5, 0.9] and log["kl"].tolist()[1] == 4.1
    # explicit epoch and output folder; k larger than the particles is clipped
    res0 = analyze_run(run, epoch=0, k=100, decode=_nearest_class_decoder(class_z, vols), n_pc_traversal=0,
                       umap=False, outdir=tmp_path / "elsewhere")  # fmt: skip
    assert res0.epoch == 0 and len(res0.centres) == 60 and (tmp_path / "elsewhere/kmeans60/vol_059.mrc").exists()
    with pytest.raises(FileNotFoundError, match="z.7.npy"):
        analyze_run(run, epoch=7, decode=_nearest_class_decoder(class_z, vols))


def test_analyze_simulated_run_with_star_and_truth(tmp_path):
    ds = simulate_dataset(tmp_path / "sim", n_particles=16, box_size=D, n_tilts=5, seed=3)
    truth = np.asarray(ds.labels)
    n_classes = len(ds.volume_paths)
    class_vols = np.stack([read_mrc(p)[0] for p in ds.volume_paths])
    rng = np.random.default_rng(1)
    class_z = 8.0 * np.eye(n_classes)[:, :4]
    z = class_z[truth] + 0.3 * rng.normal(size=(len(truth), 4))
    run = tmp_path / "run"
    _write_run(run, z, {"star_path": str(ds.star_path), "pixel_size": ds.pixel_size})
    k = len(np.unique(truth))
    res = analyze_run(run, k=k, decode=_nearest_class_decoder(class_z, class_vols), n_pc_traversal=2, umap=False)
    out = res.outdir
    # per-cluster filtered STAR files hold exactly the cluster's particles
    series = read_particles(ds.star_path)
    for c in range(k):
        sub = read_particles(out / f"kmeans{k}/cluster_{c:03d}.star")
        assert sub.particle_names == [series.particle_names[i] for i in np.flatnonzero(res.labels == c)]
    report = (out / "report.md").read_text()
    assert "cluster_000.star" in report
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (out / link).exists(), link
    # neighbours and ChimeraX placement of each particle's cluster volume
    nn = pd.read_csv(out / "spatial/neighbours.csv")
    assert nn["particle"].tolist() == series.particle_names and np.all(nn["nn_distance_A"] > 0)
    scripts = sorted((out / "chimerax").glob("*.cxc"))
    assert scripts and sum(p.read_text().count("view matrix models") for p in scripts) == len(truth)
    assert "chimerax/" in report and "spatial/summary_same_cluster.csv" in report
    # against ground truth: perfect clustering, cluster volumes identical to the true class volumes
    cluster_vols = np.stack([read_mrc(out / f"kmeans{k}/vol_{c:03d}.mrc")[0] for c in range(k)])
    ev = evaluate_against_truth(truth, res.labels, cluster_vols, class_vols)
    assert ev.ari == pytest.approx(1.0) and ev.confusion.accuracy == pytest.approx(1.0)
    assert set(ev.cc_per_class) == set(np.unique(truth).tolist())
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in ev.cc_per_class.values())
    # a wrong clustering lowers ARI and the per-class CC
    bad = evaluate_against_truth(truth, np.zeros_like(truth), cluster_vols[:1] * 0 + class_vols[:1], class_vols)
    assert bad.ari == pytest.approx(0.0) and sum(np.isnan(list(bad.cc_per_class.values()))) == k - 1


def test_fsc_confusion_and_latent_plots_are_not_blank(tmp_path):
    from tomodrgn.analysis.metrics import confusion_matrix, fsc
    from tomodrgn.analysis.plots import plot_confusion, plot_fsc, plot_latent

    vols = _phantoms()
    noisy = vols[0] + 0.2 * np.random.default_rng(0).normal(size=vols[0].shape)
    p1 = plot_fsc({"self": fsc(vols[0], vols[0], 4.0), "noisy": fsc(vols[0], noisy, 4.0)}, tmp_path / "fsc.png")
    conf = confusion_matrix(np.repeat([0, 1, 2], 5), np.repeat([2, 0, 1], 5))
    p2 = plot_confusion(conf.matrix, tmp_path / "conf.png", conf.true_labels, conf.pred_labels)
    coords = np.random.default_rng(1).normal(size=(200, 2))
    p3 = plot_latent(coords, tmp_path / "sub/latent.png", labels=(coords[:, 0] > 0).astype(int))
    for p in (p1, p2, p3):
        assert p.exists() and _png_variance(p) > 1e-3
    with pytest.raises(ValueError, match="no 'epoch"):
        (tmp_path / "empty.log").write_text("# nothing yet\n")
        from tomodrgn.analysis.plots import plot_loss

        plot_loss(tmp_path / "empty.log", tmp_path / "loss.png")


def test_analyze_trained_run_with_default_decoder(tmp_path):
    """End to end with the real trainer: load_model(run).decode is the default decoder; convergence across epochs."""
    from tomodrgn.analysis.volumes import convergence
    from tomodrgn.runs import TrainConfig, load_model
    from tomodrgn.training import train

    ds = simulate_dataset(tmp_path / "sim", n_particles=16, box_size=D, n_tilts=5, seed=3)
    cfg = TrainConfig(
        zdim=2, enc_arch_a="16x1", enc_arch_b="16x1", embed_dim=8, dec_arch="16x1", epochs=2, batch_size=8,
        device="cpu", backend="torch",
    )  # fmt: skip
    run = tmp_path / "run"
    train(ds.star_path, run, cfg, progress=False)
    res = analyze_run(run, k=3, n_pc_traversal=2, umap=False)
    assert res.outdir == run / "analyze.1" and res.pixel_size == pytest.approx(ds.pixel_size)
    vol, apix = read_mrc(res.outdir / "kmeans3/vol_000.mrc")
    assert vol.shape == (D, D, D) and apix == pytest.approx(ds.pixel_size) and vol.std() > 0
    assert len(list((res.outdir / "kmeans3").glob("cluster_*.star"))) == 3  # STAR recorded by the trainer
    assert _png_variance(res.outdir / "loss.png") > 1e-3  # the trainer's train.log parses
    rows = convergence(run, k=3, decoder_for_epoch=lambda e: load_model(run, e).decode, n_volumes=2)
    assert len(rows) == 1 and rows[0]["epoch"] == 1 and -1 <= rows[0]["volume_cc"] <= 1
