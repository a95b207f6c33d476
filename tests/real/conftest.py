"""The real-model tier (``make test-real``): two llama.cpp servers running gemma-3-270m, built by
``python -m benchmarks.real --setup-only``. Never part of ``make test`` (pyproject's addopts
ignore this folder)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import real  # noqa: E402


@pytest.fixture(scope="session")
def servers() -> Iterator[list[Any]]:
    if not (real.PY.exists() and real.GGUF.exists()):
        pytest.skip("the real-model venv is missing: run `make bench-real` or `make test-real`")
    with real.servers(2) as srvs:
        yield srvs
