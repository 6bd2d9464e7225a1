"""``tomodrgn demo``: the whole pipeline on the embedded simulated 4-class dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_box_size, add_outdir


def cmd_demo(args: argparse.Namespace) -> None:
    from tomodrgn import api

    res = api.run_demo(
        args.outdir,
        preset=args.preset,
        n_particles=args.n_particles,
        box_size=args.box_size,
        epochs=args.epochs,
        snr=args.snr,
        seed=args.seed,
    )
    print(res.summary())


def register(sub: argparse._SubParsersAction) -> None:
    from tomodrgn import api

    DEMO_DEFAULTS = api.DEMO_DEFAULTS
    p = sub.add_parser("demo", help="simulate the 4-class dataset, train, analyse and compare with ground truth")
    add_outdir(p, "output folder: the data, the run, its analysis and the ground-truth comparison",
               default=Path("demo_output"))  # fmt: skip
    p.add_argument("--preset", default="4-class", choices=["4-class", "continuous", "homogeneous"],
                   help="the simulated structures: 4 discrete classes, a continuous motion, or one map")  # fmt: skip
    p.add_argument("--n-particles", type=int, default=DEMO_DEFAULTS["n_particles"], help="number of particles")
    add_box_size(p, "box size (px)", default=DEMO_DEFAULTS["box_size"])
    p.add_argument(
        "--epochs",
        type=int,
        default=DEMO_DEFAULTS["epochs"],
        help=f"training epochs ({api.EPOCH_COUNTING.split(':')[0]})",
    )
    p.add_argument("--snr", type=float, default=DEMO_DEFAULTS["snr"], help="SNR of the 0° image (harder: lower)")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and training)")
    p.set_defaults(func=cmd_demo)
