"""Regenerate docs/cli.md from the argparse definitions: `python docs/gen_cli_reference.py`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tomodrgn.cli import build_parser

OUT = Path(__file__).with_name("cli.md")


def render() -> str:
    os.environ["COLUMNS"] = "110"  # stable wrapping
    parser = build_parser()
    parts = [
        "# Command-line reference",
        "",
        "Generated from the parser by `python docs/gen_cli_reference.py`; a test keeps it in sync.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        parts += ["", f"## tomodrgn {name}", "", "```text", p.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
