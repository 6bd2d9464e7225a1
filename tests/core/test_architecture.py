"""Architecture rules (docs/architecture.md, "Layout"): no Qt/napari in the core; the plugin reaches the core only via
tomodrgn.api."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "packages" / "tomodrgn-core" / "src" / "tomodrgn"
PLUGIN = ROOT / "packages" / "napari-tomodrgn" / "src" / "napari_tomodrgn"
GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy")


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_core_never_imports_gui_toolkits():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 30
    offenders = [f"{f.relative_to(ROOT)}: {m}" for f in files for m in imported_modules(f) if m.split(".")[0] in GUI]
    assert offenders == []


def test_plugin_uses_only_the_public_api():
    files = sorted(PLUGIN.glob("*.py"))
    assert files
    used = [(f, m) for f in files for m in imported_modules(f) if m.split(".")[0] == "tomodrgn"]
    assert used, "the plugin should call the core"
    offenders = [f"{f.name}: {m}" for f, m in used if m not in ("tomodrgn", "tomodrgn.api")]
    assert offenders == []
