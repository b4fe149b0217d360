"""Imports only go down the layers (docs/ARCHITECTURE.md):

    domains (0) <- rewardmodels (1) <- gradopt engine (2) <- distill (3) <- command line and jobs (4)

Every import of every library module is checked, at module level and inside functions alike, and
nothing in the library imports `benchmarks`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("domains", "rewardmodels", "gradopt", "distill")
TOP = ("gradopt.cli",)  # the command line (and the jobs it runs) sit above all


def layer(module: str) -> int | None:
    """The layer of a dotted module name, or None for a module outside the project."""
    if module.startswith(TOP):
        return 4
    top = module.split(".")[0]
    return PACKAGES.index(top) if top in PACKAGES else None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement in the file, however deeply nested."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` may name a submodule: check `package.x` too
                found += [(node.lineno, stem)] + [(node.lineno, f"{stem}.{a.name}") for a in node.names
                                                  if not node.module]
            else:
                found += [(node.lineno, node.module)]
    return found


def violations(paths) -> list[str]:
    bad = []
    for path in paths:
        me = module_name(path)
        mine = layer(me)
        for line, target in imports(path):
            theirs = layer(target)
            if target.split(".")[0] == "benchmarks":
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} (nothing imports benchmarks)")
            elif theirs is not None and mine is not None and theirs > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line} {me} (layer {mine}) imports {target} (layer {theirs})")
    return bad


def library_files():
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_no_import_goes_up_a_layer():
    assert violations(library_files()) == []


def test_the_checker_sees_imports_inside_functions(tmp_path, monkeypatch):
    """A deliberately upward import (engine -> distill, hidden in a function) is reported."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "gradopt").mkdir()
    bad = tmp_path / "gradopt" / "_x.py"
    bad.write_text("import numpy\n\ndef f():\n    from distill import run_demo\n    from . import _y\n")
    (tmp_path / "gradopt" / "cli").mkdir()
    ok = tmp_path / "gradopt" / "cli" / "_y.py"
    ok.write_text("def g():\n    import distill\n")
    found = violations([bad, ok])
    assert found == ["gradopt/_x.py:4 gradopt._x (layer 2) imports distill (layer 3)"]


@pytest.mark.parametrize("module, expected", [("domains._abc", 0), ("rewardmodels", 1), ("gradopt._ascent", 2),
                                              ("distill._demo", 3), ("gradopt.cli", 4), ("numpy", None)])
def test_layers_of_modules(module, expected):
    assert layer(module) == expected
