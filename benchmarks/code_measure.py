"""The code's structural measures: lines of code per package, long modules, long functions, import cycles, and the
pairs of places that ``toy/`` and ``full/`` share.

Reported:

* per package (``cf_ref``, ``toy``, ``full``, ``tests``, ``benchmarks``): files, lines, **non-blank non-comment
  lines** (what ``grep -v`` of blank and ``#`` lines counts: docstrings included) and **code lines** — lines that
  hold a token other than a comment, i.e. not blank, not comment-only and not part of a docstring (the string
  statement that opens a module, class or function body);
* modules over ``--module-lines`` (350) lines, as ``wc -l`` counts them, with their code lines;
* functions (and methods) over ``--function-lines`` (50) lines, from the ``def`` line to the last line of the
  body (decorators excluded, docstring and comments included), with their code lines;
* import cycles of the package graph (every ``import`` statement, those inside functions too);
* the pairs that the workplace tool ``duplicates`` (if it is on PATH) finds in the tree, and how many of them have
  one side in ``toy/`` and the other in ``full/``.

    python benchmarks/code_measure.py              # the tree this file is in
    python benchmarks/code_measure.py --root DIR   # another checkout (e.g. a ``git worktree`` of an older commit)
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import shutil
import subprocess
import tokenize
from pathlib import Path

PACKAGES = ("cf_ref", "toy", "full", "tests", "benchmarks")
NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}


def docstring_lines(tree: ast.Module) -> set[int]:
    """Line numbers (1-based) of every module, class and function docstring of ``tree``."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(source: str, tree: ast.Module) -> set[int]:
    """Line numbers that hold code: a token other than a comment or layout, outside the docstrings."""
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in NOT_CODE:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines - docstring_lines(tree)


def functions(tree: ast.Module, module: str) -> list[tuple[str, int, int, int]]:
    """``(qualified name, first line, last line, lines)`` of every function and method, nested ones included."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((name, child.lineno, child.end_lineno, child.end_lineno - child.lineno + 1))
                visit(child, name)
            else:
                visit(child, prefix)

    visit(tree, module)
    return found


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_edges(tree: ast.Module, name: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``tree`` imports (relative imports resolved against ``name``)."""
    edges: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            edges |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: -node.level]
                base = ".".join(anchor + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
            rest = [a.name for a in node.names if f"{base}.{a.name}" not in known]
            edges |= subs | ({base} if rest and base in known else set())
    return edges - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted: every import cycle lies in
    one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def duplicates(root: Path) -> tuple[str, list[str]]:
    """The header line of ``duplicates --most 200`` on ``root`` and its rows that pair a place in toy/ with one in
    full/."""
    if shutil.which("duplicates") is None:
        return "duplicates: not on PATH", []
    out = subprocess.run(
        ["duplicates", "--repo", str(root), "--most", "200", "--seconds", "120"], capture_output=True, text=True
    ).stdout
    rows = [line for line in out.splitlines() if re.match(r"\s*D\d+ ", line)]
    across = [r for r in rows if re.search(r"\btoy/\S+ ~ full/|\bfull/\S+ ~ toy/", r)]
    return out.splitlines()[0] if out else "duplicates: no output", across


def measure(root: Path, module_limit: int, function_limit: int) -> None:
    packages: dict[str, list[int]] = {}
    long_modules, long_functions, graph = [], [], {}
    files = {module_name(root, p): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}
    for name, path in files.items():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        code = code_lines(source, tree)
        total = source.count("\n")
        text = sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))
        stats = packages.setdefault(name.split(".")[0], [0, 0, 0, 0])
        for i, n in enumerate((1, total, text, len(code))):
            stats[i] += n
        if total > module_limit:
            long_modules.append((total, len(code), str(path.relative_to(root))))
        for qual, first, last, n in functions(tree, name):
            if n > function_limit:
                long_functions.append((n, len([i for i in code if first <= i <= last]), qual))
        if not name.startswith(("tests", "benchmarks")):
            graph[name] = import_edges(tree, name, set(files))

    print(f"code lines per package ({root}):")
    print(f"  {'package':<12} {'files':>6} {'lines':>7} {'non-blank non-comment':>22} {'code':>7}")
    for pkg in PACKAGES:
        files_n, total, text, code = packages.get(pkg, [0, 0, 0, 0])
        print(f"  {pkg:<12} {files_n:>6} {total:>7} {text:>22} {code:>7}")
    print(f"\nmodules over {module_limit} lines (lines / code lines):")
    for total, code, path in sorted(long_modules, reverse=True):
        print(f"  {total:>5} {code:>5}  {path}")
    print(f"\nfunctions over {function_limit} lines (lines / code lines):")
    for n, code, qual in sorted(long_functions, reverse=True):
        print(f"  {n:>5} {code:>5}  {qual}")
    found = cycles(graph)
    print(f"\nimport cycles (cf_ref, toy, full; imports inside functions count): {len(found)}")
    for component in found:
        print("  " + " ↔ ".join(component))
    track_imports = sorted(
        f"{m} → {t}" for m, ts in graph.items() if m.startswith("cf_ref") for t in ts if not t.startswith("cf_ref")
    )
    print(f"cf_ref modules importing a track: {len(track_imports)}")
    for line in track_imports:
        print("  " + line)
    header, across = duplicates(root)
    print(f"\n{header}")
    print(f"pairs between toy/ and full/: {len(across)}")
    for row in across:
        print("  " + row.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--module-lines", type=int, default=350)
    parser.add_argument("--function-lines", type=int, default=50)
    args = parser.parse_args()
    measure(args.root.resolve(), args.module_lines, args.function_lines)


if __name__ == "__main__":
    main()
