"""A small Markdown report linking an analysis's files (relative links, so the folder can be moved)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

Section = tuple[str, Sequence[str]]


def rel(path: str | Path, base: str | Path) -> str:
    """``path`` relative to folder ``base`` with forward slashes (for Markdown links)."""
    return Path(os.path.relpath(Path(path), Path(base))).as_posix()


def image(path: str | Path, base: str | Path, caption: str = "") -> str:
    """Markdown image line for a PNG."""
    return f"![{caption}]({rel(path, base)})"


def link(path: str | Path, base: str | Path, text: str | None = None) -> str:
    """Markdown link line to a file."""
    return f"[{text or Path(path).name}]({rel(path, base)})"


def table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".3g") -> list[str]:
    """Markdown table lines from dicts (columns default: keys of the first row)."""
    if not rows:
        return []
    columns = list(columns or rows[0].keys())

    def fmt(v) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return out


def write_report(path: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Write ``# title`` then one ``## heading`` per section with its lines (blank line between lines that are
    not table rows)."""
    path = Path(path)
    parts = [f"# {title}", ""]
    for heading, lines in sections:
        parts += [f"## {heading}", ""]
        prev_table = False
        for line in lines:
            is_table = line.startswith("|")
            if parts[-1] != "" and not (is_table and prev_table):
                parts.append("")
            parts.append(line)
            prev_table = is_table
        parts.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts).rstrip() + "\n")
    return path
