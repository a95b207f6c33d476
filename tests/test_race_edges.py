"""Edges of the race engine no other test pinned down: the error message of a race and of a
first-k that can no longer succeed, the report's duration of a contender that failed early,
and a hedged contender closed unanswered being fed to its latency window even when an earlier
contender is not.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11). They run on the virtual clock (the fake's latencies are exact, no real sleeps).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from _virtual_clock import with_sockets
from salvo._latency import window_key
from salvo._pricing import reset_prices
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[salvo.Client]:
    config = {
        "model_list": [
            {
                "model_name": n,
                "params": {"model": f"openai/{n}", "api_base": fake.openai_base, "api_key": "k"},
            }
            for n in ("a", "b", "c")
        ]
    }
    async with salvo.Client(config=config, hedge_budget=None, max_retries=0) as c:
        yield c


async def test_a_race_that_fails_says_all_models_failed(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(status=400))
    fake.script("b", Behavior(status=404))
    with pytest.raises(salvo.AllModelsFailedError) as info:
        await client.arace(["a", "b"], MSGS)
    assert str(info.value).startswith("All 2 models failed (a: BadRequestError; b: NotFoundError).")


async def test_a_first_k_out_of_reach_says_how_many_failed_and_came(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(status=400))
    fake.script("b", Behavior(latency=1.0))
    with pytest.raises(salvo.AllModelsFailedError) as info:
        await client.afirst_k(["a", "b"], MSGS, k=2)
    assert str(info.value).startswith(
        "1 of 2 models failed (a: BadRequestError), so the 2 answers asked for can no "
        "longer come (0 did)."
    )


async def test_a_contender_that_failed_early_reports_its_own_duration(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(status=400))  # fails at once
    fake.script("b", Behavior(latency=2.0, text="b"))
    resp = await client.arace(["a", "b"], MSGS)
    assert resp.race is not None
    failed, won = resp.race.contenders
    assert (failed.outcome, won.outcome) == ("failed", "won")
    assert failed.duration_s is not None and failed.duration_s < 0.1  # not the race's 2 s
    assert won.duration_s is not None and won.duration_s >= 2.0


async def test_a_hedge_closed_unanswered_is_a_sample_even_after_a_winner(
    fake: FakeProvider, client: salvo.Client
) -> None:
    # a starts at 0, b is hedged at 0.3, c at 0.6; a answers at 1.0 and wins.
    fake.script("a", Behavior(latency=1.0, text="a"))
    fake.script("b", Behavior(latency=10.0))
    fake.script("c", Behavior(latency=10.0))
    resp = await client.arace(["a", "b", "c"], MSGS, hedge=0.3)
    assert resp.content == "a"
    latency = client.hedging.latency
    # b ran 0.7 s, past its 0.3 s delay: its lower bound goes to its window, although the
    # contender before it (the winner) is not censored.
    assert latency.samples(window_key(client.options("b", {}).dep, False)) == 1
    # c was the last: no hedge was timed from it, so it is no sample
    assert latency.samples(window_key(client.options("c", {}).dep, False)) == 0


async def test_a_hedge_closed_unanswered_in_first_k_feeds_the_plain_window(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(latency=1.0, text="a"))
    fake.script("b", Behavior(latency=10.0))
    fake.script("c", Behavior(latency=10.0))
    (resp,) = await client.afirst_k(["a", "b", "c"], MSGS, k=1, hedge=0.3)
    assert resp.content == "a"
    # a first-k is never streamed: b's lower bound goes to its window of whole answers
    key = window_key(client.options("b", {}).dep, False)
    assert client.hedging.latency.samples(key) == 1


async def test_first_k_keeps_its_cost_limit(fake: FakeProvider, client: salvo.Client) -> None:
    for n in ("a", "b"):
        salvo.set_price("openai", n, input_per_m=1000.0, output_per_m=1000.0)
    try:
        with pytest.raises(salvo.AllModelsFailedError) as info:
            await client.afirst_k(["a", "b"], MSGS, k=2, max_tokens=10, max_cost_usd=1e-6)
    finally:
        reset_prices()
    assert all(isinstance(e, salvo.BudgetExceededError) for e in info.value.exceptions)
    assert fake.records == []


async def test_a_streamed_winners_duration_runs_from_its_start_to_its_close(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(first_chunk_delay=1.0, chunks=3, chunk_interval=0.5))
    fake.script("b", Behavior(first_chunk_delay=10.0))
    stream = await client.arace(["a", "b"], MSGS, stream=True)
    async with stream:
        async for _ in stream:
            pass
    assert stream.race is not None
    won = stream.race.contenders[0]
    assert won.outcome == "won" and won.duration_s is not None
    # from the request (0 s), not from the first chunk (1 s): the fake's events after the first
    # come 0.5 s apart (the chunks, the finish and the terminator), 3.5 s on the virtual clock
    assert won.duration_s == pytest.approx(3.5, abs=0.01)
