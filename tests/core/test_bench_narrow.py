"""The narrow-tilt benchmark runs end to end on a tiny version of its regime and writes ARI and seconds per epoch
(their values are measured by the slow validation test and `benchmarks/bench_narrow_tilt.py`, not asserted here)."""

import json

import numpy as np
from _bench_module import load_bench


def test_bench_narrow_writes_ari_by_epoch(tmp_path):
    bench = load_bench("bench_narrow_tilt")
    out = tmp_path / "narrow.json"
    args = ["--workdir", str(tmp_path), "--out", str(out), "-D", "16", "--n-particles", "12", "--epochs", "2"]
    bench.main([*args, "--cases", "default", "per-tilt"])
    result = json.loads(out.read_text())
    assert result["regime"]["max_tilt"] == 15.0 and result["regime"]["phase_shift"] == 90.0
    truth = np.load(tmp_path / "data" / "truth.npz")
    assert np.abs(truth["tilt_scheme"]).max() <= 15.0 and set(truth["n_tilts"]) <= {8, 9, 10}
    assert np.bincount(truth["label"]).tolist() == [6, 6]
    for name in ("default", "per-tilt"):
        run = result["runs"][name]
        assert len(run["ari"]) == len(run["seconds"]) == 2
        assert all(-1.0 <= a <= 1.0 for a in run["ari"]) and 0 < run["seconds"][0] < run["seconds"][1]
