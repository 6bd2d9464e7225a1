"""The ``tomodrgn`` command line: argument parsing only; every command calls :mod:`tomodrgn.api`.

One module per command family registers its sub-commands (``register(sub)``); handlers import the API lazily, so
``--help`` and argument errors answer without loading torch. A user error (bad input, missing file, no space, no
permission) prints one line naming the culprit and exits with status 2; ``--debug`` shows the traceback. A warning
is one line, ``warning: <message>``, each kind once (:func:`tomodrgn.io.user_warnings.warnings_to`).
The training commands start themselves once more with glibc's huge pages for their large buffers
(:mod:`tomodrgn.runtime.huge_pages`; ``TOMODRGN_HUGE_PAGES=0`` turns it off), and every command fixes glibc's mmap
threshold so that freed large buffers leave the resident set (:mod:`tomodrgn.runtime.mmap_threshold`).
The published tomoDRGN's command lines run too: each command's "tomoDRGN-compatible options" group
(:mod:`tomodrgn.cli.tomodrgn_compat`, docs/coming-from-tomodrgn.md).
Run ``tomodrgn COMMAND --help``. Under ``torchrun``: ``torchrun --nproc_per_node N -m tomodrgn.cli train_vae ...``.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from tomodrgn import __version__, api
from tomodrgn.cli import (
    analyze,
    backproject,
    chimerax,
    convergence,
    demo,
    downsample,
    evaluate,
    movie,
    poses,
    run_admin,
    simulate,
    star,
    train,
    traversal,
    volumes,
)
from tomodrgn.cli import tomodrgn_compat as compat
from tomodrgn.cli._options import HelpFormatter, take_positional_outdir

# command families, in the order ``tomodrgn --help`` lists them
COMMAND_MODULES = (
    simulate,
    backproject,
    downsample,
    train,
    evaluate,
    analyze,
    convergence,
    volumes,
    traversal,
    movie,
    chimerax,
    star,
    poses,
    run_admin,
    demo,
)


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument error (bad value, missing or unknown argument) is one line naming the culprit, exit 2, instead of
    argparse's usage block followed by the message. Sub-command parsers are made of the same class. Options are taken
    only as spelled (no abbreviations: ``--epoch`` is not ``--epochs``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The sub-command parser of ``command`` (its own ``--help``)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="tomodrgn",
        description="tomoDRGN: heterogeneity from sub-tomogram tilt series",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tomodrgn {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (accepted anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    seen = set()
    for name, command in sub.choices.items():  # the published tomoDRGN's spellings (a command's aliases: once)
        if id(command) not in seen:
            seen.add(id(command))
            compat.add_group(command, name)
            command.formatter_class = HelpFormatter  # one formatter: every default shown once
    return parser


def _print_warning(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    args, unknown = parser.parse_known_args([a for a in argv if a != "--debug"])
    if unknown:  # named by the command's own parser, which lists what it takes
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with api.warnings_to(_print_warning):
            if getattr(args, "device", None) is not None:  # an unusable device: one line, before any folder is made
                api.resolve_device(args.device)
            compat.translate(args, _print_warning)  # its note: lines go where warnings go
            problem = take_positional_outdir(args)  # the output folder spelled as earlier versions took it
            if problem is not None:
                _command_parser(parser, args.command).error(problem)
            args.func(args)
    except compat.CompatUsageError as e:
        prog = f"tomodrgn {args.command}"
        print(f"{prog}: error: {e} (see {prog} --help)", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"tomodrgn {args.command}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        message = None if debug else api.user_error_message(e)
        if message is None:
            raise
        print(f"tomodrgn {args.command}: error: {message}", file=sys.stderr)
        sys.exit(2)


#: the commands whose steps gain from huge pages (docs/benchmarks.md): training, and the demo that trains
HUGE_PAGE_COMMANDS = ("train_vae", "train_nn", "demo")


def entry() -> None:
    """The ``tomodrgn`` command and ``python -m tomodrgn.cli``: the training commands restart once so that glibc gives
    large buffers huge pages (:func:`tomodrgn.api.restart_with_huge_pages`; glibc reads its tunables only at start);
    glibc's mmap threshold fixed; then :func:`main`."""
    if sys.argv[1:2] and sys.argv[1] in HUGE_PAGE_COMMANDS and not {"-h", "--help"} & set(sys.argv):
        api.restart_with_huge_pages(["-m", "tomodrgn.cli", *sys.argv[1:]])
    api.fix_mmap_threshold()
    main()
