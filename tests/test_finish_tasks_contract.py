"""``_closing.finish_tasks`` keeps its documented contract for every task in ``keep``: when the
caller is cancelled meanwhile, the result of each kept task that succeeded is closed, and a
kept task that failed or was cancelled is skipped, not re-raised and not allowed to stop the
closing of the others. (A race only keeps winners, so this pins the contract itself: mutation
testing, issue 11.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from salvo._closing import finish_tasks
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


async def _slow_to_close() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(0.05)  # a close that takes a while: the caller is cancelled meanwhile
        raise


async def _fails() -> None:
    raise salvo.BadRequestError("no", status_code=400, provider="openai", model="m")


async def _cancelled() -> None:
    await asyncio.sleep(10)


async def _cleanup_cancelled_midway(tasks: list[asyncio.Task[Any]], keep: Any) -> None:
    cleaner = asyncio.create_task(finish_tasks(tasks, keep))
    await asyncio.sleep(0.01)
    cleaner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cleaner


@pytest.mark.parametrize("bad", [_fails, _cancelled])
async def test_a_kept_task_that_did_not_succeed_does_not_stop_the_closing(
    fake: FakeProvider, bad: Any
) -> None:
    fake.script("m", Behavior(chunks=3, chunk_interval=5.0))
    async with salvo.Client() as client:

        async def opens() -> Any:
            return await client.acompletion(
                "openai/m", MSGS, stream=True, api_base=fake.openai_base, api_key="k"
            )

        won = asyncio.create_task(opens())
        await asyncio.wait([won])
        stream = won.result()
        failed = asyncio.create_task(bad())
        await asyncio.sleep(0)
        if bad is _cancelled:
            failed.cancel()
        await asyncio.wait([failed])
        slow = asyncio.create_task(_slow_to_close())
        await asyncio.sleep(0)
        await _cleanup_cancelled_midway([slow, failed, won], [failed, won])
        assert slow.done() and stream.closed  # the kept stream is closed, never dropped
        (rec,) = fake.records_for("m")
        await fake.wait_until_closed(rec, timeout=2.0)
        assert rec.disconnected is not None and rec.completed is None
        (stats,) = client.statistics().limiters.values()
        assert stats.in_flight == 0
