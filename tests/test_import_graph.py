"""No import circles: no module imports one that imports it back, directly or through others.

The graph is read with ``ast`` from the sources (every ``import`` and ``from ... import``, at
module level or inside a function) over edgecomp/, targets/ (as ``edgecomp.targets``) and
runtime/edgecomp_runtime. An import names the deepest project module it reaches (``from pkg
import mod`` is an edge to ``pkg.mod``); a package's own ``__init__`` is not implied by importing
its submodules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "edgecomp": ROOT / "edgecomp",
    "edgecomp.targets": ROOT / "targets",
    "edgecomp_runtime": ROOT / "runtime" / "edgecomp_runtime",
}


def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the three packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            found[".".join([package, *(p for p in parts if p != "__init__")])] = path
    return found


def _target(name: str, known: dict[str, Path]) -> str | None:
    """The deepest known module that ``name`` is or lies inside."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        out |= {t for t in (_target(n, known) for n in names) if t and t != module}
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    known = modules()
    return {module: _imports(module, path, known) for module, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


@pytest.mark.parametrize("package", list(PACKAGES))
def test_no_import_circle(package):
    # execute
    graph = import_graph()
    found = [c for c in cycles(graph) if any(m.split(".")[0] == package.split(".")[0] for m in c)]
    found = [c for c in found if any(m == package or m.startswith(f"{package}.") for m in c)]
    # assert
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_passes_sit_below_the_pipeline():
    graph = import_graph()
    assert "edgecomp.pipeline" not in graph["edgecomp.passes.recipe"]
    assert "edgecomp.targets" not in graph["edgecomp.passes.recipe"]  # the registry
    for module in (m for m in graph if m.startswith("edgecomp.passes")):
        assert "edgecomp.pipeline" not in reachable(graph, module), module


def test_the_runtime_imports_neither_torch_nor_the_compiler():
    graph = import_graph()
    for module in (m for m in graph if m.startswith("edgecomp_runtime")):
        assert not {m for m in graph[module] if not m.startswith("edgecomp_runtime")}, module


def test_test_helpers_are_not_shipped():
    assert "edgecomp.testing" not in modules()
