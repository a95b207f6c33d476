"""Rate limiters on a virtual clock: smooth rpm pacing, token accounting corrected from usage,
the concurrency cap, cancelled waiters giving their place back, and 429s pausing a whole key.

Every test here runs on `VirtualClockLoop` (no real sleeps): the clock jumps to the next timer
whenever the loop would wait, so "a minute" of pacing takes a fraction of a second and every
time below is exact. Tests that talk to the fake provider use a loop that first gives loopback
I/O a few real milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
from typing import Any

import pytest

import salvo
from _virtual_clock import VirtualClockLoop, with_sockets
from salvo._limits import KeyLimiter, Limiters, LimitSpec, estimate_tokens
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


#: For the long pacing test, whose checks do not depend on how fast loopback I/O is.
quick_sockets = functools.partial(VirtualClockLoop, grace=0.001)


def now() -> float:
    return asyncio.get_running_loop().time()


async def settle() -> None:
    """Let every runnable task run (the virtual clock moves only a few ticks)."""
    for _ in range(20):
        await asyncio.sleep(0)


def key_stats(client: salvo.Client) -> salvo._limits.LimiterStatistics:
    (stats,) = client.statistics().limiters.values()
    return stats


# -- rpm --------------------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"loop_factory": quick_sockets})])
async def test_rpm_paces_a_batch_of_1000_evenly_over_the_minutes(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[float] = []  # when each request was let through, on the virtual clock
    acquire = KeyLimiter.acquire

    async def recording_acquire(
        self: KeyLimiter, tokens: int = 0, *, deadline: float | None = None
    ) -> None:
        await acquire(self, tokens, deadline=deadline)
        sent.append(now())

    monkeypatch.setattr(KeyLimiter, "acquire", recording_acquire)
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(1000)]
    async with salvo.Client(timeout=None) as client:
        t0 = now()
        out = await client.abatch_completion(
            "openai/m", prompts, api_base=fake.openai_base, api_key="k", rpm=600
        )
    assert all(isinstance(r, salvo.ModelResponse) for r in out)
    assert len(fake.records_for("m")) == 1000
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    # One request every 100 ms from the start: no burst, and no slack either.
    assert len(sent) == 1000
    assert 0.0999 < min(gaps) and max(gaps) < 0.1001
    assert round(sent[-1] - t0, 2) == 99.9
    assert sum(1 for t in sent if t - t0 < 1.0) == 10  # the first second holds 10, not 600


async def test_rpm_unit_pacing_is_exact() -> None:
    limiter = KeyLimiter(LimitSpec(rpm=60))
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(now())
        limiter.release()

    t0 = now()
    await asyncio.gather(*(one() for _ in range(5)))
    assert [round(t - t0, 3) for t in times] == [0.0, 1.0, 2.0, 3.0, 4.0]


# -- cancelled waiters -------------------------------------------------------------------------


async def test_cancelled_rpm_waiter_gives_its_turn_back() -> None:
    limiter = KeyLimiter(LimitSpec(rpm=60))  # one a second
    got: dict[str, float] = {}

    async def one(name: str) -> None:
        await limiter.acquire()
        got[name] = now()
        limiter.release()

    t0 = now()
    await one("first")
    tasks = {n: asyncio.create_task(one(n)) for n in ("a", "b", "c")}
    await settle()
    assert limiter.waiting == 3
    tasks["a"].cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert "a" not in got
    # b and c take the 1 s and 2 s turns: a's turn was not lost.
    assert round(got["b"] - t0, 3) == 1.0
    assert round(got["c"] - t0, 3) == 2.0
    assert limiter.waiting == 0 and limiter.in_flight == 0


async def test_cancelled_concurrency_waiter_gives_its_place_back() -> None:
    limiter = KeyLimiter(LimitSpec(max_parallel_requests=1))
    await limiter.acquire()  # the holder
    order: list[str] = []

    async def one(name: str) -> None:
        await limiter.acquire()
        order.append(name)

    a, b, c = (asyncio.create_task(one(n)) for n in "abc")
    await settle()
    assert limiter.waiting == 3 and limiter.in_flight == 1
    b.cancel()
    await settle()
    assert limiter.waiting == 2
    limiter.release()  # the holder leaves: a goes
    await settle()
    assert order == ["a"]
    limiter.release()  # a leaves: c goes, not stuck behind the cancelled b
    await settle()
    assert order == ["a", "c"] and b.cancelled()
    limiter.release()
    assert limiter.in_flight == 0 and limiter.waiting == 0
    await asyncio.gather(a, c)


async def test_waiter_cancelled_after_being_let_in_passes_the_place_on() -> None:
    limiter = KeyLimiter(LimitSpec(max_parallel_requests=1))
    await limiter.acquire()
    order: list[str] = []

    async def one(name: str) -> None:
        await limiter.acquire()
        order.append(name)

    a, b = asyncio.create_task(one("a")), asyncio.create_task(one("b"))
    await settle()
    limiter.release()  # hands the place to a...
    a.cancel()  # ...which is cancelled before it could run
    await settle()
    assert a.cancelled() and order == ["b"]
    assert limiter.in_flight == 1
    limiter.release()
    await b


async def test_cancelled_token_waiter_takes_no_tokens() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))  # 100 tokens a second
    t0 = now()
    await limiter.acquire(100)  # the bucket is full now
    limiter.release()
    got: dict[str, float] = {}

    async def one(name: str) -> None:
        await limiter.acquire(100)
        got[name] = now() - t0
        limiter.release()

    x = asyncio.create_task(one("x"))
    await settle()
    x.cancel()
    await one("y")
    assert "x" not in got and round(got["y"], 3) == 1.0


async def test_cancelling_a_batch_waiting_on_the_limiter_frees_everything(
    fake: FakeProvider,
) -> None:
    prompts = [MSGS] * 50
    async with salvo.Client(timeout=None) as client:
        task = asyncio.create_task(
            client.abatch_completion(
                "openai/m", prompts, api_base=fake.openai_base, api_key="k", rpm=60
            )
        )
        await asyncio.sleep(3.5)  # virtual: four calls went out
        stats = key_stats(client)
        assert stats.waiting > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = key_stats(client)
        assert (stats.waiting, stats.in_flight) == (0, 0)
        assert len(fake.records_for("m")) == 4
        # The key is not wedged: the next call goes out on the next turn.
        t0 = now()
        await client.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k")
        assert now() - t0 <= 1.0


# -- concurrency -------------------------------------------------------------------------------


async def test_max_parallel_requests_caps_in_flight(fake: FakeProvider) -> None:
    fake.script("m", Behavior(latency=1.0))
    async with salvo.Client(timeout=None) as client:
        t0 = now()
        out = await client.abatch_completion(
            "openai/m",
            [MSGS] * 6,
            api_base=fake.openai_base,
            api_key="k",
            max_parallel_requests=2,
        )
    assert all(isinstance(r, salvo.ModelResponse) for r in out)
    assert round(now() - t0, 2) == 3.0  # 6 calls of 1 s, 2 at a time


async def test_an_open_stream_holds_its_place_until_closed(fake: FakeProvider) -> None:
    fake.script("s", Behavior(chunks=3, chunk_interval=1.0))
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 1}
    async with salvo.Client(timeout=None) as client:
        stream = await client.acompletion("openai/s", MSGS, stream=True, **kw)
        assert key_stats(client).in_flight == 1
        other = asyncio.create_task(client.acompletion("openai/m", MSGS, **kw))
        await asyncio.sleep(5)
        assert not other.done() and fake.records_for("m") == []
        assert key_stats(client).waiting == 1
        await stream.aclose()
        await other
        assert key_stats(client).in_flight == 0
    assert len(fake.records_for("m")) == 1


# -- tokens ------------------------------------------------------------------------------------


async def test_token_debt_from_usage_is_paid_by_the_next_call() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))  # a bucket of 100 tokens, 100 a second
    t0 = now()
    await limiter.acquire(100)
    limiter.release(100, used=300)  # 200 more than estimated
    assert limiter.statistics().tokens_owed == 200
    await limiter.acquire(50)
    # The debt goes into the bucket first (2 s), then the call's own 50 tokens (0.5 s).
    assert round(now() - t0, 3) == 2.5
    assert limiter.statistics().tokens_owed == 0
    limiter.release(50, used=50)


async def test_token_credit_from_usage_lets_the_next_call_go_sooner() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))
    t0 = now()
    await limiter.acquire(100)
    limiter.release(100, used=10)  # 90 tokens were charged for nothing
    await limiter.acquire(90)
    assert now() - t0 < 0.01  # the credit pays for it
    limiter.release()
    await limiter.acquire(100)  # no credit left: wait for the bucket
    assert round(now() - t0, 2) == 1.0


async def test_token_credit_is_capped_and_drains() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))
    for _ in range(5):
        await limiter.acquire(100)
        limiter.release(100, used=0)  # 5 x 100 over-estimated: still one bucket of credit
    await asyncio.sleep(0.5)  # and half of it has leaked away with the bucket
    assert 49 < limiter._credit_now(asyncio.get_running_loop()) <= 50.01


async def test_a_large_estimate_goes_now_and_the_next_call_pays_for_it() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))
    t0 = now()
    await limiter.acquire(400)  # larger than the 100-token bucket: not delayed...
    assert now() - t0 < 0.01
    limiter.release(400, used=400)
    await limiter.acquire(1)  # ...but the rest (300) is owed before anything else goes
    assert round(now() - t0, 2) == 3.01


async def test_tpm_is_corrected_from_the_response_usage(fake: FakeProvider) -> None:
    fake.script("m", Behavior(prompt_tokens=2000, completion_tokens=1000))
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k", "tpm": 60_000}
    async with salvo.Client(timeout=None) as client:
        t0 = now()
        await client.acompletion("openai/m", MSGS, **kw)
        owed = key_stats(client).tokens_owed
        assert 2990 < owed < 3000  # used 3000, estimated a handful
        await client.acompletion("openai/m", MSGS, **kw)
        # The first call used 3000 tokens at once; the bucket holds one second's worth (1000)
        # and drains 1000 a second, so the second call waited about 2 s for the rest.
        assert 1.95 < now() - t0 < 2.1


def test_estimate_counts_text_and_the_completion_budget() -> None:
    msgs = [{"role": "user", "content": "x" * 400}, {"role": "user", "content": [{"text": "y"}]}]
    assert estimate_tokens(msgs, None) == 100 + 8
    assert estimate_tokens(msgs, 50) == 158


# -- 429 pauses the key ------------------------------------------------------------------------


async def test_429_with_retry_after_pauses_every_call_of_the_key(fake: FakeProvider) -> None:
    fake.script("m", [Behavior(status=429, headers={"retry-after": "2"}), Behavior(text="m ok")])
    same = {"api_base": fake.openai_base, "api_key": "key-one"}
    other = {"api_base": fake.openai_base, "api_key": "key-two"}
    done: dict[str, float] = {}

    async def call(name: str, model: str, kw: dict[str, str]) -> None:
        resp = await client.acompletion(model, MSGS, **kw)
        assert resp.content
        done[name] = now()

    async with salvo.Client() as client:
        first = asyncio.create_task(call("first", "openai/m", same))
        while not client.statistics().limiters or key_stats(client).paused_for == 0:
            await asyncio.sleep(0)
        t429 = now()
        tasks = [
            asyncio.create_task(call("same key", "openai/n", same)),
            asyncio.create_task(call("same key 2", "openai/n", same)),
            asyncio.create_task(call("other key", "openai/n", other)),
        ]
        await asyncio.gather(first, *tasks)
    assert done["other key"] - t429 < 0.01  # another key is not held up
    for name in ("first", "same key", "same key 2"):
        assert 1.999 <= done[name] - t429 < 2.01, name
    assert [r.status for r in fake.records_for("m")] == [429, 200]


# -- where limits come from --------------------------------------------------------------------


async def test_limits_come_from_client_config_and_call(fake: FakeProvider) -> None:
    config = {
        "model_list": [
            {
                "model_name": "cfg",
                "params": {
                    "model": "openai/m",
                    "api_base": fake.openai_base,
                    "api_key": "cfg-key",
                    "rpm": 120,
                    "max_parallel_requests": 3,
                },
            }
        ]
    }
    async with salvo.Client(config=config, limits={"rpm": 600, "tpm": 90_000}) as client:
        await client.acompletion("cfg", MSGS)
        await client.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k2")
        await client.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k3", rpm=30)
        specs = {
            (s.rpm, s.tpm, s.max_parallel_requests) for s in client.statistics().limiters.values()
        }
    assert specs == {(120, 90_000, 3), (600, 90_000, None), (30, 90_000, None)}


def test_a_later_call_reconfigures_only_what_it_sets() -> None:
    limiters = Limiters(LimitSpec(rpm=600))
    first = limiters.get("key", LimitSpec(max_parallel_requests=4))
    assert first.spec == LimitSpec(600, None, 4)
    assert limiters.get("key", LimitSpec()) is first and first.spec == LimitSpec(600, None, 4)
    assert limiters.get("key", LimitSpec(rpm=60)) is first
    assert first.spec == LimitSpec(60, None, 4)


def test_bad_limits_are_config_errors() -> None:
    with pytest.raises(salvo.ConfigError, match="Unknown limit"):
        salvo.Client(limits={"rmp": 5})
    with pytest.raises(salvo.ConfigError, match="rpm must be"):
        salvo.Client(limits={"rpm": -1})


# -- one loop per client -----------------------------------------------------------------------


def test_a_client_belongs_to_one_event_loop() -> None:
    async def run() -> None:
        async with FakeProvider() as fake, salvo.Client() as client:
            kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k"}
            await client.acompletion("openai/m", MSGS, **kw)
            errors: list[BaseException] = []

            def elsewhere() -> None:
                try:
                    asyncio.run(client.acompletion("openai/m", MSGS, **kw))
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=elsewhere)
            thread.start()
            await asyncio.to_thread(thread.join)
            (err,) = errors
            assert isinstance(err, salvo.SalvoError)
            assert "another event loop" in str(err) and "one Client per event loop" in str(err)
            assert len(fake.records_for("m")) == 1  # nothing was sent from the other loop
            await client.acompletion("openai/m", MSGS, **kw)  # still fine on its own loop

    asyncio.run(run())  # a real loop: the test waits on a thread


# -- a key pause past the call's deadline (fails at once) ---------------------------------------


async def test_a_key_pause_past_the_deadline_fails_at_once_with_retry_after() -> None:
    limiter = KeyLimiter(LimitSpec(rpm=600))
    limiter.pause(60.0)
    t0 = now()
    with pytest.raises(salvo.RateLimitError) as info:
        await limiter.acquire(deadline=t0 + 5.0)
    assert now() == t0 and info.value.retry_after == pytest.approx(60.0)
    await limiter.acquire(deadline=t0 + 61.0)  # a deadline after the pause: it waits it out
    assert now() - t0 == pytest.approx(60.0)


async def test_a_pause_that_starts_while_waiting_fails_the_waiter_at_once() -> None:
    limiter = KeyLimiter(LimitSpec(rpm=60))  # one a second
    await limiter.acquire()
    t0 = now()
    waiter = asyncio.create_task(limiter.acquire(deadline=t0 + 10.0))
    await asyncio.sleep(0.5)
    limiter.pause(30.0)
    with pytest.raises(salvo.RateLimitError):
        await waiter
    assert now() - t0 == pytest.approx(1.0)  # it failed when it next looked, not at 10 s
    assert limiter.in_flight == 1 and limiter.waiting == 0


async def test_retry_after_99999_fails_the_others_at_once_and_pauses_max_retry_after(
    fake: FakeProvider,
) -> None:
    fake.script("m", [Behavior(status=429, headers={"retry-after": "99999"}), Behavior()])
    kw = {"api_base": fake.openai_base, "api_key": "k"}
    async with salvo.Client(timeout=30) as client:
        with pytest.raises(salvo.RateLimitError) as first:
            await client.acompletion("openai/m", MSGS, **kw)
        assert first.value.retry_after == 99999
        t0 = now()
        with pytest.raises(salvo.RateLimitError) as other:
            await client.acompletion("openai/n", MSGS, **kw)  # 30 s deadline, 60 s pause
        assert round(now() - t0, 3) == 0.0
        assert other.value.retry_after == pytest.approx(60.0, abs=0.01)
        assert (other.value.provider, other.value.model) == ("openai", "n")
        assert fake.records_for("n") == []
        assert client.statistics().errors["RateLimitError"] == 2
        resp = await client.acompletion("openai/n", MSGS, timeout=120, **kw)
        assert resp.content and round(now() - t0) == 60  # paused max_retry_after, not 99999 s


# -- Limiters stays bounded under one-off API keys ---------------------------------------------


def test_100000_distinct_keys_stay_within_a_few_mb() -> None:
    import tracemalloc

    async def run() -> int:
        limiters = Limiters(LimitSpec(max_parallel_requests=4))
        kept = limiters.get(("openai", "b", "kept"))
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            lim = limiters.get(("openai", "b", f"sk-user-{i}"))
            await lim.acquire(10)
            lim.release(10, 12)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert limiters.get(("openai", "b", "kept")) is kept  # still referenced: the same one
        assert len(limiters.all()) < 3000
        return grown

    grown = asyncio.run(run())
    assert grown < 3_000_000, grown


async def test_a_limiter_that_is_not_at_rest_is_kept() -> None:
    limiters = Limiters(LimitSpec(rpm=60))
    busy = limiters.get(("p", "b", "busy"))
    await busy.acquire()  # in flight
    paced = limiters.get(("p", "b", "paced"))
    await paced.acquire()
    paced.release()  # its rpm bucket is full for a second
    for i in range(5000):
        limiters.get(("p", "b", str(i)))
    assert limiters.all()[("p", "b", "busy")] is busy
    assert limiters.all()[("p", "b", "paced")] is paced
    del busy, paced
    await asyncio.sleep(1.5)
    for i in range(5000, 12000):
        limiters.get(("p", "b", str(i)))
    assert ("p", "b", "paced") not in limiters.all()  # at rest and unreferenced: dropped
    assert ("p", "b", "busy") in limiters.all()  # still in flight: kept
