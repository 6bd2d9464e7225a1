"""The benchmark script runs end to end on a tiny dataset and writes the numbers it promises (not their values:
speed is measured by `nox -s bench`, not asserted in tests)."""

import json

from _bench_module import BENCHMARKS, load_bench


def test_bench_writes_throughput_memory_points_and_profile(tmp_path):
    bench = load_bench("bench_train")
    out = tmp_path / "bench.json"
    args = ["--workdir", str(tmp_path), "--out", str(out), "-D", "16", "--n-particles", "8", "--n-tilts", "5"]
    bench.main([*args, "--epochs", "2", "--batch-size", "4", "--train-tilts", "3", "--devices", "cpu"])
    result = json.loads(out.read_text())
    assert result["dataset"]["D"] == 16 and result["dataset"]["train_tilts"] == 3
    assert 0 < result["points_per_particle"] <= result["points_per_particle_unmasked"]
    assert result["points_per_training_particle"] == result["points_per_particle"] * 3 / 5
    (run,) = result["runs"]
    for key in ("particles_per_s", "seconds_per_epoch", "peak_rss_mb", "decoder_gflops", "matmul_peak_gflops"):
        assert run[key] > 0, key
    assert (
        run["minor_faults_per_step"] >= 0
        and run["precision"].startswith("precision: ")
        and isinstance(run["huge_pages"], bool)
    )
    stages = run["profile"]["stages_ms_per_step"]
    assert {"decoder", "backward", "lattice_mask", "encoder"} <= set(stages)
    assert stages["decoder"] >= stages["featurize"] > 0  # inclusive ranges: featurisation is inside the decoder


def test_bench_gpu_stops_at_once_without_a_gpu():
    """``nox -s bench_gpu`` on a machine without a GPU: one line saying so, exit 2, within seconds."""
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, str(BENCHMARKS / "bench_gpu.py")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "no GPU present" in res.stderr
    assert time.perf_counter() - t0 < 60


def test_bench_gpu_runs_end_to_end_at_toy_size_on_cpu(tmp_path):
    """The benchmark's code path (kernel check, training runs, JSON) at toy size with --allow-cpu."""
    bench = load_bench("bench_gpu")
    out = tmp_path / "gpu.json"
    args = ["--workdir", str(tmp_path), "--out", str(out), "--sizes", "16", "--steps", "4", "--batch-size", "2",
            "--warmup", "1", "--n-tilts", "5", "--allow-cpu"]  # fmt: skip
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert result["paper_table1_min_per_1000"] == {"64": 0.22, "128": 0.43}
    assert [k["D"] for k in result["kernels"]] == [16, 64] and all(k["kept"] > 0 for k in result["kernels"])
    runs = result["training"]
    assert [(r["D"], r["amp"]) for r in runs] == [(16, False), (16, True)]
    assert all(r["steps"] == 4 and r["particles_per_s"] > 0 and r["min_per_1000_particles_per_epoch"] > 0 for r in runs)
