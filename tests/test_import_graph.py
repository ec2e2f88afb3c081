"""The packages' import graph has no cycle — counting imports inside functions too (a deferred import that closes a
cycle is still a cycle: module A needs B needs A) — and the shared layer ``cf_ref`` imports neither track, not even
inside a function (``tests/cf_ref/test_layering.py`` checks the same at run time)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cf_ref", "toy", "full")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(*packages: str) -> dict[str, set[str]]:
    """``{module: modules of the packages it imports}``, from every ``import`` / ``from … import`` statement. An
    import of a submodule is an edge to that submodule (not to the packages above it, whose ``__init__`` only
    re-exports)."""
    files = {module_name(p): p for package in packages for p in (ROOT / package).rglob("*.py")}

    def resolve(name: str, names: list[str]) -> set[str]:
        subs = {f"{name}.{n}" for n in names if f"{name}.{n}" in files}
        rest = [n for n in names if f"{name}.{n}" not in files]
        return subs | ({name} if rest and name in files else set())

    graph = {}
    for name, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges |= resolve(node.module, [a.name for a in node.names])
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_deferred_import_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_full_package_has_no_import_cycle():
    graph = import_graph("full")
    assert len(graph) >= 35 and "full.stages.dmd" in graph["full.pipeline"]  # the whole package was read
    assert "full.stages.base" in graph["full.pipeline"] and "full.prepare" in graph["full.stages.previews"]
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_no_import_cycle_within_or_across_the_packages():
    graph = import_graph(*PACKAGES)
    assert "toy.run_files" in graph["toy.plots"] and "cf_ref.io" in graph["toy.plots"]  # every package read
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_cf_ref_imports_no_track():
    graph = import_graph(*PACKAGES)
    shared = [m for m in graph if m.split(".")[0] == "cf_ref"]
    assert len(shared) >= 20
    assert {f"{m} → {t}" for m in shared for t in graph[m] if t.split(".")[0] != "cf_ref"} == set()
