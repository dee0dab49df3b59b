"""Every package the code imports is declared, and the library's metadata holds ranges, not pins.

Exact versions of the tested set live in constraints.txt only; pyproject.toml declares ranges so
that edgecomp installs beside other libraries.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    ROOT / "pyproject.toml": [ROOT / "edgecomp", ROOT / "targets"],
    ROOT / "runtime" / "pyproject.toml": [ROOT / "runtime" / "edgecomp_runtime"],
}
LOCAL = {"edgecomp", "edgecomp_runtime", "targets", "common"}
# Provided by the device's system image, not by pip: JetPack ships TensorRT's Python bindings.
SYSTEM = {"tensorrt"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return list(project.get("dependencies", [])) + [r for group in extras.values() for r in group]


def _declared(pyproject: Path) -> set[str]:
    return {
        _norm(re.match(r"\s*([A-Za-z0-9_.-]+)", requirement).group(1))
        for requirement in _requirements(pyproject)
    }


def _covered(dist: str, declared: set[str]) -> bool:
    """Declared, or the CUDA-variant wheel of a declared meta-package (tensorrt-rtx-cu13)."""
    return any(dist == name or dist.startswith(f"{name}-cu") for name in declared)


def _imports(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in LOCAL | SYSTEM:
                    found.setdefault(top, path)
    return found


@pytest.mark.parametrize("pyproject", list(PACKAGES), ids=lambda p: p.parent.name)
def test_every_import_is_declared(pyproject):
    # setup
    distributions = importlib.metadata.packages_distributions()
    declared = _declared(pyproject)
    # execute
    missing = []
    for folder in PACKAGES[pyproject]:
        for module, path in sorted(_imports(folder).items()):
            dists = {_norm(d) for d in distributions.get(module, [module])}
            if not any(_covered(d, declared) for d in dists):
                missing.append(f"{module} ({path.relative_to(ROOT)}) from {sorted(dists)}")
    # assert
    assert not missing, f"imported but not declared in {pyproject.relative_to(ROOT)}: {missing}"


@pytest.mark.parametrize("pyproject", list(PACKAGES), ids=lambda p: p.parent.name)
def test_metadata_holds_ranges_not_pins(pyproject):
    pinned = [r for r in _requirements(pyproject) if "==" in r]
    assert not pinned, f"exact pins belong in constraints.txt, not {pyproject.name}: {pinned}"


def test_constraints_pin_torch_to_the_cpu_wheel_on_this_machine():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines
