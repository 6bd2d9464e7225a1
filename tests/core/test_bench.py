"""The benchmark script runs end to end on a tiny dataset and writes the numbers it promises (not their values:
speed is measured by `nox -s bench`, not asserted in tests)."""

import json

from _bench_module import load_bench


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
    stages = run["profile"]["stages_ms_per_step"]
    assert {"decoder", "backward", "lattice_mask", "encoder"} <= set(stages)
    assert stages["decoder"] >= stages["featurize"] > 0  # inclusive ranges: featurisation is inside the decoder
