"""No import runs back up a layer (docs/architecture.md): checked on the source, including
imports inside functions, excluding ``TYPE_CHECKING`` blocks (annotations only)."""

from __future__ import annotations

import ast
from pathlib import Path

import salvo

SRC = Path(salvo.__file__).parent


def _imports(path: Path) -> set[str]:
    """Relative module names ``path`` imports at run time (``._app``, ``.._client``)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and id(node) not in skip and node.level:
            out.add("." * node.level + (node.module or ""))
    return out


def test_proxy_route_modules_do_not_import_the_app() -> None:
    for path in (SRC / "proxy").glob("_*.py"):
        if path.name in {"__init__.py", "_app.py", "_cli.py"}:
            continue
        assert "._app" not in _imports(path), path.name


def test_the_batch_backend_factory_is_a_leaf() -> None:
    for path in (SRC / "batches").glob("_*.py"):
        if path.name in {"__init__.py", "_api.py", "_sync.py", "_cli.py"}:
            continue
        assert "._api" not in _imports(path), path.name
    assert not {"._api", "._results"} & _imports(SRC / "batches" / "_backends.py")


def test_nothing_outside_the_client_touches_its_private_names() -> None:
    """The seam's rule: Client.send/route are the way in, never Client._anything."""
    import re

    pattern = re.compile(r"\bclient\._[a-z]", re.IGNORECASE)
    for path in SRC.rglob("*.py"):
        if path.name == "_client.py":
            continue
        hits = [ln for ln in path.read_text().splitlines() if pattern.search(ln)]
        assert not hits, (path, hits)
