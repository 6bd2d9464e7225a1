"""Training: forward model vs the simulator, a real tiny run, homogeneous reconstruction, checkpoints and resume."""

import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tomodrgn.data import TiltSeriesDataset, collate
from tomodrgn.io.mrc import read_mrc
from tomodrgn.io.particles import read_particles
from tomodrgn.kernels import half_lattice, masked_lattice
from tomodrgn.runs import TrainConfig, load_model, write_volume
from tomodrgn.runs.checkpoint import list_checkpoints, load_checkpoint
from tomodrgn.simulate import simulate_dataset
from tomodrgn.simulate.forward import sample_spectra, volume_spectra
from tomodrgn.training import iter_train, train
from tomodrgn.training.loop import EpochEvent, StepEvent
from tomodrgn.training.loss import gather_image_pixels, render_pixels
from tomodrgn.training.step import particle_noise

TINY = dict(enc_arch_a="16x1", enc_arch_b="16x1", embed_dim=8, dec_arch="32x2", device="cpu", backend="torch")


@pytest.fixture(scope="module")
def sim4(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim4")
    return simulate_dataset(out, preset="4-class", n_particles=16, box_size=16, n_tilts=9, max_tilt=24, snr=1.0, seed=0)


def test_forward_model_matches_simulator(tmp_path):
    """Rendering the ground-truth volume's spectrum through CTF · dose filter · shift reproduces the images."""
    sim = simulate_dataset(tmp_path, "homogeneous", n_particles=3, box_size=16, n_tilts=7, snr=None, shift_std=5.0)
    vol, _ = read_mrc(sim.volume_paths[0])
    spec = volume_spectra(vol[None], 2)
    ds = TiltSeriesDataset(read_particles(sim.star_path), sequential=True)
    b = collate([ds[i] for i in range(3)])
    n = 3 * ds.n_tilts
    lat = half_lattice(16, ds.pixel_size, 300.0)
    dose = b["dose"].reshape(n)
    ml = masked_lattice(
        lat, b["rotation"].reshape(n, 3, 3), dose, b["mid_dose"].reshape(n), b["tilt_weight"].reshape(n)
    )
    f = sample_spectra(spec, ml.coords.double())[:, 0]
    h_pos, h_neg = ((f.real - f.imag) / ds.norm[1]).float(), ((f.real + f.imag) / ds.norm[1]).float()
    img = torch.cat(gather_image_pixels(b["images"].reshape(n, 17, 17), lat, ml))
    errs = {}
    for dose_filter in (True, False):
        args = (lat, ml, b["ctf"].reshape(n, -1), b["shift"].reshape(n, 2), dose if dose_filter else None)
        pred = torch.cat(render_pixels(h_pos, h_neg, *args))
        errs[dose_filter] = float(torch.linalg.norm(pred - img) / torch.linalg.norm(img))
    assert errs[True] < 0.03
    assert errs[True] < errs[False]  # the simulator applies the exposure filter


def test_particle_noise_is_standard_normal_and_split_invariant():
    idx = np.arange(4000)
    eps = particle_noise(3, 1, idx, 4)
    assert abs(float(eps.mean())) < 0.03 and abs(float(eps.std()) - 1) < 0.03
    torch.testing.assert_close(particle_noise(3, 1, idx[[7, 2]], 4), eps[[7, 2]])
    assert not torch.equal(particle_noise(3, 2, idx[:5], 4), eps[:5])


def test_vae_training_run(sim4, tmp_path):
    cfg = TrainConfig(zdim=2, epochs=3, batch_size=4, lr=2e-3, **TINY)
    events = list(iter_train(sim4.star_path, tmp_path / "run", cfg))
    steps = [e for e in events if isinstance(e, StepEvent)]
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert len(epochs) == 3 and len(steps) == 12
    assert epochs[-1].loss < epochs[0].loss
    assert all(s.particles_per_s > 0 and np.isfinite(s.loss) for s in steps)
    run = tmp_path / "run"
    for name in ("config.json", "train.log", "weights.0.pt", "weights.2.pt", "weights.pt", "z.2.npy", "z.npy"):
        assert (run / name).exists(), name
    assert TrainConfig.load(run / "config.json") == cfg
    assert len([ln for ln in (run / "train.log").read_text().splitlines() if ln.startswith("epoch")]) == 3
    z = np.load(run / "z.npy")
    assert z.shape == (16, 2) and np.isfinite(z).all() and np.abs(z).sum() > 0
    assert np.load(run / "z.2.logvar.npy").shape == (16, 2)
    state = load_checkpoint(run / "weights.2.pt")
    assert state["epoch"] == 3 and state["dataset"]["box_size"] == 16
    assert state["dataset"]["pixel_size"] == pytest.approx(sim4.pixel_size)
    # evaluation API
    m = load_model(run)
    assert m.box_size == 16 and m.pixel_size == pytest.approx(sim4.pixel_size) and m.epoch == 2
    vols = m.decode(np.zeros((2, 2), np.float32))
    assert vols.shape == (2, 16, 16, 16) and vols.dtype == np.float32
    mu, logvar = m.embed(sim4.star_path)
    assert mu.shape == (16, 2) and logvar.shape == (16, 2)
    np.testing.assert_allclose(z, mu, rtol=1e-4, atol=1e-5)  # the run's all-tilt pass, in its own batches
    path = write_volume(tmp_path / "v.mrc", vols[0], m.pixel_size)
    assert read_mrc(path)[1] == pytest.approx(sim4.pixel_size, rel=1e-4)
    with pytest.raises(ValueError, match="2-D latent"):
        m.decode(None)


def test_homogeneous_training_recovers_volume(tmp_path):
    sim = simulate_dataset(tmp_path / "s", "homogeneous", n_particles=32, box_size=16, n_tilts=11, snr=None, seed=1)
    gt, _ = read_mrc(sim.volume_paths[0])
    cfg = TrainConfig(
        mode="homogeneous",
        dec_arch="64x3",
        epochs=8,
        batch_size=8,
        lr=3e-3,
        sequential_tilts=True,
        device="cpu",
        backend="torch",
    )
    result = train(sim.star_path, tmp_path / "run", cfg, progress=False)
    assert result.epochs_completed == 8 and result.history[-1].loss < 0.7 * result.history[0].loss
    vol = load_model(tmp_path / "run").decode(None)[0]
    cc = np.corrcoef(vol.ravel(), gt.ravel())[0, 1]
    assert cc > 0.5, cc


def _params(run: Path, name: str) -> dict:
    return load_checkpoint(run / name)["model"]


def test_stop_and_resume_continue_exactly(sim4, tmp_path):
    """Stop mid-epoch (stop_event) and resume == one uninterrupted run: same weights, optimiser state, latents."""
    cfg = TrainConfig(zdim=2, epochs=2, batch_size=4, lr=1e-3, seed=5, **TINY)  # random tilt sampling
    list(iter_train(sim4.star_path, tmp_path / "a", cfg))

    stop = threading.Event()
    for ev in iter_train(sim4.star_path, tmp_path / "b", cfg, stop_event=stop):
        if isinstance(ev, StepEvent) and ev.epoch == 0 and ev.step == 2:
            stop.set()
    ckpts = list_checkpoints(tmp_path / "b")
    assert [p.name for _, p in ckpts] == ["weights.0.step2.pt"]
    result = train(sim4.star_path, tmp_path / "b", resume=True, progress=False)
    assert result.epochs_completed == 2 and not result.stopped

    a, b = _params(tmp_path / "a", "weights.1.pt"), _params(tmp_path / "b", "weights.1.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    oa = load_checkpoint(tmp_path / "a" / "weights.1.pt")["optimizer"]["state"]
    ob = load_checkpoint(tmp_path / "b" / "weights.1.pt")["optimizer"]["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "z.0.npy"), np.load(tmp_path / "b" / "z.0.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "z.1.npy"), np.load(tmp_path / "b" / "z.1.npy"))


def test_max_steps_ends_the_run_with_every_particles_latents(sim4, tmp_path, capsys):
    """--max-steps N: N optimiser steps in all, the epoch in progress written as the last (checkpoint, and latents
    of every particle from the all-tilt encoder pass); a resume with a larger N continues from there."""
    from tomodrgn.cli import main

    # 16 particles: 4 steps an epoch; 3 of 9 tilts sampled, so the all-tilt pass takes 4 * 4 * 3 // 9 = 5 a batch
    cfg = TrainConfig(zdim=2, epochs=5, batch_size=4, max_steps=3, n_tilts=3, **TINY)
    events = list(iter_train(sim4.star_path, tmp_path / "run", cfg))
    steps = [ev for ev in events if isinstance(ev, StepEvent)]
    assert [ev.global_step for ev in steps] == [1, 2, 3] and steps[0].steps_per_epoch == 4
    assert [ev.epoch for ev in events if isinstance(ev, EpochEvent)] == [0]
    assert [p.name for _, p in list_checkpoints(tmp_path / "run")] == ["weights.0.pt"]
    z = np.load(tmp_path / "run" / "z.0.npy")
    assert z.shape == (16, 2) and np.all(np.abs(z).sum(1) > 0)  # every particle, not only the 12 seen
    np.testing.assert_allclose(z, load_model(tmp_path / "run").embed(sim4.star_path)[0], rtol=1e-4, atol=1e-5)
    assert "--max-steps 3 reached at epoch 0 step 3/4" in (tmp_path / "run" / "train.log").read_text()
    again = train(sim4.star_path, tmp_path / "run", resume=True, progress=False)
    assert again.epochs_completed == 1 and not again.stopped and not again.history  # nothing left to do
    main(["train_vae", str(sim4.star_path), "-o", str(tmp_path / "run"), "--resume", "--max-steps", "6"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "--max-steps 6 reached at epoch 1 step 3/4" in log  # epoch 0 ended at its step 3
    assert [p.name for _, p in list_checkpoints(tmp_path / "run")][-1] == "weights.1.pt"
    with pytest.raises(SystemExit) as e:
        main(["train_vae", str(sim4.star_path), "-o", str(tmp_path / "other"), "--max-steps", "0"])
    assert e.value.code == 2 and "--max-steps" in capsys.readouterr().err


def test_resume_without_checkpoint_names_directory(tmp_path, sim4):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        list(iter_train(sim4.star_path, tmp_path, resume=True))


def test_sigkill_mid_epoch_then_resume(sim4, tmp_path):
    worker = Path(__file__).with_name("_train_worker.py")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(worker), str(sim4.star_path), str(run), "--epochs", "2"], stdout=subprocess.PIPE, text=True
    )
    killed_at = None
    for line in proc.stdout:
        parts = line.split()
        if parts[0] == "step" and int(parts[1]) == 1 and int(parts[2]) == 3:  # mid epoch 1 (8 steps per epoch)
            proc.send_signal(signal.SIGKILL)
            killed_at = (int(parts[1]), int(parts[2]))
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert killed_at is not None and proc.returncode == -signal.SIGKILL
    pts = sorted(run.glob("*.pt"))
    assert pts, "no checkpoint written before the kill"
    for p in pts:
        load_checkpoint(p)  # every *.pt file is complete
    out = subprocess.run(
        [sys.executable, str(worker), str(sim4.star_path), str(run), "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    first = out.stdout.split()[:3]
    assert first == ["step", "1", "1"]  # restarted at the start of epoch 1 (the last complete checkpoint)
    assert "done" in out.stdout
    assert (run / "weights.1.pt").exists() and np.load(run / "z.1.npy").shape == (16, 2)


def test_config_json_roundtrip_and_errors(tmp_path):
    cfg = TrainConfig(zdim=4, pooling="set", n_tilts=5, beta=0.1, amp=True)
    assert TrainConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"zdim": 2, "learning_rate": 1})
    with pytest.raises(ValueError, match="pooling"):
        TrainConfig(pooling="sum")
    with pytest.raises(ValueError, match="nodes x layers"):
        TrainConfig(dec_arch="256")


def test_beta_schedule_and_default():
    from tomodrgn.training.loss import beta_at, default_beta

    assert default_beta(8, 41, 32) == pytest.approx(1 / (8 + 41 * 32 * 32))
    assert beta_at(1.0, 0, 10) == 0 and beta_at(1.0, 5, 10) == 0.5 and beta_at(1.0, 50, 10) == 1.0
    assert beta_at(0.3, 0, 0) == 0.3


def test_encoder_images_dose_order_and_phase_flip():
    from tomodrgn.physics.ctf import compute_ctf
    from tomodrgn.physics.lattice import Lattice
    from tomodrgn.runs.model import encoder_images

    torch.manual_seed(0)
    lat = half_lattice(16, 2.0)  # 2 Å pixels: the CTF changes sign inside the box
    images = torch.randn(2, 4, 17, 17)
    ctf = torch.tensor([15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0]).repeat(2, 4, 1)
    dose = torch.tensor([[9.0, 3.0, 12.0, 6.0], [3.0, 6.0, 9.0, 12.0]])
    flipped = encoder_images(images, ctf, lat, TrainConfig(pooling="mean"), dose)
    sign = torch.sign(compute_ctf(torch.from_numpy(Lattice(16).freqs2d(2.0)).float(), *ctf[0, 0]))
    assert (sign < 0).any() and (sign > 0).any()
    torch.testing.assert_close(flipped, images * sign.reshape(17, 17))
    cfg = TrainConfig(encoder="per-tilt", pooling="concatenate", phase_flip=False)
    ordered = encoder_images(images, ctf, lat, cfg, dose)
    torch.testing.assert_close(ordered[0], images[0, [1, 3, 0, 2]])
    torch.testing.assert_close(ordered[1], images[1])
    # the reference-frame encoder keeps the tilts with their rotations: no reordering
    same = encoder_images(images, ctf, lat, TrainConfig(encoder="reference-frame", phase_flip=False), dose)
    torch.testing.assert_close(same, images)
