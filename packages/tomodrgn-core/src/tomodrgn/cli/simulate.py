"""``tomodrgn simulate``: a ground-truth tilt-series particle dataset."""

from __future__ import annotations

import argparse

from tomodrgn.cli._options import add_box_size, add_outdir


def cmd_simulate(args: argparse.Namespace) -> None:
    from tomodrgn import api

    sim = api.simulate(
        args.outdir,
        preset=args.preset,
        n_particles=args.n_particles,
        box_size=args.box_size,
        pixel_size=args.pixel_size,
        n_tilts=args.n_tilts,
        max_tilt=args.max_tilt,
        tilt_step=args.tilt_step,
        phase_shift=args.phase_shift,
        dose_per_tilt=args.dose_per_tilt,
        snr=args.snr,
        drop_tilts=args.drop_tilts,
        shift_std=args.shift_std,
        seed=args.seed,
        format=args.format,
        float16=args.float16,
        overwrite=args.overwrite,
        pose_error_deg=args.pose_error_deg,
        pose_error_px=args.pose_error_px,
        tilt_shift_error_px=args.tilt_shift_error_px,
    )
    print(f"wrote {sim.star_path} ({len(sim.particle_names)} particles, D={sim.box_size}, {sim.pixel_size:.3f} Å/px)")
    print(f"ground truth: {', '.join(str(p) for p in sim.volume_paths)}; labels {sim.labels_path}")
    if args.tomogram:
        for name in sim.tomogram_names:
            print(f"tomogram: {api.simulate_tomogram(sim, name)}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="make a ground-truth tilt-series particle dataset")
    add_outdir(p, "output folder (must be new or empty); required", positional_alias=True)
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument(
        "--preset",
        default="4-class",
        choices=["homogeneous", "2-class", "4-class", "continuous"],
        help="the structures: one map, 2 or 4 discrete classes, or a continuous motion",
    )
    p.add_argument("--n-particles", type=int, default=1000, help="number of particles")
    add_box_size(p, "box size (px)", default=32)
    p.add_argument("--pixel-size", type=float, default=None, help="Å/px (default: a 419.2 Å box)")
    p.add_argument("--n-tilts", type=int, default=41, help="tilt images per particle")
    p.add_argument("--max-tilt", type=float, default=60.0, help="largest tilt of the dose-symmetric scheme (°)")
    p.add_argument("--tilt-step", type=float, default=3.0, help="tilt increment (°)")
    p.add_argument("--phase-shift", type=float, default=0.0, help="CTF phase shift (°; 90 for a phase plate)")
    p.add_argument("--dose-per-tilt", type=float, default=3.0, help="e⁻/Å² per tilt")
    p.add_argument("--snr", type=float, default=0.05, help="SNR of the 0° image (signal / noise variance)")
    p.add_argument("--drop-tilts", type=int, default=0, help="each particle loses up to this many tilts")
    p.add_argument(
        "--shift-std", type=float, default=None, help="rms in-plane origin per axis, Å (default: 1.5 px; 0: none)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (structures, poses, noise)")
    p.add_argument(
        "--format",
        default="warp",
        choices=["warp", "relion5"],
        help="warp: Warp/M image-series particles.star; relion5: also a RELION 5 / WarpTools 2-D stack set "
        "(optimisation_set.star) of the same images, with geometry a tomogram can express",
    )
    p.add_argument(
        "--float16",
        action="store_true",
        help="write particle stacks as float16 (MRC mode 12, as RELION's --float16): half the disk",
    )
    _add_pose_errors(p)
    p.add_argument("--tomogram", action="store_true", help="also write small tomograms with the particles pasted")
    p.set_defaults(func=cmd_simulate)


def _add_pose_errors(p: argparse.ArgumentParser) -> None:
    """The upstream pose errors written to the STARs (the images keep the true poses; truth.npz has both)."""
    g = p.add_argument_group(
        "pose errors",
        "the images are made with the true poses, the STARs carry perturbed ones (as after subtomogram averaging); "
        "truth.npz keeps both",
    )
    g.add_argument(
        "--pose-error-deg",
        type=float,
        default=0.0,
        help="rms angle (°) of one random rotation error per particle, about a uniformly random axis (median ≈ "
        "0.89 × this; default 0: none)",
    )
    g.add_argument(
        "--pose-error-px",
        type=float,
        default=0.0,
        help="rms 3-D origin error per particle, px per axis (projected into every tilt's 2-D origin; default 0: none)",
    )
    g.add_argument(
        "--tilt-shift-error-px",
        type=float,
        default=0.0,
        help="rms 2-D shift error per tilt image, px per axis (Warp/M particles.star only: a RELION 5 set has no "
        "per-image shift; default 0: none)",
    )
