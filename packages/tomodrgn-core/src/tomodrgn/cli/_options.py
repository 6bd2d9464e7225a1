"""Options shared by several commands (one definition each)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.api import EPOCH_COUNTING  # how epochs are counted: files, train.log, screen and every --epoch


class HelpFormatter(argparse.HelpFormatter):
    """The one help formatter of every command: each option's default shown once, ``(default: X)``, unless its help
    says what the default is already (``default …``); a switch with a ``--no-`` form names the form that is the
    default; options off unless given (``store_true``) and those without a default show none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        switch = isinstance(action, argparse.BooleanOptionalAction)
        no_default = default is None or (default is False and not switch) or default is argparse.SUPPRESS
        if no_default or default == [] or "default" in text.lower() or not action.option_strings:
            return text
        if switch:
            on, off = action.option_strings[0], next(s for s in action.option_strings if s.startswith("--no-"))
            return f"{text} (default: {on if action.default else off})"
        return f"{text} (default: %(default)s)"


#: ``--pixel-size`` and ``--datadir``: one wording in every command that reads stacks
PIXEL_SIZE_HELP = (
    "pixel size of the stacks in Å; overrides both the STAR's and the MRC headers' values (default: the STAR's, else"
    " the MRC header's)"
)
DATADIR_HELP = (
    "folder of the image stacks, where the STAR's image paths are relative to another folder (default: the STAR's"
    " folder)"
)


def add_epoch_option(p: argparse.ArgumentParser, what: str = "the checkpoint to use") -> None:
    """``--epoch``: a checkpoint of a run (0-based, as its files; ``latest``: the last)."""
    p.add_argument("--epoch", type=epoch_number, default=None,
                   help=f"{what}: epoch E of the run, weights.E.pt (default or 'latest': the last; "
                   f"{EPOCH_COUNTING.split(':')[0]})")  # fmt: skip


def epoch_number(text: str) -> int | None:
    """``--epoch``: a 0-based epoch, or ``latest`` (None) as tomoDRGN spells the default."""
    if text == "latest":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an epoch number or latest, not {text!r}") from None


def add_tomograms_star(p: argparse.ArgumentParser) -> None:
    """``--tomograms-star``: the tomograms STAR of a 2-D stack set read from its particles STAR."""
    p.add_argument(
        "--tomograms-star",
        type=Path,
        default=None,
        help="tomograms STAR of a RELION 5 / WarpTools 2-D stack set given by its particles STAR (not needed with "
        "the optimisation set)",
    )


def add_hand_options(p: argparse.ArgumentParser) -> None:
    """``--flip-hand``: write maps mirrored."""
    p.add_argument(
        "--flip-hand",
        action="store_true",
        help="write maps mirrored (z -> -z about the box centre), for pipelines whose hand differs; --reference of"
        " backproject / train_nn / train_vae tells whether you need it",
    )


def add_reference_options(p: argparse.ArgumentParser) -> None:
    """``--reference`` / ``--reference-pixel-size``: the hand and contrast check against the user's map."""
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a map you trust (e.g. the subtomogram average of these particles): report CC / FSC with it as is, "
        "mirrored, inverted and both, and the flags that give the best match",
    )
    p.add_argument(
        "--reference-pixel-size", type=float, default=None, help="pixel size (Å) of --reference (default: header)"
    )


def add_device_option(p: argparse.ArgumentParser, default: str = "cpu", what: str = "decode volumes on") -> None:
    """``--device``: where the command computes (resolved before any folder is made, in :func:`tomodrgn.cli.main`)."""
    p.add_argument("--device", default=default, help=f"{what}: auto, cpu, cuda[:i] or mps")


def add_outdir(p: argparse.ArgumentParser, help: str, *, positional_alias: bool = False, **kwargs) -> None:
    """``-o/--outdir``: the output folder of every command. ``positional_alias``: the folder may also be given as the
    command's (hidden) first positional argument, as earlier versions took it (:func:`take_positional_outdir`)."""
    p.add_argument("-o", "--outdir", type=Path, help=help, **kwargs)
    if positional_alias:
        p.add_argument("positional_outdir", type=Path, nargs="?", default=None, help=argparse.SUPPRESS)


def add_analysis_outdir(p: argparse.ArgumentParser, default: str) -> None:
    """``-o/--outdir`` (default ``default``, a folder in the run) and ``--overwrite`` of the analysis commands: a used
    folder needs ``--overwrite``, which removes what the command wrote there first."""
    add_outdir(p, f"output folder (default {default})", default=None)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier output in the folder (-o or the default): what this command wrote there is removed"
        " first",
    )


def take_positional_outdir(args: argparse.Namespace) -> str | None:
    """The output folder given the old way (positional) becomes ``args.outdir``; returns a usage error when the
    folder is missing or given both ways."""
    if not hasattr(args, "positional_outdir"):
        return None
    positional, args.positional_outdir = args.positional_outdir, None
    if positional is not None and args.outdir is not None:
        return f"the output folder is given twice ({positional} and -o {args.outdir}): give -o only"
    args.outdir = args.outdir if positional is None else positional
    return "the following arguments are required: -o/--outdir" if args.outdir is None else None


def add_box_size(p: argparse.ArgumentParser, help: str, **kwargs) -> None:
    """``-D/--box-size``: a box size in pixels, in every command that takes one."""
    p.add_argument("-D", "--box-size", type=int, dest="box_size", help=help, **kwargs)
