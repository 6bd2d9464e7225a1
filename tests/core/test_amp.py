"""``--amp``: bf16 autocast of the networks (training.precision), fp32 loss, reductions and optimiser state.

On CPUs without native bf16 (this CI machine: AVX-512 without avx512_bf16, where bf16 matmuls ran 2.4× slower than
fp32) ``--amp`` trains in fp32 and says so; the accuracy test forces the bf16 path, which then really runs in bf16
(the runs differ), to check that mixed precision learns the same classes and maps as fp32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tomodrgn.training.precision as precision
from tomodrgn.analysis.latent import kmeans
from tomodrgn.analysis.metrics import adjusted_rand_index, cc
from tomodrgn.io.mrc import read_mrc
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import TrainConfig, load_model, train


def test_amp_falls_back_to_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    cpu = torch.device("cpu")
    assert not precision.amp_enabled(True, cpu) and not precision.amp_enabled(False, cpu)
    assert "training in fp32" in precision.amp_note(True, cpu) and precision.amp_note(False, cpu) is None
    with pytest.warns(UserWarning, match="--amp: no native bf16"):
        precision.warn_if_fp32(True, cpu)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.amp_enabled(True, cpu) and precision.amp_note(True, cpu) is None
    assert precision.amp_enabled(True, torch.device("cuda"))


def _run(sim, path, amp: bool, truth):
    cfg = TrainConfig(zdim=4, epochs=16, batch_size=8, lr=2e-3, amp=amp, dec_arch="64x2", enc_arch_a="64x2",
                      device="cpu", backend="torch", seed=0)  # fmt: skip
    res = train(sim.star_path, path, cfg, progress=False)
    z = np.load(path / "z.npy")
    ari = adjusted_rand_index(sim.labels, kmeans(z, 4, 0)[0])
    model = load_model(path)
    ccs = [cc(model.decode(np.median(z[sim.labels == c], 0, keepdims=True))[0], truth[c]) for c in range(4)]
    return res.final_loss, ari, np.array(ccs)


def test_amp_learns_the_same_classes_and_maps(tmp_path, monkeypatch):
    """4 classes, 600 particles, D = 16, SNR 5, 16 epochs: ARI and every class CC within 0.01 of fp32 (issue 18).
    Measured (2 threads): fp32 ARI 1.000, class CC 0.993–0.994; bf16 the same to three decimals. At 300 particles
    and 12 epochs the ARIs differed by 0.008–0.017 (one or two particles), depending on the thread count."""
    sim = simulate_dataset(tmp_path / "sim", "4-class", n_particles=600, box_size=16, n_tilts=11, snr=5.0, seed=0)
    truth = [read_mrc(p)[0] for p in sim.volume_paths]
    loss32, ari32, cc32 = _run(sim, tmp_path / "fp32", False, truth)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)  # the bf16 path on this CPU
    loss16, ari16, cc16 = _run(sim, tmp_path / "bf16", True, truth)
    print(f"fp32: ARI {ari32:.3f} CC {np.round(cc32, 3)}; bf16: ARI {ari16:.3f} CC {np.round(cc16, 3)}")
    assert loss16 != loss32  # bf16 really ran
    assert ari32 >= 0.95 and ari16 >= 0.95 and abs(ari16 - ari32) <= 0.01
    assert np.all(np.abs(cc16 - cc32) <= 0.01) and cc32.min() > 0.95
