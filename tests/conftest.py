"""Shared test set-up: every ``async def`` test runs on asyncio through anyio's pytest plugin."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import salvo
from salvo.testing import FakeProvider


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def batch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """salvo's default batch store (``SALVO_BATCH_DIR``) in the test's tmp dir, so nothing is
    written under the home directory; a module asks for it in its ``pytestmark``."""
    monkeypatch.setenv("SALVO_BATCH_DIR", str(tmp_path / "default-store"))
    return tmp_path / "default-store"


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    """The fake provider on 127.0.0.1 (a test module may define its own ``fake``)."""
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[salvo.Client]:
    """A client that retries without waiting."""
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as c:
        yield c


@pytest.fixture
def otel() -> Iterator[Any]:
    """In-memory OpenTelemetry providers (``_otel_helpers.Otel``) installed for salvo, and
    taken away again after the test."""
    from _otel_helpers import Otel
    from salvo import _otel

    o = Otel()
    _otel.use_providers(o.tracer_provider, o.meter_provider)
    try:
        yield o
    finally:
        _otel.use_providers()
        o.tracer_provider.shutdown()
        o.meter_provider.shutdown()


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> None:
    """Mark coroutine tests for anyio before its plugin looks at them (parametrize-safe)."""
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)
