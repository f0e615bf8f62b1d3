"""The package's layer rule, read from the code: a module imports only from its own layer or below.

The layers are the package's folders (README, "Layout"), lowest first in ``ORDER``; the package
root is the top layer, the pytest glue. Every ``import`` counts, late ones and type-only ones too:
a late import may keep a PRP-free run cheap, but must not hide a cycle or an upward reach.

There is no exception list: the last upward imports and cycles were paid in issue 13.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_prp"

# The folders, lowest layer first; "" is the package root (the pytest plugin and its glue).
ORDER = ("base", "spec", "plan", "supervise", "workspace", "records", "execute", "")


def module_paths() -> dict[str, Path]:
    """Every module of the package by its name (names are unique across folders)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent != PACKAGE:
            continue  # a layer's __init__ holds its docstring only
        assert path.stem not in found, f"two modules named {path.stem}: {found[path.stem]}, {path}"
        found[path.stem] = path
    return found


def layer_of(path: Path) -> str:
    return path.parent.relative_to(PACKAGE).as_posix().replace(".", "")


RANK = {name: ORDER.index(layer_of(path)) for name, path in module_paths().items()}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, wherever in the file the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: use absolute imports (pytest_prp.<layer>.<module>)")
            parts = (node.module or "").split(".")
            if parts[0] != "pytest_prp":
                continue
            named = [part for part in parts[1:] if part in modules]
            if named:
                found.add(named[-1])
            else:  # from pytest_prp[.layer] import module, ...
                found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pytest_prp":
                    found.update(part for part in parts[1:] if part in modules)
    return found - {path.stem}


def import_graph() -> dict[str, set[str]]:
    paths = module_paths()
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_folder_is_a_layer_with_a_docstring() -> None:
    folders = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.iterdir() if p.is_dir()}
    assert folders - {"__pycache__"} == set(ORDER) - {""}, "add the new folder to ORDER"
    for layer in ORDER[:-1]:
        assert ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text())), layer


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    graph = import_graph()
    upward = {(a, b) for a, targets in graph.items() for b in targets if RANK[b] > RANK[a]}
    assert upward == set(), "import(s) from a layer above: move the module or what it needs"


def test_no_new_import_cycles() -> None:
    assert cycles(import_graph()) == set(), "import cycle(s)"
