"""The batch backend factory is a leaf: ``_api`` and ``_results`` both import it (and the cost
helper), neither imports the other, and the factory imports no backend module until asked."""

from __future__ import annotations

import ast
from pathlib import Path

import salvo.batches

ROOT = Path(salvo.batches.__file__).parent


def imports(name: str) -> set[str]:
    """Sibling modules ``name`` imports, at module level and inside functions."""
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


def test_the_factory_is_a_leaf() -> None:
    backends = imports("_backends")
    assert backends <= {"_store", "_types", "_local"}  # _local: the local engine, on first use
    for upper in ("_api", "_results", "_sync", "_cli"):
        assert upper not in backends
    assert "_results" not in imports("_api") and "_api" not in imports("_results")
    assert "_backends" in imports("_api") and "_backends" in imports("_results")
    for name in ("_cost", "_check", "_jobs", "_mistral", "_together", "_openai", "_anthropic"):
        assert not {"_api", "_results"} & imports(name), name


def test_each_registered_backend_resolves() -> None:
    import importlib

    from salvo.batches._backends import BACKENDS

    for provider, entry in BACKENDS.items():
        module, _, attr = entry.factory.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), provider
        assert entry.limits.urls, provider
