"""Hedged races, first-k and the race report, on the fake provider with scripted latencies.

What is proven from the fake's own records: when each contender's request arrived (a hedge
never before its delay), that a fast answer means no second request at all, and that every
loser's connection was closed before the race returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import salvo
from _config_helpers import openai_models
from salvo._hedge import BUDGET_WINDOW_S, HedgeBudget, parse_hedge
from salvo._latency import MIN_SAMPLES, LatencyWindow, LatencyWindows, window_key
from salvo._pricing import reset_prices
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]
NAMES = ["a", "b", "c", "m"]


def config(fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    return openai_models(fake, NAMES, **extra)


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[salvo.Client]:
    async with salvo.Client(config=config(fake), hedge_budget=None, hedge_delay=5.0) as c:
        yield c


@pytest.fixture
def prices() -> Iterator[None]:
    for n in NAMES:
        salvo.set_price("openai", n, input_per_m=1.0, output_per_m=2.0)
    yield
    reset_prices()


async def all_closed(fake: FakeProvider) -> None:
    for rec in fake.records:
        await fake.wait_until_closed(rec, timeout=2.0)
        assert rec.closed is not None


# -- the schedule ------------------------------------------------------------------------------


async def test_hedge_starts_next_only_after_the_delay(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(latency=3.0))
    fake.script("b", Behavior(text="from b"))
    resp = await client.arace(["a", "b"], MSGS, hedge=0.3)
    assert resp.content == "from b"
    (ra,) = fake.records_for("a")
    (rb,) = fake.records_for("b")
    assert rb.arrived - ra.arrived >= 0.29  # never before the delay
    race = resp.race
    assert race is not None and race.winner == 1 and race.hedges == 1
    first, second = race.contenders
    assert (first.outcome, second.outcome) == ("lost", "won")
    assert (first.hedge, second.hedge) == (False, True)
    assert second.started_s is not None and second.started_s >= 0.29
    # The loser was closed as in a full race: before arace returned, never completed.
    await fake.wait_until_closed(ra, timeout=1.0)
    assert ra.disconnected is not None and ra.completed is None
    stats = client.statistics()
    assert (stats.hedges_started, stats.hedge_wins, stats.in_flight) == (1, 1, 0)


async def test_a_fast_answer_sends_no_second_request(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(text="quick"))
    for _ in range(3):
        resp = await client.arace(["a", "b", "c"], MSGS, hedge=0.5)
        assert resp.content == "quick"
        assert resp.race is not None
        assert [c.outcome for c in resp.race.contenders] == ["won", "not_started", "not_started"]
        assert resp.race.contenders[1].started_s is None
    await asyncio.sleep(0.6)  # past the delay: nothing was left scheduled
    assert len(fake.records_for("a")) == 3
    assert fake.records_for("b") == [] and fake.records_for("c") == []
    assert client.statistics().hedges_started == 0


async def test_a_failure_starts_the_next_at_once_and_is_not_a_hedge(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(status=500))
    fake.script("b", Behavior(text="b answers"))
    resp = await client.arace(["a", "b"], MSGS, hedge=30.0, max_retries=0)
    assert resp.content == "b answers"
    assert resp.race is not None
    failed, won = resp.race.contenders
    assert failed.outcome == "failed" and won.outcome == "won"
    assert won.hedge is False and resp.race.hedges == 0
    assert won.started_s is not None and won.started_s < 5.0  # not after the 30 s delay
    assert client.statistics().hedges_started == 0


async def test_the_same_model_twice_hedges_a_slow_replica(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", [Behavior(latency=3.0, text="slow replica"), Behavior(text="fast replica")])
    resp = await client.arace(["m", "m"], MSGS, hedge=0.1)
    assert resp.content == "fast replica"
    assert resp.race is not None and resp.race.winner == 1
    first, second = fake.records_for("m")
    await fake.wait_until_closed(second, timeout=1.0)
    assert second.completed is not None
    await fake.wait_until_closed(first, timeout=1.0)
    assert first.disconnected is not None and first.completed is None


async def test_p95_follows_observed_latencies(fake: FakeProvider) -> None:
    async with salvo.Client(config=config(fake), hedge_budget=None, hedge_delay=0.25) as c:
        fake.script("a", Behavior(latency=3.0))
        fake.script("b", Behavior(text="b"))
        # Cold: fewer than MIN_SAMPLES answers from "a", so the default delay (0.25 s) is used.
        resp = await c.arace(["a", "b"], MSGS, hedge="p95")
        assert resp.race is not None
        cold = resp.race.contenders[1].started_s
        assert cold is not None and cold >= 0.24
        # Warm the window of "a" with quick answers: p95 drops far below the default.
        fake.script("a", Behavior())
        await c.abatch_completion("a", [MSGS] * MIN_SAMPLES, max_concurrency=4)
        dep = c.options("a", {}).dep
        p95 = c.hedging.delay(parse_hedge("p95"), dep, False)
        assert 0 < p95 < 0.25
        fake.script("a", Behavior(latency=3.0))
        resp = await c.arace(["a", "b"], MSGS, hedge="p95")
        assert resp.race is not None
        warm = resp.race.contenders[1].started_s
        assert warm is not None and p95 - 0.01 <= warm < cold
        # Slow answers then move the percentile up: it follows what is observed.
        fake.script("a", Behavior(latency=0.3))
        await c.abatch_completion("a", [MSGS] * MIN_SAMPLES, max_concurrency=MIN_SAMPLES)
        assert c.hedging.delay(parse_hedge("p95"), dep, False) >= 0.3


async def test_stream_windows_are_kept_apart(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("a", Behavior(latency=0.0, first_chunk_delay=0.0, chunks=2))
    for _ in range(MIN_SAMPLES):
        s = await client.acompletion("a", MSGS, stream=True)
        await s.aclose()
    dep = client.options("a", {}).dep
    assert client.hedging.delay(("p", 50.0), dep, True) < 5.0  # the stream window is warm
    assert client.hedging.delay(("p", 50.0), dep, False) == 5.0  # the plain one is not


async def test_the_hedge_budget_caps_hedges(fake: FakeProvider) -> None:
    async with salvo.Client(config=config(fake), hedge_budget=0.5) as c:
        fake.script("a", Behavior(latency=0.3, text="a"))
        fake.script("b", Behavior(text="b"))
        winners = [(await c.arace(["a", "b"], MSGS, hedge=0.05)).content for _ in range(4)]
        # 1 hedge per 2 primaries: race 1 (1 primary) may not hedge, race 2 (2) may, race 3
        # (3 primaries, 1 hedge) may not, race 4 (4, 1) may.
        assert winners == ["a", "b", "a", "b"]
        assert len(fake.records_for("b")) == 2
        stats = c.statistics()
        assert (stats.hedges_started, stats.hedges_denied, stats.hedge_wins) == (2, 2, 2)
        assert stats.in_flight == 0


def test_hedge_budget_rolls_its_window() -> None:
    now = [100.0]
    budget = HedgeBudget(0.1, clock=lambda: now[0])
    for _ in range(20):
        budget.primary()
    assert budget.try_hedge() and budget.try_hedge()
    assert not budget.try_hedge()  # 2 of 20 * 0.1 spent
    now[0] += BUDGET_WINDOW_S - 1
    assert not budget.try_hedge()  # still inside the window
    now[0] += 1
    assert not budget.try_hedge()  # window moved on: no primaries left to earn hedges
    for _ in range(10):
        budget.primary()
    assert budget.try_hedge() and not budget.try_hedge()
    assert budget.available() == 0.0
    now[0] += 10 * BUDGET_WINDOW_S
    assert budget.available() == 0.0


def test_latency_window_percentiles() -> None:
    w = LatencyWindow(size=100)
    for v in range(1, MIN_SAMPLES):
        w.add(float(v))
    assert w.percentile(95) is None  # too few samples
    for v in range(MIN_SAMPLES, 101):
        w.add(float(v))
    assert w.percentile(95) == 95.0 and w.percentile(50) == 50.0 and w.percentile(99.9) == 100.0
    for _ in range(100):  # the ring forgets the oldest
        w.add(1000.0)
    assert w.percentile(1) == 1000.0 and w.count == 100
    windows = LatencyWindows()
    for i in range(3000):
        windows.record(("k", i), 0.1)
    assert len(windows) <= 1024


@pytest.mark.parametrize("bad", ["p100", "p0", "fast", "95", -1, float("nan"), True, [1]])
async def test_bad_hedge_is_refused_before_sending(
    fake: FakeProvider, client: salvo.Client, bad: Any
) -> None:
    with pytest.raises(salvo.ConfigError, match="hedge"):
        await client.arace(["a", "b"], MSGS, hedge=bad)
    assert fake.records == []


# -- streams -----------------------------------------------------------------------------------


async def test_streamed_hedge_and_its_report_completed_on_close(
    fake: FakeProvider, client: salvo.Client, prices: None
) -> None:
    fake.script("a", Behavior(first_chunk_delay=3.0))
    fake.script(
        "b",
        Behavior(text="one two three four", chunks=4, chunk_interval=0.02, include_usage=True),
    )
    stream = await client.arace(["a", "b"], MSGS, stream=True, hedge=0.1)
    assert stream.model == "b"
    race = stream.race
    assert race is not None and race.winner == 1
    (ra,) = fake.records_for("a")
    await fake.wait_until_closed(ra, timeout=1.0)
    assert ra.disconnected is not None and ra.completed is None
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "one two three four"
    await stream.aclose()
    winner = race.contenders[1]
    assert winner.usage is not None and winner.usage.completion_tokens == 4
    assert winner.cost_usd is not None and not winner.estimated
    loser = race.contenders[0]
    assert loser.outcome == "lost" and loser.estimated and loser.cost_usd is not None
    assert race.cost_usd == pytest.approx(winner.cost_usd + loser.cost_usd)


# -- what a race cost --------------------------------------------------------------------------


async def test_race_report_adds_up(fake: FakeProvider, client: salvo.Client, prices: None) -> None:
    fake.script("a", Behavior(status=503))
    fake.script("b", Behavior(latency=3.0))
    fake.script("c", Behavior(latency=0.2, prompt_tokens=10, completion_tokens=5))
    fake.script("m", Behavior(text="never asked"))
    # a fails at once, so b replaces it at once; c is hedged 0.5 s later and answers 0.2 s
    # after that, before m's turn would come.
    resp = await client.arace(["a", "b", "c", "m"], MSGS, hedge=0.5, max_retries=0)
    race = resp.race
    assert race is not None and race.winner == 2
    outcomes = [c.outcome for c in race.contenders]
    assert outcomes == ["failed", "lost", "won", "not_started"]
    assert [c.model for c in race.contenders] == ["a", "b", "c", "m"]
    failed, lost, won, idle = race.contenders
    assert failed.cost_usd == 0.0 and not failed.estimated  # a refused request is not billed
    assert lost.estimated and lost.cost_usd is not None and lost.usage is None
    assert won.cost_usd == resp.cost_usd == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)
    assert not won.estimated and won.usage is not None
    assert idle.cost_usd is None and idle.duration_s is None
    assert race.cost_usd == pytest.approx(lost.cost_usd + won.cost_usd)
    assert client.statistics().losers_cost_usd == pytest.approx(lost.cost_usd)
    assert fake.records_for("m") == []
    await all_closed(fake)


async def test_unpriced_contenders_cost_none_never_a_guess(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(latency=3.0))
    resp = await client.arace(["a", "b"], MSGS)
    assert resp.race is not None and resp.race.cost_usd is None
    assert all(c.cost_usd is None and not c.estimated for c in resp.race.contenders)


# -- first k -----------------------------------------------------------------------------------


async def test_first_k_in_arrival_order_rest_closed(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(latency=0.3, text="third"))
    fake.script("b", Behavior(latency=3.0, text="never"))
    fake.script("c", Behavior(latency=0.0, text="first"))
    fake.script("m", Behavior(latency=0.1, text="second"))
    out = await client.afirst_k(["a", "b", "c", "m"], MSGS, 3)
    assert [r.content for r in out] == ["first", "second", "third"]
    assert [r.race.winner for r in out if r.race] == [2, 3, 0]
    (rb,) = fake.records_for("b")
    await fake.wait_until_closed(rb, timeout=1.0)
    assert rb.disconnected is not None and rb.completed is None


async def test_first_k_fails_as_soon_as_k_is_out_of_reach(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(status=500))
    fake.script("b", Behavior(status=401))
    fake.script("c", Behavior(latency=5.0))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(salvo.AllModelsFailedError) as info:
        await client.afirst_k(["a", "b", "c"], MSGS, 2, max_retries=0)
    assert loop.time() - t0 < 4.0  # not after the slow one's answer
    assert info.value.models == ("a", "b")
    (rc,) = fake.records_for("c")
    await fake.wait_until_closed(rc, timeout=1.0)
    assert rc.disconnected is not None


async def test_first_k_with_hedging(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("a", Behavior(text="a"))
    fake.script("b", Behavior(latency=3.0))
    fake.script("c", Behavior(text="c"))
    out = await client.afirst_k(["a", "b", "c"], MSGS, 2, hedge=0.1)
    assert sorted(r.content or "" for r in out) == ["a", "c"]
    assert out[0].race is not None and out[0].race.contenders[2].hedge


@pytest.mark.parametrize("k", [0, 4, -1, 1.5, True])
async def test_first_k_bad_k(fake: FakeProvider, client: salvo.Client, k: Any) -> None:
    with pytest.raises(salvo.ConfigError, match="k must be"):
        await client.afirst_k(["a", "b", "c"], MSGS, k)
    assert fake.records == []


async def test_module_level_first_k(fake: FakeProvider) -> None:
    out = await salvo.afirst_k(
        ["openai/a", "openai/b"], MSGS, 2, api_base=fake.openai_base, api_key="k"
    )
    assert len(out) == 2 and {r.race.winner for r in out if r.race} == {0, 1}


async def test_a_hedged_then_closed_contender_feeds_its_lower_bound(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(latency=3.0))
    await client.arace(["a", "b"], MSGS, hedge=0.2)
    key = window_key(client.options("a", {}).dep, False)
    assert client.hedging.latency.samples(key) == 1  # its elapsed time, past the 0.2 s delay
    await client.arace(["a", "b"], MSGS)  # a full race: a loser closed early is no sample
    assert client.hedging.latency.samples(key) == 1


async def test_streamed_winner_without_usage_is_estimated(
    fake: FakeProvider, client: salvo.Client, prices: None
) -> None:
    fake.script("a", Behavior(text="x y z", chunks=3, include_usage=False))
    stream = await client.arace(["a", "b"], MSGS, stream=True, hedge=5.0)
    await stream.collect()
    assert stream.race is not None
    won = stream.race.contenders[0]
    assert won.outcome == "won" and won.usage is None
    assert won.estimated and won.cost_usd is not None and won.cost_usd > 0
    assert stream.race.cost_usd == won.cost_usd


@pytest.mark.parametrize(("kw", "bad"), [("hedge_budget", -0.1), ("hedge_delay", -1)])
def test_bad_hedge_settings(kw: str, bad: Any) -> None:
    with pytest.raises(salvo.ConfigError, match=kw):
        salvo.Client(**{kw: bad})


async def test_hedge_around_an_upstream_that_never_answers(fake: FakeProvider) -> None:
    """A raw socket that reads the request and then says nothing, ever (no status line): the
    hedge starts the next model after the delay, wins, and the silent connection is closed
    by salvo, as the raw server sees (EOF on its socket)."""
    arrived = asyncio.Event()
    eof = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.set()
        try:
            while await reader.read(65536):
                pass
            eof.set()
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conf = config(fake)
        conf["model_list"][0]["params"]["api_base"] = f"http://127.0.0.1:{port}/v1"
        async with salvo.Client(config=conf, hedge_budget=None) as c:
            fake.script("b", Behavior(text="b answers"))
            resp = await c.arace(["a", "b"], MSGS, hedge=0.2)
            assert resp.content == "b answers" and arrived.is_set()
            assert resp.race is not None and resp.race.contenders[0].outcome == "lost"
            async with asyncio.timeout(2.0):
                await eof.wait()  # the silent upstream's connection was closed by the client
            assert c.statistics().in_flight == 0
    finally:
        server.close()
        await server.wait_closed()
