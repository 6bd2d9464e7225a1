"""``--batch-size auto`` on CPU under a memory limit it must respect, its one-line refusal, and the one-line message
of a training step that runs out of memory (a real allocation failure under an address-space limit)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.io.errors import InputError
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import TrainConfig, train
from tomodrgn.training.batch_size import _linux_rss_peak_reset, _status_kib

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory via Linux /proc")
MIB = 2**20


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("bs") / "sim", "4-class", n_particles=48, box_size=24, n_tilts=11,
                            snr=5.0, seed=0)  # fmt: skip


def _config(limit_gib: float | None) -> TrainConfig:
    return TrainConfig(zdim=2, epochs=1, batch_size="auto", memory_limit=limit_gib, dec_arch="256x3",
                       enc_arch_a="32x2", device="cpu", backend="torch", seed=0, weight_average_steps=0)  # fmt: skip


def _train_peak(sim, out: Path, extra_mib: float) -> tuple[int, float, float]:
    """Train with a limit of the resident set now + ``extra_mib``; (batch chosen, limit, peak resident set) in
    bytes."""
    limit = _status_kib("VmRSS") * 1024 + extra_mib * MIB
    _linux_rss_peak_reset()
    train(sim.star_path, out, _config(limit / 2**30), progress=False)
    peak = _status_kib("VmHWM") * 1024
    chosen = json.loads((out / "config.json").read_text())["batch_size"]
    line = next(x for x in (out / "train.log").read_text().splitlines() if "batch size auto" in x)
    assert f"batch size auto: {chosen} " in line and "trial peaks" in line
    return chosen, limit, peak


def test_auto_batch_size_respects_the_memory_limit(sim, tmp_path):
    """Measured (D = 24, 11 tilts, decoder 256×3): ~25 MB per particle; the process's peak resident set stays
    under the limit, and a larger limit gives a larger batch."""
    small, limit_small, peak_small = _train_peak(sim, tmp_path / "small", 350)
    large, limit_large, peak_large = _train_peak(sim, tmp_path / "large", 900)
    print(f"limit +350 MiB: batch {small}, peak {peak_small / MIB:.0f} of {limit_small / MIB:.0f} MiB; "
          f"+900 MiB: batch {large}, peak {peak_large / MIB:.0f} of {limit_large / MIB:.0f} MiB")  # fmt: skip
    assert isinstance(small, int) and 1 <= small < large <= 48
    assert peak_small <= limit_small and peak_large <= limit_large


def test_auto_batch_size_refuses_a_limit_too_small_in_one_line(sim, tmp_path, capsys):
    with pytest.raises(InputError, match="one particle per batch needs .* GiB at box 24 with 11 tilts"):
        train(sim.star_path, tmp_path / "tiny", _config(0.05), progress=False)
    assert not (tmp_path / "tiny").exists()  # nothing written
    res = run_cli(capsys, "train_nn", sim.star_path, "-o", tmp_path / "cli", "--batch-size", "auto",
                  "--memory-limit", "0.05", "--device", "cpu")  # fmt: skip
    assert_user_error(res, "--batch-size auto", "--memory-limit")
    assert_user_error(run_cli(capsys, "train_nn", sim.star_path, "-o", tmp_path / "x", "--batch-size", "many"),
                      "--batch-size", "auto")  # fmt: skip


def test_a_step_out_of_memory_is_one_line_naming_batch_and_box(sim, tmp_path):
    """The set-up runs, then the address space is limited to what the process has plus 64 MiB; the first step at
    batch 32 (~0.8 GB) fails to allocate, for real, and becomes one InputError line."""
    script = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        from tomodrgn.io.errors import InputError
        from tomodrgn.training import TrainConfig
        from tomodrgn.training.distributed import init_distributed
        from tomodrgn.training.trainer import Trainer
        cfg = TrainConfig(zdim=2, epochs=1, batch_size=32, dec_arch="256x3", enc_arch_a="32x2", device="cpu",
                          backend="torch", weight_average_steps=0)
        trainer = Trainer({str(sim.star_path)!r}, Path({str(tmp_path / "oom")!r}), cfg, False, init_distributed("cpu"))
        trainer.start(False, False)
        vm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 64 * 2**20, resource.RLIM_INFINITY))
        try:
            for _ in trainer.epochs():
                pass
            print("NO ERROR")
        except InputError as e:
            print("MSG:" + str(e))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    msg = next((x[4:] for x in res.stdout.splitlines() if x.startswith("MSG:")), None)
    assert msg is not None, res.stdout + res.stderr[-2000:]
    assert "out of host memory" in msg and "--batch-size 32" in msg and "box 24" in msg and "11 tilts" in msg
    assert "try --batch-size 16, --batch-size auto" in msg and "\n" not in msg
