"""No import runs back up a layer: the fan-out engine sits below ``Client`` and never imports
``_client`` (or the module API above it), not even inside a function; annotations-only imports
under ``TYPE_CHECKING`` are exempt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import salvo

SRC = Path(salvo.__file__).parent
ENGINE = [
    "_caller",
    "_closing",
    "_fanout",
    "_race",
    "_hedge",
    "_latency",
    "_budget",
    "_race_report",
]
ABOVE = {"_client", "_api", "_sync", "proxy", "batches", "cli"}


def runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("name", ENGINE)
def test_fan_out_engine_imports_nothing_above_it(name: str) -> None:
    assert runtime_imports(SRC / f"{name}.py").isdisjoint(ABOVE)


def test_client_imports_the_engine_at_the_top() -> None:
    tree = ast.parse((SRC / "_client.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert {"_fanout", "_race", "_hedge", "_budget"} <= top
