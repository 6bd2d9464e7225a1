"""Every command of the ``tomodrgn`` CLI, end to end on a tiny simulated dataset (real files, real training)."""

import numpy as np
import pytest
import starfile

from tomodrgn.cli import main
from tomodrgn.io.mrc import read_mrc, read_mrc_header

TINY_TRAIN = ["--epochs", "1", "--batch-size", "4", "--n-tilts", "5", "--dec-arch", "16x2", "--device", "cpu"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sim"
    # float16 stacks (MRC mode 12, as RELION writes with --float16): every command below reads them
    main(["simulate", "-o", str(out), "--n-particles", "12", "-D", "16", "--n-tilts", "9", "--seed", "1", "--tomogram",
          "--float16"])  # fmt: skip
    return out


def test_simulate_writes_dataset(sim_dir):
    assert (sim_dir / "particles.star").exists()
    assert len(np.loadtxt(sim_dir / "labels.txt")) == 12
    assert sorted(p.name for p in (sim_dir / "volumes").glob("*.mrc")) == [f"class_{i:02d}.mrc" for i in range(4)]
    assert list((sim_dir / "tomograms").glob("*.mrc"))
    stacks = sorted((sim_dir / "particles").glob("*.mrcs"))
    assert len(stacks) == 12 and all(read_mrc_header(p).mode == 12 for p in stacks)


def test_train_eval_analyze_filter(sim_dir, tmp_path, capsys):
    star = sim_dir / "particles.star"
    run = tmp_path / "vae"
    train_vae = ["train_vae", str(star), "-o", str(run), "--zdim", "2", "--enc-arch-a", "16x1", "--enc-arch-b", "16x1"]
    main([*train_vae, *TINY_TRAIN])
    assert (run / "weights.pt").exists() and np.load(run / "z.npy").shape == (12, 2)
    main(
        [
            *train_vae,
            *TINY_TRAIN[:1],
            "2",
            *TINY_TRAIN[2:],
            "--resume",
        ]
    )
    assert (run / "weights.1.pt").exists()  # resumed and ran the second epoch

    main(["eval_vol", str(run), "-o", str(tmp_path / "vols"), "--z", "0", "0", "1", "1"])
    vols = sorted((tmp_path / "vols").glob("vol_*.mrc"))
    assert len(vols) == 2
    vol, px = read_mrc(vols[0])
    assert vol.shape == (16, 16, 16) and px == pytest.approx(419.2 / 16, rel=1e-3)

    out_z = tmp_path / "z_sub.npy"
    main(["eval_images", str(run), str(star), "-o", str(out_z), "--n-tilts", "5"])
    assert np.load(out_z).shape == (12, 2)

    main(["analyze", str(run), "--ksample", "3", "--no-umap", "-o", str(tmp_path / "an")])
    labels_path = tmp_path / "an" / "kmeans3" / "labels.npy"
    assert (tmp_path / "an" / "report.md").exists() and labels_path.exists()

    labels = np.load(labels_path)
    keep = int(labels[0])
    main(["filter_star", str(star), "--labels", str(labels_path), "--keep", str(keep), "-o", str(tmp_path / "f.star")])
    original = starfile.read(star)
    subset = starfile.read(tmp_path / "f.star")
    assert list(subset["particles"].columns) == list(original["particles"].columns)
    kept_groups = set(subset["particles"]["rlnGroupName"])
    assert len(kept_groups) == int((labels == keep).sum())

    main(["fsc", str(vols[0]), str(vols[0])])
    printed = capsys.readouterr().out
    assert "FSC=0.5" in printed and "\t1.0000" in printed


def test_train_nn_homogeneous(sim_dir, tmp_path):
    run = tmp_path / "homo"
    main(["train_nn", str(sim_dir / "particles.star"), "-o", str(run), *TINY_TRAIN])
    main(["eval_vol", str(run), "-o", str(tmp_path / "v")])
    vol, _ = read_mrc(tmp_path / "v" / "vol_000.mrc")
    assert vol.shape == (16, 16, 16) and np.isfinite(vol).all() and vol.std() > 0


def test_demo_prints_summary(tmp_path, capsys):
    args = ["--outdir", str(tmp_path / "demo"), "--n-particles", "24", "-D", "16", "--epochs", "1", "--snr", "0.2"]
    main(["demo", *args])
    out = capsys.readouterr().out
    assert "adjusted Rand index" in out and "class 3:" in out and "24 particles, SNR 0.2" in out
    assert (tmp_path / "demo" / "train_vae" / "weights.pt").exists()
    assert list((tmp_path / "demo" / "train_vae").glob("analyze.*/report.md"))
