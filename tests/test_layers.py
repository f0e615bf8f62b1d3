"""The package's layer rule, read from the code: a module imports only from its own layer or below.

Layers, lowest first (issue 13; the folders are still flat, so the layers live here until the
modules move into one subpackage each). Every ``import`` counts, late ones and type-only ones too:
a late import may keep a PRP-free run cheap, but must not hide a cycle or an upward reach.

``KNOWN_UPWARD`` and ``KNOWN_CYCLES`` are the debts as they stand; the test fails on any new
one, and on a listed one that has been paid (so the list stays true and only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_prp"

LAYERS: dict[str, tuple[str, ...]] = {
    # plain helpers with no knowledge of PRPs, and the names of a PRP's branches and files
    "base": ("ids", "jsonfile", "safepath", "where", "stopping", "stream_json", "naming"),
    # what a PRP says (pure, no I/O but reading its file), down to the markdown block scanner
    "spec": ("model", "body", "body_cache", "frontmatter", "agents", "blocks"),
    # dependency graph, stages, critical path, plan views (pure), the settings
    "plan": ("planning", "plan_view", "not_found", "settings", "prp_info"),
    # running a process safely: groups, limits, logs, tails, rate limits, what it left running
    "supervise": ("output", "pump", "limits", "processes", "ratelimit", "leftovers"),
    # git: running it, the repository, worktree slots, commits, merges, the ledger, the run lock
    "workspace": (
        "git_command", "worktree_files", "repository", "commit_build", "ref_watch", "git_merge",
        "worktree_slots", "ledger", "git_workspace", "runlock", "merge_check", "merge_queue",
    ),
    # what happened: the PRP record, heartbeats, progress, the batch result, the status view,
    # the HTML report
    "record": (
        "record", "heartbeat", "progress", "results", "status", "report_data", "report_html",
    ),
    # running steps and gates; the context hooks receive
    "execute": ("executors", "gates", "prompt", "hook_context"),
    # the pytest plugin and its glue: options, stash keys, hookspecs, collection, scheduling,
    # the item protocol, the redo of a PRP, report hooks, remote workers
    "glue": (
        "options", "keys", "hooks", "scheduler", "collect", "runner", "execution", "defaults",
        "plugin", "item_reports", "plan_output", "report_plugin", "remote", "merge_redo",
        "__init__", "__main__",
    ),
}  # fmt: skip

RANK = {module: rank for rank, layer in enumerate(LAYERS.values()) for module in layer}

# (importer, imported): the upward reaches left to undo; each names the layer it breaks.
KNOWN_UPWARD: set[tuple[str, str]] = set()

KNOWN_CYCLES: set[frozenset[str]] = set()


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, wherever in the file the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("pytest_prp."):
                found.add(node.module.split(".")[1])
            elif node.module == "pytest_prp":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pytest_prp."):
                    found.add(alias.name.split(".")[1])
    return (found & modules) - {path.stem}


def import_graph() -> dict[str, set[str]]:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    return {path.stem: imports_of(path, modules) for path in PACKAGE.glob("*.py")}


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


def test_every_module_has_a_layer() -> None:
    modules = set(import_graph())
    assert modules - set(RANK) == set(), "give the new module a layer in tests/test_layers.py"
    assert set(RANK) - modules == set(), "a listed module is gone: take it out of LAYERS"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    graph = import_graph()
    upward = {(a, b) for a, targets in graph.items() for b in targets if RANK[b] > RANK[a]}
    assert upward - KNOWN_UPWARD == set(), "new upward import(s)"
    assert KNOWN_UPWARD - upward == set(), "paid debt(s): take them out of KNOWN_UPWARD"


def test_no_new_import_cycles() -> None:
    found = cycles(import_graph())
    assert found - KNOWN_CYCLES == set(), "new import cycle(s)"
    assert KNOWN_CYCLES - found == set(), "paid debt(s): take them out of KNOWN_CYCLES"
