"""Architecture rules (docs/architecture.md, "Layout"): no Qt/napari in the core; the plugin reaches the core only via
tomodrgn.api."""

import ast
import re
import subprocess
import sys
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


def test_cli_uses_only_the_public_api():
    """The command line is a thin layer: its modules reach the core only through tomodrgn.api (and the package's
    version), like the plugin."""
    files = sorted((CORE / "cli").glob("*.py"))
    assert len(files) > 10
    used = [(f, m) for f in files for m in imported_modules(f) if m.split(".")[0] == "tomodrgn"]
    offenders = [
        f"{f.name}: {m}" for f, m in used if m not in ("tomodrgn", "tomodrgn.api") and not m.startswith("tomodrgn.cli")
    ]
    assert offenders == []


def test_public_api_is_cheap_grouped_and_resolves():
    """``import tomodrgn.api`` loads no torch (the CLI parses and checks its options first); every public name
    resolves, belongs to one group, and internal helpers are not part of it."""
    code = (
        "import sys, tomodrgn.api as api; t = 'torch' in sys.modules; "
        "[getattr(api, n) for n in api.__all__]; print(t, len(api.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and int(out[1]) > 50
    import tomodrgn.api as api

    names = [n for group in api.GROUPS.values() for n in group]
    assert len(names) == len(set(names)) == len(api.__all__) and api.__all__ == sorted(names)
    for internal in ("prepare_output_dir", "prepare_run_dir", "read_particles_checked", "apply_run_selection"):
        assert internal not in api.__all__ and not hasattr(api, internal)


RUN_FILE_NAME = re.compile(
    r"(config\.json|train\.log|weights(\.\d+)?\.pt|z(\.\d+)?(\.logvar)?\.npy|heldout\.\d+\.csv|analyze\.\d+)"
)
RUN_FILE_PREFIX = re.compile(r"(z|weights|heldout|analyze|reference_check)\.")


def run_folder_names(path: Path) -> list[str]:
    """String constants (not docstrings) that spell a run-folder file name: a whole name ("z.npy"), or an f-string
    that builds one (f"z.{epoch}.npy")."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if RUN_FILE_NAME.fullmatch(node.value):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and RUN_FILE_PREFIX.fullmatch(str(first.value)):
                found.append(f"{path.name}:{node.lineno}: f-string {first.value!r}…")
    return found


def test_run_folder_names_are_spelled_in_one_module():
    """config.json, train.log, weights.N.pt, z.N.npy, heldout.N.csv, analyze.N: only runs/folder.py spells
    them; everything else (core and plugin) asks :class:`tomodrgn.runs.folder.RunFolder`."""
    files = [f for f in sorted([*CORE.rglob("*.py"), *PLUGIN.glob("*.py")]) if f != CORE / "runs" / "folder.py"]
    offenders = [hit for f in files for hit in run_folder_names(f)]
    assert offenders == []


def test_no_function_over_80_lines():
    """The hardest logic stays in functions one can read whole: none in the core or the plugin over 80 lines."""
    long = []
    for f in sorted([*CORE.rglob("*.py"), *PLUGIN.glob("*.py")]):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def core_modules() -> dict[str, Path]:
    """Every module of the core by its dotted name (``tomodrgn.runs.folder``; a package by its ``__init__.py``)."""
    out = {}
    for f in CORE.rglob("*.py"):
        parts = list(f.relative_to(CORE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def core_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The core modules ``path`` imports, at any depth (function-level imports too), ``if TYPE_CHECKING:`` blocks
    excepted; ``from tomodrgn.runs import checkpoint`` counts as ``tomodrgn.runs.checkpoint``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    found.add(sub if sub in modules else child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while component[-1:] != [v]:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return cycles


#: What each room may import (besides itself, the package's top module and tomodrgn.lazy): the process below the
#: runs, the runs below the loop. The rooms below import no run and no loop (the process, which needs only io, they
#: may use).
ROOMS_MAY_IMPORT = {
    "runtime": {"io"},
    "runs": {"io", "physics", "kernels", "models", "data", "runtime"},
    "training": {"io", "physics", "kernels", "models", "data", "reconstruct", "runtime", "runs"},
}
BELOW_THE_ROOMS = ("io", "physics", "kernels", "models", "data", "simulate", "reconstruct")


def test_no_import_circle_and_rooms_import_downwards():
    """No module of the core imports itself back through others (function-level imports count), and the rooms of a
    run (runtime → runs → training, docs/architecture.md) import only downwards."""
    modules = core_modules()
    graph = {m: core_imports(f, modules) for m, f in modules.items()}
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300
    assert import_cycles(graph) == []
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check works

    def room(module: str) -> str:
        return module.split(".")[1] if "." in module else ""

    wrong = []
    for m, deps in sorted(graph.items()):
        for d in sorted(deps):
            if room(d) in ("", "lazy", room(m)):  # the package's top module and its lazy-name helper: any room
                continue
            if room(m) in ROOMS_MAY_IMPORT and room(d) not in ROOMS_MAY_IMPORT[room(m)]:
                wrong.append(f"{m} → {d}")
            if room(m) in BELOW_THE_ROOMS and room(d) in ("runs", "training"):
                wrong.append(f"{m} → {d}")
    assert wrong == []
    assert {room(m) for m in graph} >= set(ROOMS_MAY_IMPORT)
