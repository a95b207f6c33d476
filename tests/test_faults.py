"""Every fault mode of the fake provider, through salvo: the exact error class a caller gets,
whether salvo retried it, and a message that says what happened and what to do.

| fault             | error                      | retried                               |
|-------------------|----------------------------|---------------------------------------|
| reset_before_body | ConnectionError            | yes                                   |
| reset_mid_body    | ConnectionError            | yes (streams: until the first chunk)  |
| truncated_json    | ResponseDecodeError        | no (streams: StreamError, retried     |
|                   |                            | until the first chunk)                |
| html_error        | ServerError (502)          | yes                                   |
| no_terminator     | StreamError                | until the first chunk                 |
| midstream_error   | StreamError                | until the first chunk                 |
| stall             | TimeoutError               | yes (first_byte / stream_idle)        |
| drip              | none: slow but complete    | a deadline still applies              |

The tests run on a virtual clock, so stalls and drips cost no real time.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from _virtual_clock import VirtualClockLoop, with_sockets
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]
PROVIDERS = ["openai", "anthropic", "gemini", "cohere"]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[salvo.Client]:
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as c:
        yield c


#: Drips make a timer per 5 bytes; their next timer is always near, so a short grace is safe.
drip_loop = functools.partial(VirtualClockLoop, grace=0.001)


def call_kw(fake: FakeProvider, provider: str = "openai", **extra: Any) -> dict[str, Any]:
    base = {
        "openai": fake.openai_base,
        "anthropic": fake.anthropic_base,
        "gemini": fake.gemini_base,
        "cohere": fake.cohere_base,
    }[provider]
    return {"api_base": base, "api_key": "k", "max_tokens": 50, **extra}


async def complete(client: salvo.Client, fake: FakeProvider, provider: str, **extra: Any) -> Any:
    return await client.acompletion(f"{provider}/m", MSGS, **call_kw(fake, provider, **extra))


async def stream_text(
    client: salvo.Client, fake: FakeProvider, provider: str = "openai", **extra: Any
) -> str:
    stream = await client.acompletion(
        f"{provider}/m", MSGS, stream=True, **call_kw(fake, provider, **extra)
    )
    return (await stream.collect()).content or ""


def is_exactly(err: BaseException, cls: type[BaseException]) -> None:
    assert type(err) is cls, f"{type(err).__name__}: {err}"


# -- connection resets ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["reset_before_body", "reset_mid_body"])
async def test_a_reset_is_a_connection_error_and_is_retried(
    fake: FakeProvider, client: salvo.Client, provider: str, fault: str
) -> None:
    fake.script("m", Behavior(fault=fault))
    with pytest.raises(salvo.ConnectionError) as info:
        await complete(client, fake, provider)
    err = info.value
    is_exactly(err, salvo.ConnectionError)
    msg = str(err)
    assert f"The connection to {provider} broke while the response for model 'm'" in msg
    assert "connection reset by peer" in msg and "salvo retries it" in msg
    assert "check any proxy" in msg  # what to do when it persists
    assert "salvo gave up after 3 attempt(s)" in err.__notes__[0]
    assert len(fake.records_for("m")) == 3
    assert all(r.aborted is not None for r in fake.records_for("m"))

    fake.reset()
    fake.script("m", [Behavior(fault=fault), Behavior(text="second try")])
    assert (await complete(client, fake, provider)).content == "second try"


async def test_a_reset_after_a_delivered_chunk_ends_the_stream(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(chunks=5, fault="reset_mid_body", fault_after=2, chunk_interval=0.1))
    stream = await client.acompletion("openai/m", MSGS, stream=True, **call_kw(fake))
    first = await stream.__anext__()
    assert first.choices
    with pytest.raises(salvo.ConnectionError, match="broke while the response"):
        async for _ in stream:
            pass
    assert len(fake.records_for("m")) == 1  # a delivered chunk is never replayed


# -- truncated JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_truncated_json_is_a_decode_error_and_not_retried(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    fake.script("m", Behavior(fault="truncated_json"))
    with pytest.raises(salvo.ResponseDecodeError) as info:
        await complete(client, fake, provider)
    err = info.value
    assert isinstance(err, salvo.TransportError)
    assert f"{provider} sent a response for model 'm' that is not" in str(err)
    assert "cut short" in str(err) and "salvo does not retry this" in str(err)
    assert "retry the call yourself" in str(err)
    assert len(fake.records_for("m")) == 1


async def test_a_truncated_stream_event_is_a_stream_error(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(chunks=4, fault="truncated_json", fault_after=2))
    with pytest.raises(salvo.StreamError) as info:
        await stream_text(client, fake)
    is_exactly(info.value, salvo.StreamError)
    assert "carried an unreadable stream event" in str(info.value)
    assert "the answer is incomplete. Retry the call" in str(info.value)
    assert len(fake.records_for("m")) == 1  # chunks came before it: not retried

    fake.reset()
    fake.script("m", [Behavior(fault="truncated_json", fault_after=0), Behavior(text="whole")])
    assert await stream_text(client, fake) == "whole"  # nothing delivered yet: retried


# -- an HTML error page -------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_an_html_502_is_a_server_error_that_says_so(
    fake: FakeProvider, client: salvo.Client, provider: str, stream: bool
) -> None:
    fake.script("m", Behavior(fault="html_error"))
    with pytest.raises(salvo.ServerError) as info:
        if stream:
            await stream_text(client, fake, provider)
        else:
            await complete(client, fake, provider)
    err = info.value
    is_exactly(err, salvo.ServerError)
    assert err.status_code == 502 and err.provider == provider and err.model == "m"
    assert "the response was an HTML page, not JSON (a proxy or gateway error)." in str(err)
    assert "failed, not your request; salvo retries this" in str(err)
    assert isinstance(err.body, str) and "502 Bad Gateway" in err.body
    assert len(fake.records_for("m")) == 3


# -- streams that end badly ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_without_its_terminator_is_a_stream_error(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    fake.script("m", Behavior(text="one two three", chunks=3, fault="no_terminator"))
    stream = await client.acompletion(f"{provider}/m", MSGS, stream=True, **call_kw(fake, provider))
    text = ""
    with pytest.raises(salvo.StreamError) as info:
        async for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
    is_exactly(info.value, salvo.StreamError)
    assert text == "one two three"  # every chunk that came was handed out first
    msg = str(info.value)
    assert "ended without its terminator" in msg and "may be incomplete. Retry the call" in msg
    assert len(fake.records_for("m")) == 1


async def test_a_midstream_error_event_is_a_stream_error_not_retried_after_a_chunk(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(chunks=4, fault="midstream_error", fault_after=1))
    with pytest.raises(salvo.StreamError) as info:
        await stream_text(client, fake)
    is_exactly(info.value, salvo.StreamError)
    assert "carried an error event: The server had an error" in str(info.value)
    assert "the answer is incomplete. Retry the call" in str(info.value)
    assert len(fake.records_for("m")) == 1


@pytest.mark.parametrize("fault", ["no_terminator", "midstream_error"])
async def test_stream_only_faults_leave_plain_answers_alone(
    fake: FakeProvider, client: salvo.Client, fault: str
) -> None:
    fake.script("m", Behavior(text="fine", fault=fault))
    assert (await complete(client, fake, "openai")).content == "fine"


# -- a stalled server ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stall_hits_first_byte_timeout_and_is_retried(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    fake.script("m", Behavior(fault="stall", stall_s=60))
    with pytest.raises(salvo.TimeoutError) as info:
        await complete(client, fake, provider, first_byte_timeout=2.0)
    err = info.value
    is_exactly(err, salvo.TimeoutError)
    assert isinstance(err, builtins.TimeoutError)
    assert f"{provider} sent nothing for model 'm' within first_byte_timeout=2 s" in str(err)
    assert "Raise first_byte_timeout=..." in str(err)
    recs = fake.records_for("m")
    assert len(recs) == 3
    for rec in recs:
        assert (await fake.wait_until_closed(rec)).disconnected is not None


async def test_a_stalled_stream_hits_stream_idle_timeout(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", [Behavior(fault="stall", stall_s=60), Behavior(text="awake")])
    assert await stream_text(client, fake, stream_idle_timeout=3.0) == "awake"
    fake.reset()
    fake.script("m", Behavior(fault="stall", stall_s=60))
    with pytest.raises(salvo.TimeoutError, match=r"sent nothing for 3 s \(stream_idle_timeout\)"):
        await stream_text(client, fake, stream_idle_timeout=3.0)
    assert len(fake.records_for("m")) == 3


async def test_a_stall_without_finer_timeouts_ends_at_the_deadline(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(fault="stall", stall_s=60))
    with pytest.raises(salvo.TimeoutError, match="within its 10 s deadline") as info:
        await complete(client, fake, "openai", timeout=10)
    assert "attempt 1 of 3" in str(info.value)
    rec = await fake.wait_until_closed(fake.records_for("m")[0])
    assert rec.disconnected is not None and rec.completed is None


# -- a dripping server --------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"loop_factory": drip_loop})])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_drip_is_slow_but_complete(
    fake: FakeProvider, client: salvo.Client, provider: str, stream: bool
) -> None:
    fake.script("m", Behavior(text="drop by drop", fault="drip", chunk_interval=0.05))
    extra = {"first_byte_timeout": 1.0, "stream_idle_timeout": 1.0}
    if stream:
        assert await stream_text(client, fake, provider, **extra) == "drop by drop"
    else:
        assert (await complete(client, fake, provider, **extra)).content == "drop by drop"
    assert len(fake.records_for("m")) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_drip_past_the_deadline_is_a_timeout(
    fake: FakeProvider, client: salvo.Client, stream: bool
) -> None:
    fake.script("m", Behavior(fault="drip", chunk_interval=0.5))
    with pytest.raises(salvo.TimeoutError, match="5 s deadline"):
        if stream:
            await stream_text(client, fake, timeout=5)
        else:
            await complete(client, fake, "openai", timeout=5)
    rec = await fake.wait_until_closed(fake.records_for("m")[0])
    assert rec.disconnected is not None and rec.completed is None
