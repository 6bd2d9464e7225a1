"""``tomodrgn backproject``: weighted back-projection of the tilt images, the first check of a new dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import (
    DATADIR_HELP,
    PIXEL_SIZE_HELP,
    add_hand_options,
    add_reference_options,
    add_tomograms_star,
)
from tomodrgn.cli._progress import progress_bar


def cmd_backproject(args: argparse.Namespace) -> None:
    from tomodrgn import api

    with progress_bar("back-projecting", "img") as progress:
        res = api.backproject(
            args.star,
            args.outdir,
            invert=args.invert,
            ctf=args.ctf,
            wiener_constant=args.wiener_constant,
            dose_weight=args.dose_weight,
            tilt_weight=args.tilt_weight,
            lowpass=args.lowpass,
            first=args.first,
            indices=args.ind,
            insertion=args.insertion,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            overwrite=args.overwrite,
            pixel_size=args.pixel_size,
            datadir=args.datadir,
            progress=progress,
            tomograms_star=args.tomograms_star,
            flip_hand=args.flip_hand,
            reference=args.reference,
            reference_pixel_size=args.reference_pixel_size,
            name=args.map_name,
        )
    print(
        f"back-projected {res.n_images} images of {res.n_particles} particles (D={res.box_size}, "
        f"{res.pixel_size:.3f} Å/px)"
    )
    print(f"half-map FSC: {res.resolution_05:.1f} Å at 0.5, {res.resolution_0143:.1f} Å at 0.143")
    print(f"density: {res.density_sign} (centre vs edge contrast {res.density_contrast:+.2f} std)")
    if res.suggestion:
        print(f"suggestion: {res.suggestion}")
    if res.reference_check is not None:
        print("\n".join(res.reference_check.lines()))
    for path in res.paths:
        print(f"wrote {path}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backproject",
        aliases=["backproject_voxel"],
        help="weighted back-projection of the tilt images into a map: check poses, CTF, hand and contrast",
    )
    p.add_argument("star", type=Path, help="particle STAR file (one row per tilt image)")
    p.add_argument("-o", "--outdir", type=Path, help="output folder (must be new or empty); required")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--invert", action="store_true", help="invert image contrast (particles dark on light)")
    add_hand_options(p)
    add_reference_options(p)
    p.add_argument(
        "--ctf",
        default="phase-flip",
        choices=["phase-flip", "wiener", "none"],
        help="CTF correction; none: the images are taken as free of any CTF and the STAR's CTF columns are not read"
        " (a STAR without CTF columns is taken so anyway, with a warning)",
    )
    p.add_argument(
        "--wiener-constant", type=float, default=1.0, help="Wiener constant (units of one image's CTF² weight)"
    )
    p.add_argument("--dose-weight", action="store_true", help="weight by the exposure filter exp(-N/2Ne)")
    p.add_argument("--tilt-weight", action="store_true", help="weight images by cos(tilt)")
    p.add_argument(
        "--lowpass", type=float, default=None, help="resolution (Å) of the filtered map (default: FSC 0.143)"
    )
    p.add_argument("--first", type=int, default=None, help="back-project the first N particles (of --ind if given)")
    p.add_argument(
        "--ind", type=Path, default=None, help="particle indices (0-based) to back-project: text, .npy or .pkl"
    )
    p.add_argument("--insertion", default="trilinear", choices=["trilinear", "nearest"], help="Fourier insertion")
    p.add_argument("--seed", type=int, default=0, help="seed of the random half-set split")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (bounds the memory used)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--pixel-size", type=float, default=None, help=PIXEL_SIZE_HELP)
    p.add_argument("--datadir", type=Path, default=None, help=DATADIR_HELP)
    add_tomograms_star(p)
    p.set_defaults(func=cmd_backproject, map_name="backproject")
