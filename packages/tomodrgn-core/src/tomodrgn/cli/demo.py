"""``tomodrgn demo``: the whole pipeline on the embedded simulated 4-class dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> None:
    from tomodrgn import api

    res = api.run_demo(
        args.outdir,
        preset=args.preset,
        n_particles=args.n_particles,
        box_size=args.D,
        epochs=args.epochs,
        snr=args.snr,
        seed=args.seed,
    )
    print(res.summary())


def register(sub: argparse._SubParsersAction) -> None:
    from tomodrgn import api

    DEMO_DEFAULTS = api.DEMO_DEFAULTS
    p = sub.add_parser("demo", help="simulate the 4-class dataset, train, analyse and compare with ground truth")
    p.add_argument("--outdir", type=Path, default=Path("demo_output"))
    p.add_argument("--preset", default="4-class", choices=["4-class", "continuous", "homogeneous"])
    p.add_argument("--n-particles", type=int, default=DEMO_DEFAULTS["n_particles"])
    p.add_argument("-D", type=int, default=DEMO_DEFAULTS["box_size"])
    p.add_argument("--epochs", type=int, default=DEMO_DEFAULTS["epochs"])
    p.add_argument("--snr", type=float, default=DEMO_DEFAULTS["snr"], help="SNR of the 0° image (harder: lower)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
