"""Retries and deadlines: which errors are retried and after how long, the retry budget per
client and per call, the deadline around the whole call (retries included), first-byte and
stream-idle timeouts, streams retried only before their first chunk, logs and statistics.

The end-to-end tests run on a virtual clock (`VirtualClockLoop`): the fake provider's latency,
salvo's backoff sleeps and deadlines all happen in virtual time, so the times below are exact
and nothing really sleeps.
"""

from __future__ import annotations

import asyncio
import builtins
import email.utils
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

import salvo
from _virtual_clock import with_sockets
from salvo._errors import error_for_status
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[salvo.Client]:
    async with salvo.Client(retry_policy=salvo.RetryPolicy(seed=7)) as c:
        yield c


def kw(fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    return {"api_base": fake.openai_base, "api_key": "k", **extra}


def now() -> float:
    return asyncio.get_running_loop().time()


def provider_error(status: int, *, retry_after: float | None = None, **kw: Any) -> Any:
    cls = error_for_status(status)
    return cls("boom", status_code=status, provider="p", model="m", retry_after=retry_after, **kw)


# -- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_policy_retries_transient_statuses(status: int) -> None:
    assert salvo.RetryPolicy().is_retryable(provider_error(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_policy_does_not_retry_the_callers_mistakes(status: int) -> None:
    assert not salvo.RetryPolicy().is_retryable(provider_error(status))


def test_policy_obeys_x_should_retry_and_skips_exhausted_quota() -> None:
    policy = salvo.RetryPolicy()
    assert policy.is_retryable(provider_error(400, should_retry=True))
    assert not policy.is_retryable(provider_error(503, should_retry=False))
    quota = provider_error(429, body={"code": "insufficient_quota", "type": "insufficient_quota"})
    assert not policy.is_retryable(quota)


def test_policy_on_transport_errors() -> None:
    policy = salvo.RetryPolicy()
    for cls in (salvo.ConnectionError, salvo.TimeoutError, salvo.StreamError):
        assert policy.is_retryable(cls("x"))
    # A 2xx body that is not the promised JSON: the work was done (and billed); not retried.
    assert not policy.is_retryable(salvo.ResponseDecodeError("x"))


def test_server_delay_wins_and_is_capped() -> None:
    policy = salvo.RetryPolicy(seed=1)
    assert policy.delay(provider_error(429, retry_after=3.5), 0) == 3.5
    assert policy.delay(provider_error(503, retry_after=60.0), 5) == 60.0
    assert policy.delay(provider_error(429, retry_after=61.0), 0) is None  # longer: give up now
    assert salvo.RetryPolicy(max_retry_after=120).delay(provider_error(429, retry_after=90), 0)
    assert policy.key_pause(provider_error(429, retry_after=2.0)) == 2.0
    assert policy.key_pause(provider_error(429, retry_after=500.0)) == 60.0
    assert policy.key_pause(provider_error(503, retry_after=2.0)) == 0.0  # only 429s pause keys


def test_backoff_doubles_with_jitter_up_to_a_cap() -> None:
    policy = salvo.RetryPolicy(seed=3)
    err = provider_error(503)
    for n in range(8):
        base = min(0.5 * 2**n, 8.0)
        for _ in range(50):
            delay = policy.delay(err, n)
            assert delay is not None and 0.75 * base <= delay <= base


def test_wait_false_keeps_decisions_but_waits_nothing() -> None:
    policy = salvo.RetryPolicy(wait=False)
    assert policy.delay(provider_error(503), 3) == 0.0
    assert policy.delay(provider_error(429, retry_after=5.0), 0) == 0.0
    assert policy.delay(provider_error(429, retry_after=500.0), 0) is None
    assert policy.delay(provider_error(400), 0) is None
    assert policy.key_pause(provider_error(429, retry_after=5.0)) == 0.0


# -- waits, end to end --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5, 1.501),  # -ms wins
        ({"retry-after": "2"}, 2.0, 2.001),
        ({"retry-after": "<date in 3 s>"}, 1.9, 3.1),  # HTTP dates have whole seconds
    ],
)
async def test_retry_waits_what_the_server_asks(
    fake: FakeProvider, client: salvo.Client, headers: dict[str, str], low: float, high: float
) -> None:
    if headers.get("retry-after") == "<date in 3 s>":
        headers = {"retry-after": email.utils.formatdate(time.time() + 3, usegmt=True)}
    fake.script("m", [Behavior(status=503, headers=headers), Behavior(text="ok")])
    t0 = now()
    resp = await client.acompletion("openai/m", MSGS, **kw(fake))
    assert resp.content == "ok"
    assert low <= now() - t0 <= high


async def test_backoff_when_the_server_gives_no_delay(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", [Behavior(status=500), Behavior(status=502), Behavior(text="ok")])
    t0 = now()
    await client.acompletion("openai/m", MSGS, **kw(fake))
    assert 0.375 + 0.75 <= now() - t0 <= 0.5 + 1.0 + 0.001  # 0.5 s then 1 s, less jitter


async def test_a_longer_server_delay_than_the_cap_raises_at_once(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(status=429, headers={"retry-after": "300"}))
    t0 = now()
    with pytest.raises(salvo.RateLimitError) as info:
        await client.acompletion("openai/m", MSGS, **kw(fake))
    assert now() - t0 < 0.01
    assert info.value.retry_after == 300.0
    assert "asked to wait 300 s" in "".join(info.value.__notes__)
    assert len(fake.records_for("m")) == 1


# -- the retry budget -----------------------------------------------------------------------------


async def test_max_retries_default_per_client_and_per_call(fake: FakeProvider) -> None:
    fake.default = Behavior(status=503, headers={"retry-after-ms": "10"})
    async with salvo.Client() as default, salvo.Client(max_retries=0) as none:
        for c, model, extra, attempts in [
            (default, "a", {}, 3),  # max_retries=2 by default
            (none, "b", {}, 1),
            (none, "c", {"max_retries": 4}, 5),  # the call's own budget wins
            (default, "d", {"max_retries": 1}, 2),
        ]:
            with pytest.raises(salvo.ServerError) as info:
                await c.acompletion(f"openai/{model}", MSGS, **kw(fake, **extra))
            assert len(fake.records_for(model)) == attempts, model
            assert f"salvo gave up after {attempts} attempt(s)" in info.value.__notes__[0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(
    fake: FakeProvider, client: salvo.Client, status: int
) -> None:
    fake.script("m", Behavior(status=status))
    with pytest.raises(salvo.ProviderError):
        await client.acompletion("openai/m", MSGS, **kw(fake))
    assert len(fake.records_for("m")) == 1


async def test_x_should_retry_is_obeyed(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("yes", [Behavior(status=400, headers={"x-should-retry": "true"}), Behavior()])
    fake.script("no", Behavior(status=503, headers={"x-should-retry": "false"}))
    await client.acompletion("openai/yes", MSGS, **kw(fake))
    assert [r.status for r in fake.records_for("yes")] == [400, 200]
    with pytest.raises(salvo.ServerError):
        await client.acompletion("openai/no", MSGS, **kw(fake))
    assert len(fake.records_for("no")) == 1


# -- deadlines ----------------------------------------------------------------------------------


async def test_timeout_is_the_whole_calls_deadline_retries_included(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(status=503, latency=0.8, headers={"retry-after-ms": "100"}))
    t0 = now()
    with pytest.raises(salvo.TimeoutError) as info:
        await client.acompletion("openai/m", MSGS, **kw(fake, timeout=2.0))
    assert round(now() - t0, 3) == 2.0
    err = info.value
    assert isinstance(err, builtins.TimeoutError) and isinstance(err, salvo.TransportError)
    assert "within its 2 s deadline" in str(err) and "attempt 3 of 3" in str(err)
    assert "timeout=..." in str(err)
    recs = fake.records_for("m")
    assert len(recs) == 3
    last = await fake.wait_until_closed(recs[-1])
    assert last.disconnected is not None and last.completed is None  # closed, not drained


async def test_a_retry_that_would_outlive_the_deadline_is_not_attempted(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(status=503, headers={"retry-after": "2"}))
    t0 = now()
    with pytest.raises(salvo.ServerError) as info:
        await client.acompletion("openai/m", MSGS, **kw(fake, timeout=1.0))
    assert now() - t0 < 0.01  # no pointless wait
    assert "after the call's deadline" in info.value.__notes__[0]
    assert len(fake.records_for("m")) == 1


async def test_the_deadline_counts_the_wait_for_the_limiter(fake: FakeProvider) -> None:
    async with salvo.Client() as client:
        await client.acompletion("openai/m", MSGS, **kw(fake, rpm=60))
        with pytest.raises(salvo.TimeoutError, match="waiting for the key's rate limits"):
            await client.acompletion("openai/m", MSGS, **kw(fake, rpm=60, timeout=0.5))
    assert len(fake.records_for("m")) == 1


async def test_first_byte_timeout_applies_to_each_attempt(fake: FakeProvider) -> None:
    fake.script("m", Behavior(fault="stall", stall_s=30))
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as client:
        t0 = now()
        with pytest.raises(salvo.TimeoutError, match=r"first_byte_timeout=0\.5 s") as info:
            await client.acompletion("openai/m", MSGS, **kw(fake, first_byte_timeout=0.5))
        assert round(now() - t0, 3) == 1.5  # 3 attempts of 0.5 s
    assert isinstance(info.value, builtins.TimeoutError)
    recs = fake.records_for("m")
    assert len(recs) == 3
    for rec in recs:
        assert rec.first_byte is not None  # the headers came; the body did not
        assert (await fake.wait_until_closed(rec)).disconnected is not None


# -- streams ------------------------------------------------------------------------------------


async def test_a_stream_is_retried_before_its_first_chunk(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script(
        "m",
        [
            Behavior(fault="midstream_error", fault_after=0),  # an error event, no chunk yet
            Behavior(fault="reset_before_body"),
            Behavior(text="third time lucky"),
        ],
    )
    stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
    assert (await stream.collect()).content == "third time lucky"
    assert len(fake.records_for("m")) == 3


async def test_a_stream_is_not_retried_once_a_chunk_was_delivered(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(chunks=6, fault="midstream_error", fault_after=2, chunk_interval=0.1))
    stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
    got = [await stream.__anext__(), await stream.__anext__()]
    assert all(c.choices for c in got)
    with pytest.raises(salvo.StreamError, match="carried an error event"):
        await stream.__anext__()
    assert len(fake.records_for("m")) == 1
    assert client.statistics().retries == 0


async def test_stream_idle_timeout_between_chunks(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("m", Behavior(chunks=4, chunk_interval=5.0))
    stream = await client.acompletion(
        "openai/m", MSGS, stream=True, **kw(fake, stream_idle_timeout=1.0)
    )
    await stream.__anext__()
    t0 = now()
    with pytest.raises(salvo.TimeoutError, match=r"nothing for 1 s \(stream_idle_timeout\)"):
        async for _ in stream:
            pass
    assert round(now() - t0, 3) == 1.0
    rec = await fake.wait_until_closed(fake.records_for("m")[0])
    assert rec.disconnected is not None and rec.completed is None
    assert client.statistics().in_flight == 0  # the stream gave its limiter place back


async def test_stream_idle_timeout_set_on_the_client(fake: FakeProvider) -> None:
    fake.script("m", Behavior(chunks=4, chunk_interval=5.0))
    async with salvo.Client(stream_idle_timeout=1.0) as client:
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
        with pytest.raises(salvo.TimeoutError, match="stream_idle_timeout"):
            await stream.collect()


async def test_the_deadline_bounds_reading_a_stream(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(chunks=10, chunk_interval=0.5))
    t0 = now()
    stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake, timeout=2.0))
    with pytest.raises(salvo.TimeoutError, match="did not finish within the call's 2 s deadline"):
        await stream.collect()
    assert round(now() - t0, 3) == 2.0
    rec = await fake.wait_until_closed(fake.records_for("m")[0])
    assert rec.disconnected is not None and rec.completed is None


# -- logs and statistics ------------------------------------------------------------------------


async def test_retries_log_at_info_and_give_ups_at_warning(
    fake: FakeProvider, client: salvo.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="salvo")
    fake.script("flaky", [Behavior(status=503, headers={"retry-after-ms": "5"}), Behavior()])
    fake.script("down", Behavior(status=529, headers={"retry-after-ms": "5"}))
    fake.script("bad", Behavior(status=400))
    await client.acompletion("openai/flaky", MSGS, **kw(fake))
    with pytest.raises(salvo.ServerError):
        await client.acompletion("openai/down", MSGS, **kw(fake, max_retries=1))
    with pytest.raises(salvo.BadRequestError):
        await client.acompletion("openai/bad", MSGS, **kw(fake))

    salvo_records = [r for r in caplog.records if r.name == "salvo"]
    info = [r for r in salvo_records if r.levelno == logging.INFO]
    warn = [r for r in salvo_records if r.levelno == logging.WARNING]
    debug = [r for r in salvo_records if r.levelno == logging.DEBUG]
    assert [r.getMessage() for r in info] == [
        "retrying openai model 'flaky' in 0.01 s after HTTP 503 (ServerError) (retry 1 of 2)",
        "retrying openai model 'down' in 0.01 s after HTTP 529 (ServerError) (retry 1 of 1)",
    ]
    assert (info[0].provider, info[0].model, info[0].status_code, info[0].attempt) == (
        "openai",
        "flaky",
        503,
        1,
    )
    (give_up,) = warn
    assert give_up.getMessage().startswith(
        "giving up on openai model 'down' after 2 attempt(s) (max_retries=1): HTTP 529"
    )
    assert give_up.status_code == 529
    assert [r.status_code for r in debug] == [400]  # not retryable: not a give-up


async def test_statistics_snapshot(fake: FakeProvider) -> None:
    fake.script("m", [Behavior(status=503, headers={"retry-after-ms": "1"}), Behavior()])
    fake.script("gone", Behavior(status=404))
    async with salvo.Client() as client:
        await client.acompletion("openai/m", MSGS, **kw(fake))
        with pytest.raises(salvo.NotFoundError):
            await client.acompletion("openai/gone", MSGS, **kw(fake))
        stats = client.statistics()
        assert (stats.requests, stats.retries, stats.in_flight) == (3, 1, 0)
        assert stats.errors == {"ServerError": 1, "NotFoundError": 1}
        assert stats.connections_open >= 1  # kept alive in the pool
        (lim,) = stats.limiters.values()
        assert (lim.in_flight, lim.waiting, lim.paused_for) == (0, 0, 0.0)
        with pytest.raises(AttributeError):
            stats.retries = 5  # type: ignore[misc]
        assert msgspec.json.decode(msgspec.json.encode(stats))["retries"] == 1
    assert client.statistics().connections_open == 0
