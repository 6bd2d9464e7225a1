"""The analysis commands on a tiny trained continuous-preset run: convergence_vae / convergence_nn, analyze_volumes,
pc_traversal / graph_traversal, subtomo2chimerax, view_config, cleanup. Outputs are read back and checked."""

import re
import shutil

import numpy as np
import pytest
import starfile

from tomodrgn.analysis.convergence import canonical_correlations, knn_preservation, procrustes_r2, stable_from
from tomodrgn.analysis.traversal import graph_path
from tomodrgn.analysis.volumes import list_epochs
from tomodrgn.cli import main
from tomodrgn.io.index_lists import read_index_list
from tomodrgn.io.mrc import mrc_pixel_size, read_mrc
from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import train

TINY = dict(enc_arch_a="16x1", enc_arch_b="16x1", embed_dim=8, dec_arch="32x2", device="cpu", backend="torch")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cont")
    sim = simulate_dataset(out / "sim", "continuous", n_particles=24, box_size=16, n_tilts=9, snr=1.0, seed=0)
    train(sim.star_path, out / "run", TrainConfig(zdim=2, epochs=4, batch_size=4, lr=2e-3, **TINY))
    return sim, out / "run"


@pytest.fixture(scope="module")
def nn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hom")
    sim = simulate_dataset(out / "sim", "homogeneous", n_particles=8, box_size=16, n_tilts=7, snr=1.0, seed=1)
    train(sim.star_path, out / "run", TrainConfig(mode="homogeneous", epochs=3, batch_size=4, lr=2e-3, **TINY))
    return sim, out / "run"


def _pixel(run):
    return load_model(run).pixel_size


def test_latent_stability_metrics():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 3))
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    same = z @ rot * 3 + 1
    assert knn_preservation(z, same, 5) == pytest.approx(1.0)
    assert canonical_correlations(z, same).min() == pytest.approx(1.0)
    assert procrustes_r2(z, same) == pytest.approx(1.0)
    other = rng.normal(size=(60, 3))
    assert knn_preservation(z, other, 5) < 0.3
    assert procrustes_r2(z, other) < 0.5
    rows = [{"epoch_prev": e, "epoch": e + 1, "cca_mean": c} for e, c in enumerate([0.5, 0.95, 0.8, 0.97, 0.99])]
    assert stable_from(rows, {"cca_mean": 0.9}) == 3
    assert stable_from(rows[:3], {"cca_mean": 0.9}) is None


def test_convergence_vae(run, capsys):
    _, rd = run
    main(["convergence_vae", str(rd), "--k", "5", "--n-volumes", "3"])
    out = capsys.readouterr().out
    table = (rd / "convergence" / "convergence.csv").read_text().splitlines()
    assert table[0].startswith("epoch_prev,epoch,knn_preservation,cca_mean")
    assert len(table) == 1 + 3  # epochs 0..3: three consecutive pairs
    verdict = (rd / "convergence" / "verdict.txt").read_text()
    assert re.match(r"(stable from epoch \d|not yet stable at epoch 3)", verdict)
    assert verdict.strip() in out
    for name in ("latent_stability.png", "volume_stability.png", "loss.png", "report.md"):
        assert (rd / "convergence" / name).stat().st_size > 0
    import pandas as pd

    df = pd.read_csv(rd / "convergence" / "convergence.csv")
    assert df["knn_preservation"].between(0, 1).all() and df["volume_cc"].between(-1, 1).all()


def test_convergence_nn(nn_run, capsys):
    sim, rd = nn_run
    main(["convergence_nn", str(rd), "--reference", str(sim.volume_paths[0])])
    out = capsys.readouterr().out
    d = rd / "convergence_nn"
    assert "stable from epoch" in out or "not yet stable" in out
    vol, px = read_mrc(d / "map.2.mrc")
    assert vol.shape == (16, 16, 16) and px == pytest.approx(_pixel(rd), rel=1e-4)
    import pandas as pd

    df = pd.read_csv(d / "convergence_nn.csv")
    assert list(df["epoch"]) == [1, 2] and (df["ref_fsc05_A"] >= 2 * px - 1e-6).all()
    assert (d / "fsc_epochs.png").exists() and (d / "fsc_reference.png").exists()


def test_analyze_volumes(run, tmp_path, capsys):
    sim, rd = run
    out = tmp_path / "av"
    main(["analyze_volumes", str(rd), "-o", str(out), "--n-volumes", "8", "--ksample", "3", "--n-pcs", "2"])
    assert "explained variance" in capsys.readouterr().out
    px = _pixel(rd)
    vols = sorted((out / "volumes").glob("vol_*.mrc"))
    assert len(vols) == 8
    for p in [*vols, out / "mask.mrc", *(out / "pc1").glob("*.mrc"), *(out / "kmeans3").glob("centre_vol_*.mrc")]:
        v, p_px = read_mrc(p)
        assert v.shape == (16, 16, 16) and p_px == pytest.approx(px, rel=1e-4), p
    labels = np.load(out / "kmeans3" / "labels.npy")
    assert labels.shape == (24,) and set(labels.tolist()) == {0, 1, 2}
    names = starfile.read(sim.star_path)
    names = names["particles"] if isinstance(names, dict) else names
    seen = 0
    for c in range(3):
        idx = read_index_list(out / "kmeans3" / f"cluster_{c:03d}.txt").tolist()
        assert idx == np.flatnonzero(labels == c).tolist()
        df = starfile.read(out / "kmeans3" / f"cluster_{c:03d}.star")
        df = df["particles"] if isinstance(df, dict) else df
        seen += df.iloc[:, 0].size
        assert len(df) > 0 and set(df.columns) == set(names.columns)
    assert seen == len(names)  # every tilt image of every particle lands in exactly one cluster
    report = (out / "report.md").read_text()
    assert "k-means in volume space" in report and "8 volumes decoded at kmeans latent positions of 24" in report


def test_analyze_volumes_of_every_particle_resumes_after_an_interruption(run, tmp_path, capsys, monkeypatch):
    """A volume for every particle (no k-means over as many centres as points: each particle is its own volume);
    a call stopped part-way is continued with --resume, decoding only the volumes that are missing, and gives the
    same volumes and clusters as a call never stopped."""
    from tomodrgn.analysis import volume_space
    from tomodrgn.analysis.volume_space import analyze_volumes, sample_latent
    from tomodrgn.io.errors import InputError

    monkeypatch.setattr(volume_space, "DECODE_BATCH", 5)  # 24 particles: the stop comes after 5 of them
    sim, rd = run
    model = load_model(rd)
    z = np.load(rd / "z.npy")
    assert sample_latent(z, len(z)).tolist() == list(range(len(z)))
    assert sample_latent(z, 10 * len(z), "random").tolist() == list(range(len(z)))
    whole = tmp_path / "whole"
    main(["analyze_volumes", str(rd), "-o", str(whole), "--n-volumes", str(len(z)), "--ksample", "3"])
    capsys.readouterr()
    assert "one volume decoded for each of the 24 particles" in (whole / "report.md").read_text()
    decoded = []

    def stopped_after_one_batch(zz):
        if decoded:
            raise KeyboardInterrupt
        decoded.append(len(zz))
        return model.decode(zz)

    part = tmp_path / "part"
    source = {"run": str(rd.absolute()), "epoch": 3, "flip_hand": False}  # as analyze_volumes_run records it
    with pytest.raises(KeyboardInterrupt):
        analyze_volumes(stopped_after_one_batch, z, part, _pixel(rd), n_volumes=len(z), k=3, source=source)
    written = sorted((part / "volumes").glob("vol_*.mrc"))
    assert len(written) == decoded[0] == 5
    assert not list((part / "volumes").glob("*.tmp"))
    with pytest.raises(SystemExit) as e:  # a non-empty folder without --resume: one line, exit 2
        main(["analyze_volumes", str(rd), "-o", str(part), "--n-volumes", str(len(z)), "--ksample", "3"])
    assert e.value.code == 2 and "not empty" in capsys.readouterr().err
    with pytest.raises(InputError, match="other particles"):
        analyze_volumes(model.decode, z, part, _pixel(rd), n_volumes=5, sampling="random", k=3, resume=True,
                        source=source)  # fmt: skip
    with pytest.raises(InputError, match="decoded from"):
        analyze_volumes(model.decode, z, part, _pixel(rd), n_volumes=len(z), k=3, resume=True,
                        source={**source, "flip_hand": True})  # fmt: skip
    rows = []

    def counted(zz):
        rows.append(len(zz))
        return model.decode(zz)

    res = analyze_volumes(counted, z, part, _pixel(rd), n_volumes=len(z), k=3, resume=True, source=source)
    assert sum(rows) == len(z) - len(written)  # only the missing volumes were decoded
    for name in [f"vol_{i:03d}.mrc" for i in range(len(z))]:
        np.testing.assert_array_equal(read_mrc(part / "volumes" / name)[0], read_mrc(whole / "volumes" / name)[0])
    np.testing.assert_array_equal(res.particle_labels, np.load(whole / "kmeans3" / "labels.npy"))
    np.testing.assert_array_equal(res.particle_labels, res.volume_labels)  # each particle's own volume
    main(["analyze_volumes", str(rd), "-o", str(part), "--n-volumes", str(len(z)), "--ksample", "3", "--resume"])
    assert f"{len(z)} volumes" in capsys.readouterr().out


def _projections(paths):
    vols = np.stack([read_mrc(p)[0] for p in paths]).astype(np.float64)
    axis = (vols[-1] - vols[0]).ravel()
    return vols.reshape(len(vols), -1) @ axis


def test_pc_traversal(run, capsys):
    _, rd = run
    main(["pc_traversal", str(rd), "--pc", "1", "2", "--n-points", "6"])
    assert "PC1: 6 volumes" in capsys.readouterr().out
    d = rd / f"pc_traversal.{list_epochs(rd)[-1]}"
    for pc in (1, 2):
        paths = sorted((d / f"pc{pc}").glob("vol_*.mrc"))
        assert len(paths) == 6 and mrc_pixel_size(paths[0]) == pytest.approx(_pixel(rd), rel=1e-4)
        z = np.loadtxt(d / f"pc{pc}" / "z_values.txt")
        assert z.shape == (6, 2)
        # the volumes change monotonically along the PC: projections on (last − first) increase
        assert np.all(np.diff(_projections(paths)) > 0)
    assert (d / "pc1" / "path.png").exists()


def test_graph_traversal(run, tmp_path, capsys):
    _, rd = run
    z = np.load(rd / "z.npy")
    a, b = int(np.argmin(z[:, 0])), int(np.argmax(z[:, 0]))
    path = graph_path(z, [a, b], k=5)
    assert path[0] == a and path[-1] == b and len(set(path.tolist())) == len(path)
    main(["graph_traversal", str(rd), "--anchors", str(a), str(b), "--max-neighbors", "5", "-o", str(tmp_path / "g")])
    capsys.readouterr()
    visited = read_index_list(tmp_path / "g" / "path_particles.txt").tolist()
    assert visited == path.tolist()
    np.testing.assert_allclose(np.loadtxt(tmp_path / "g" / "z_values.txt"), z[path], rtol=1e-5, atol=1e-6)
    assert len(list((tmp_path / "g").glob("vol_*.mrc"))) == len(path)
    with pytest.raises(SystemExit) as e:
        main(["graph_traversal", str(rd), "--anchors", "0", "999"])
    assert e.value.code == 2 and "anchor particle 999" in capsys.readouterr().err


FLIP_HAND_COMMANDS = {
    "eval_vol": ["eval_vol", "{run}", "--z", "0.1", "-0.2", "-o", "{out}"],
    "analyze": ["analyze", "{run}", "--ksample", "3", "--no-umap", "-o", "{out}"],
    "pc_traversal": ["pc_traversal", "{run}", "--pc", "1", "--n-points", "3", "-o", "{out}"],
    "graph_traversal": ["graph_traversal", "{run}", "--anchors", "0", "5", "-o", "{out}"],
    "analyze_volumes": [
        "analyze_volumes",
        "{run}",
        "--n-volumes",
        "6",
        "--ksample",
        "2",
        "--n-pcs",
        "2",
        "-o",
        "{out}",
    ],
    "convergence_nn": ["convergence_nn", "{nn_run}", "-o", "{out}"],
}


@pytest.mark.parametrize("command", list(FLIP_HAND_COMMANDS))
def test_flip_hand_mirrors_every_map_written(command, run, nn_run, tmp_path, capsys):
    """``--flip-hand`` on each command that writes maps: every map is the mirror image (z → −z about voxel D/2) of
    the one written without it, nothing else changes."""
    from tomodrgn.physics.hand import flip_hand

    def go(out, *extra):
        argv = [a.format(run=run[1], nn_run=nn_run[1], out=out) for a in FLIP_HAND_COMMANDS[command]]
        main([*argv, *extra])
        capsys.readouterr()
        return sorted(p.relative_to(out) for p in out.rglob("*.mrc"))

    plain, flipped = go(tmp_path / "plain"), go(tmp_path / "flipped", "--flip-hand")
    assert plain == flipped and len(plain) >= 1
    for rel in plain:
        a, px = read_mrc(tmp_path / "plain" / rel)
        b, px_b = read_mrc(tmp_path / "flipped" / rel)
        assert px_b == px and not np.allclose(a, b), rel
        if command == "analyze_volumes" and rel.parts[0] != "volumes":
            # PCA / k-means / the auto mask run on the mirrored volumes: the same analysis up to float near-ties
            cc = np.corrcoef(b.ravel(), flip_hand(a).ravel())[0, 1]
            assert cc > 0.99 > np.corrcoef(b.ravel(), a.ravel())[0, 1], (rel, cc)
            continue
        np.testing.assert_allclose(b, flip_hand(a), atol=1e-5 * float(np.abs(a).max()), err_msg=str(rel))


def test_subtomo2chimerax(run, tmp_path, capsys):
    sim, rd = run
    # per particle, coloured by latent PC1
    out = tmp_path / "cx"
    main(["subtomo2chimerax", "-o", str(out), "--run", str(rd), "--color-by", "PC1"])
    capsys.readouterr()
    scripts = sorted(out.glob("*.cxc"))
    assert [s.stem for s in scripts] == ["tomo00"]
    text = scripts[0].read_text()
    assert text.count("open ") == 24 and text.count("view matrix models") == 24
    assert len(set(re.findall(r"color (#[0-9a-f]{6})", text))) > 5  # a colour ramp, not one colour
    vol, px = read_mrc(out / "volumes" / "particle_00000.mrc")
    assert vol.shape == (16, 16, 16) and px == pytest.approx(_pixel(rd), rel=1e-4)
    # per cluster, coloured by label: the translation of particle 0 is its position minus A @ box centre (Å)
    labels = np.arange(24) % 2
    np.save(tmp_path / "labels.npy", labels)
    vols = [out / "volumes" / "particle_00000.mrc", out / "volumes" / "particle_00001.mrc"]
    main(["subtomo2chimerax", "-o", str(tmp_path / "cl"), "--star", str(sim.star_path), "--labels",
          str(tmp_path / "labels.npy"), "--volumes", *map(str, vols)])  # fmt: skip
    text = (tmp_path / "cl" / "tomo00.cxc").read_text()
    opened = re.findall(r"open (\S+)", text)
    assert [o.endswith("particle_00001.mrc") for o in opened] == [bool(x) for x in labels]
    truth = np.load(sim.truth_path)
    m = np.array([float(v) for v in re.findall(r"view matrix models #1,(\S+)", text)[0].split(",")]).reshape(3, 4)
    pos = truth["position_px"][0] * float(truth["pixel_size"])
    np.testing.assert_allclose(m[:, 3] + m[:, :3] @ np.full(3, 8 * px), pos, atol=1e-3)


def test_view_config_and_cleanup(run, tmp_path, capsys):
    _, rd = run
    main(["view_config", str(rd)])
    text = capsys.readouterr().out
    assert "zdim" in text and "box_size: 16" in text and "weights.3.pt" in text and "torch" in text
    copy = tmp_path / "copy"
    shutil.copytree(rd, copy, symlinks=True)
    before = sorted(p.name for p in copy.iterdir())
    main(["cleanup", str(copy), "--every", "2", "--dry-run"])
    assert "would remove weights.1.pt" in capsys.readouterr().out
    assert sorted(p.name for p in copy.iterdir()) == before
    main(["cleanup", str(copy), "--every", "2"])
    capsys.readouterr()
    left = {p.name for p in copy.iterdir()}
    assert {"weights.0.pt", "weights.2.pt", "weights.3.pt", "z.0.npy", "z.2.npy", "z.3.npy"} <= left
    assert not {"weights.1.pt", "z.1.npy", "z.1.logvar.npy"} & left
    assert np.load(copy / "z.npy").shape == (24, 2)  # the latest link still resolves
    load_model(copy)


def test_analyze_volumes_streams_its_volumes(tmp_path):
    """A volume for every particle: they go to disk as decoded and the PCA reads them back in batches, so the peak of
    numpy allocations stays flat from 300 to 1,200 volumes (the old code stacked them and fitted them as one batch:
    at 2,000 particles, D = 64, it was killed at 24 GB)."""
    import tracemalloc

    from tomodrgn.analysis.volume_space import analyze_volumes

    d = 16
    grid = np.stack(np.mgrid[:d, :d, :d], -1).astype(np.float32) - d / 2

    def decode(zz):  # a blob moving with z, one volume per row
        c = np.pad(np.asarray(zz, np.float32)[:, :2], ((0, 0), (0, 1))) * 2
        return np.exp(-((grid[None] - c[:, None, None, None]) ** 2).sum(-1) / 8)

    peaks = {}
    for n in (300, 1200):
        z = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
        tracemalloc.start()
        res = analyze_volumes(decode, z, tmp_path / f"av{n}", pixel_size=4.0, n_volumes=n, sampling="random", k=3)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(list((tmp_path / f"av{n}" / "volumes").glob("vol_*.mrc"))) == n
        assert (
            res.pca.coords.shape == (n, 3) and res.pca.explained_variance_ratio[:2].sum() > 0.5
        )  # x and y of the blob
    more = 900 * d**3 * 8  # one float64 copy of the 900 extra volumes
    print(
        f"peak {peaks[300] / 2**20:.1f} → {peaks[1200] / 2**20:.1f} MiB; 900 volumes in float64 {more / 2**20:.1f} MiB"
    )
    assert peaks[1200] - peaks[300] < 0.25 * more
