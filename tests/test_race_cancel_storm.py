"""Races cancelled at random points, twice included: nothing may leak.

2,000 races (streaming and not, full and hedged) on deployments with
``max_parallel_requests=2`` are cancelled after a random delay, a third of them twice (the
second cancel landing while the first one's cleanup runs). Afterwards: no limiter slot held or
waited on, no task left, every connection the fake saw closed, and the keys still serve calls
(a leaked slot would make them wait forever). Also the shielded cleanup on its own, and a won
stream that the caller never receives.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Iterator
from typing import Any

import pytest

import salvo
from _config_helpers import openai_models
from salvo._closing import finish_tasks
from salvo._pricing import reset_prices
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]
RACES = 2_000
SEED = 20_261_207


def _behavior(n: int) -> Behavior:
    rnd = random.Random(SEED + n)
    return Behavior(
        latency=rnd.choice([0.0, 0.0, 0.002, 0.01]),
        first_chunk_delay=rnd.choice([0.0, 0.003]),
        chunks=rnd.choice([1, 3]),
        chunk_interval=0.001,
    )


@pytest.fixture
def prices() -> Iterator[None]:
    for name in ("x", "y", "z"):
        salvo.set_price("openai", name, input_per_m=1.0, output_per_m=1.0)
    yield
    reset_prices()


async def test_random_cancellation_storm_leaks_nothing(prices: None) -> None:
    before = asyncio.all_tasks()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []  # "Task exception was never retrieved" and the like
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, ctx: reported.append(ctx))
    rnd = random.Random(SEED)
    async with FakeProvider() as fake:
        names = ["x", "y", "z"]
        for name in names:
            fake.script(name, _behavior)
        config = openai_models(fake, names, max_parallel_requests=2)
        outcomes: dict[str, int] = {"cancelled": 0, "won": 0}
        client = salvo.Client(config=config, hedge_budget=None, max_retries=0, budget_usd=1e6)
        async with client:

            async def one(i: int) -> None:
                stream = i % 2 == 0
                hedge = None if i % 4 < 2 else 0.002
                models = rnd.sample(names, 2)
                task = asyncio.create_task(
                    client.arace(models, MSGS, stream=stream, hedge=hedge, timeout=5.0)
                )
                await asyncio.sleep(rnd.random() * 0.012)
                task.cancel()
                if i % 3 == 0:
                    await asyncio.sleep(rnd.choice([0, 0, 0.0005]))
                    task.cancel()  # a second cancel, often inside the first one's cleanup
                try:
                    result: Any = await task
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                    return
                except salvo.SalvoError:
                    return
                outcomes["won"] += 1
                if isinstance(result, salvo.CompletionStream):
                    await result.aclose()

            gate = asyncio.Semaphore(3)  # at most 3 races at once: 6 contenders on 3 keys of 2

            async def gated(i: int) -> None:
                async with gate:
                    await one(i)

            await asyncio.gather(*(gated(i) for i in range(RACES)))
            stats = client.statistics()
            assert (stats.in_flight, stats.waiting_on_limiters) == (0, 0), stats.limiters
            for lim in stats.limiters.values():
                assert lim.in_flight == 0
            assert stats.reserved_usd == 0.0  # every reservation settled, cancelled or not
            assert stats.spent_usd is not None and stats.spent_usd > 0
            # Every key still serves: a leaked slot would block one of these for good.
            for name in names:
                fake.script(name, Behavior())
            async with asyncio.timeout(5.0):
                await asyncio.gather(*(client.acompletion(n, MSGS) for n in names * 3))
        assert client.statistics().connections_open == 0
        for rec in fake.records:
            if rec.closed is None:
                await fake.wait_until_closed(rec, timeout=5.0)
            assert rec.closed is not None
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    loop.set_exception_handler(previous)
    assert reported == []
    assert asyncio.all_tasks() == before, asyncio.all_tasks() - before
    assert outcomes["cancelled"] > RACES // 4  # the storm really cancelled races mid-flight
    assert outcomes["won"] > 0


async def test_cleanup_completes_through_repeated_cancels() -> None:
    """finish_tasks keeps waiting for a slow-to-close child however often it is cancelled,
    then re-raises the cancellation."""
    closed: list[str] = []

    async def slow_to_close() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a close that takes a while
            closed.append("child")
            raise

    child = asyncio.create_task(slow_to_close())
    await asyncio.sleep(0)
    cleaner = asyncio.create_task(finish_tasks([child]))
    await asyncio.sleep(0.005)
    for _ in range(3):
        cleaner.cancel()
        await asyncio.sleep(0.005)
    with pytest.raises(asyncio.CancelledError):
        await cleaner
    assert closed == ["child"] and child.done()


async def test_a_won_stream_never_returned_is_closed() -> None:
    """The winner is chosen, then the caller is cancelled while the losers are closed: the
    winner's stream (and its limiter slot) must be closed too, not dropped."""
    async with FakeProvider() as fake:
        fake.script("w", Behavior(chunks=3, chunk_interval=0.5))
        fake.script("l", Behavior(first_chunk_delay=5.0))
        config = openai_models(fake, ("w", "l"), max_parallel_requests=1)
        async with salvo.Client(config=config) as client:
            hits = 0
            for steps in range(0, 400, 2):
                task = asyncio.create_task(client.arace(["w", "l"], MSGS, stream=True))
                # Cancel after a number of loop steps (and once more a step later), so that
                # across the sweep the cancel lands at every point of the race's end.
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.sleep(0)
                task.cancel()
                try:
                    got = await task
                except asyncio.CancelledError:
                    hits += 1
                else:
                    await got.aclose()
                stats = client.statistics()
                assert stats.in_flight == 0, (steps, stats.limiters)
            assert 0 < hits < 200  # some were cancelled, some returned first
            for rec in fake.records:
                await fake.wait_until_closed(rec, timeout=2.0)
                assert rec.closed is not None
