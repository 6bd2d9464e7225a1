"""Subprocess helper for tests/core/test_kernels.py (Triton must see its environment before it is imported).

``python _triton_interpret_check.py interpret``: needs ``TRITON_INTERPRET=1``; runs the Triton lattice-mask kernels in
the CPU interpreter on tiny cases and compares them with the torch reference. Prints ``OK interpret cases=… K=…``.

``python _triton_interpret_check.py aot``: needs TRITON_INTERPRET unset; compiles both kernels ahead of time for
sm_90 (no GPU needed) and checks the PTX and cubin. Prints ``OK aot …``.

Exits nonzero (AssertionError) on any mismatch.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch


def _case(D: int, pixel_size: float, n: int, n_feat: int | None, dose_dtype: torch.dtype, seed: int):
    from tomodrgn.kernels import half_lattice
    from tomodrgn.physics.pose import random_rotations

    rng = np.random.default_rng(seed)
    lattice = half_lattice(D, pixel_size)
    rotations = torch.from_numpy(random_rotations(n, rng)).to(torch.float32)
    per_tilt = 12.0
    order = rng.permutation(n)  # acquisition order differs from image order
    cumulative = torch.tensor((order + 1) * per_tilt, dtype=dose_dtype)
    mid = cumulative - per_tilt / 2
    tilt_weight = torch.from_numpy(np.cos(np.deg2rad(rng.uniform(-60, 60, n)))).to(torch.float32)
    feat = None if n_feat is None else torch.from_numpy(rng.normal(0, 0.5 * D, (3, n_feat))).to(torch.float32)
    return lattice, rotations, cumulative, mid, tilt_weight, feat


def _compare(ref, out, label: str) -> None:
    assert torch.equal(ref.image, out.image), f"{label}: image differs"
    assert torch.equal(ref.point, out.point), f"{label}: point differs"
    assert out.weight.dtype == ref.weight.dtype and out.coords.dtype == ref.coords.dtype, label
    torch.testing.assert_close(out.weight, ref.weight, rtol=1e-5, atol=1e-6, msg=f"{label}: weight")
    torch.testing.assert_close(out.coords, ref.coords, rtol=1e-5, atol=1e-6, msg=f"{label}: coords")
    if ref.features is None:
        assert out.features is None, label
    else:
        assert out.features is not None and out.features.shape == ref.features.shape, label
        torch.testing.assert_close(out.features, ref.features, rtol=1e-4, atol=1e-4, msg=f"{label}: features")


def run_interpret() -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    from tomodrgn.kernels import lattice_mask_triton as ltr
    from tomodrgn.kernels import masked_lattice
    from tomodrgn.kernels.lattice_mask_torch import masked_lattice_torch

    assert ltr.interpreter_active()
    cases = [
        # D, pixel (Å), images, F, dose dtype, BLOCK_P
        (16, 2.0, 5, 3, torch.float32, 256),
        (16, 2.0, 6, None, torch.float64, 32),  # several point blocks: offsets across blocks
        (12, 2.5, 4, 20, torch.float32, 64),  # F > MAX_BLOCK_F: the feature loop runs twice
        (16, 2.0, 3, 2, torch.float32, 16),
    ]
    total = 0
    partial_images = 0
    for i, (D, pix, n, F, dt, block) in enumerate(cases):
        ltr.BLOCK_P = block
        args = _case(D, pix, n, F, dt, seed=i)
        ref = masked_lattice_torch(*args)
        out = ltr.masked_lattice_triton(*args)
        _compare(ref, out, f"case {i} (D={D}, N={n}, F={F}, BLOCK_P={block})")
        counts = torch.bincount(ref.image, minlength=n)
        partial_images += int(((counts > 0) & (counts < args[0].n_points)).sum())
        total += ref.image.numel()
    assert partial_images >= 4, "test cases should mask some but not all points of several images"

    # every point dropped (K = 0) and every point kept
    ltr.BLOCK_P = 256
    lattice, rot, cum, mid, tw, feat = _case(16, 2.0, 3, 4, torch.float32, seed=9)
    for label, m in (("all dropped", torch.full_like(mid, 1e9)), ("all kept", torch.zeros_like(mid))):
        ref = masked_lattice_torch(lattice, rot, cum, m, tw, feat)
        out = ltr.masked_lattice_triton(lattice, rot, cum, m, tw, feat)
        _compare(ref, out, label)
    assert out.image.numel() == 3 * lattice.n_points

    # the dispatcher runs the interpreter when asked for triton on CPU
    args = _case(16, 2.0, 4, 3, torch.float32, seed=11)
    _compare(masked_lattice_torch(*args), masked_lattice(*args, backend="triton"), "dispatch triton")
    print(f"OK interpret cases={len(cases) + 3} K={total}")


def _signature(kernel, types: dict[str, str], constexprs: dict[str, object]) -> dict[str, str]:
    sig = {}
    for name in kernel.arg_names:
        sig[name] = "constexpr" if name in constexprs else types[name]
    return sig


def run_aot() -> None:
    assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without TRITON_INTERPRET"
    import triton
    from triton.backends.compiler import GPUTarget

    from tomodrgn.kernels import lattice_mask_triton as ltr

    assert not ltr.interpreter_active()
    target = GPUTarget("cuda", 90, 32)
    types = {
        "mid_dose_ptr": "*fp32",
        "cum_dose_ptr": "*fp32",
        "tilt_weight_ptr": "*fp32",
        "rot_ptr": "*fp32",
        "opt_exp_ptr": "*fp32",
        "crit_exp_ptr": "*fp32",
        "lat_coords_ptr": "*fp32",
        "offsets_ptr": "*i64",
        "feat_mat_ptr": "*fp32",
        "counts_ptr": "*i32",
        "out_image_ptr": "*i64",
        "out_point_ptr": "*i64",
        "out_weight_ptr": "*fp32",
        "out_coords_ptr": "*fp32",
        "out_feat_ptr": "*fp32",
        "P": "i32",
        "F": "i32",
        "n_blocks": "i32",
    }
    builds = [  # kernel, constexprs, num_warps as launched by masked_lattice_triton
        (ltr._count_kept_kernel, {"BLOCK_P": ltr.BLOCK_P}, 4),
        (ltr._masked_lattice_kernel, {"BLOCK_P": ltr.BLOCK_P, "BLOCK_F": ltr.MAX_BLOCK_F, "FEATURES": True}, 8),
        (ltr._masked_lattice_kernel, {"BLOCK_P": ltr.BLOCK_P, "BLOCK_F": 1, "FEATURES": False}, 8),
    ]
    names = []
    for kernel, constexprs, num_warps in builds:
        sig = _signature(kernel, types, constexprs)
        src = triton.compiler.ASTSource(fn=kernel, signature=sig, constexprs=constexprs)
        compiled = triton.compile(src, target=target, options={"num_warps": num_warps})
        asm = compiled.asm
        for stage in ("ttir", "ttgir", "llir", "ptx"):
            assert stage in asm, f"{kernel.__name__}: no {stage}"
        assert f'ttg.num-warps" = {num_warps}' in asm["ttgir"], f"{kernel.__name__}: TTGIR lacks num-warps"
        ptx = asm["ptx"]
        assert ".target sm_90" in ptx and f".entry {kernel.__name__}" in ptx, f"{kernel.__name__}: bad PTX"
        if kernel is ltr._masked_lattice_kernel and constexprs["FEATURES"]:
            assert "sin" in asm["llir"] or "sin.approx" in ptx, "featurisation missing from the compiled kernel"
        cubin = asm.get("cubin")
        assert isinstance(cubin, bytes) and cubin[:4] == b"\x7fELF", f"{kernel.__name__}: no cubin (ptxas missing?)"
        names.append(f"{kernel.__name__}[{len(ptx)}B ptx, {len(cubin)}B cubin]")
    print("OK aot sm_90 " + " ".join(names))


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "interpret"
    {"interpret": run_interpret, "aot": run_aot}[mode]()
