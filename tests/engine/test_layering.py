"""DESIGN.md's layering, read from the source: `engine` imports nothing above it (not
perception, nodes, models, replay), `perception` imports `engine` only. Every import
counts, also those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sfhelpers import REPO

ABOVE = {"engine": ("perception", "nodes", "models", "replay"), "perception": ("nodes", "models", "replay")}


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, relative imports resolved to `sensorfuse.<package>`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x` stays inside the package: not a layering question
                continue
            module = node.module or ""
            out += [(node.lineno, module)] + [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return out


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_package_imports_nothing_above_it(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    banned = tuple(f"sensorfuse.{p}" for p in ABOVE[package])
    bad = [f"{f.relative_to(REPO)}:{line} imports {mod}" for f in files for line, mod in imported(f)
           if mod in banned or mod.startswith(tuple(f"{b}." for b in banned))]
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_lazy_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from sensorfuse.perception.ticks import Ref\n    import sensorfuse.nodes.demo\n")
    assert [m for _, m in imported(source)] == ["sensorfuse.perception.ticks", "sensorfuse.perception.ticks.Ref",
                                                "sensorfuse.nodes.demo"]
