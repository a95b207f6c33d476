"""Edges of a CompletionStream (``_stream``) no other test pinned down: ``collect()`` assembling
streamed tool calls piece by piece, ``collect()`` of a stream already read to its end, the
chunk count and each chunk's latency, the state before the first read, an event over
``max_event_bytes`` naming its provider, and an in-stream error masked of the call's key.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11). They run on the virtual clock against the fake provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from _virtual_clock import with_sockets
from salvo.testing import Behavior, FakeProvider, ToolCallSpec

MSGS = [{"role": "user", "content": "hi"}]
KEY = "sk-live-0123456789abcdef"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def kw(fake: FakeProvider) -> dict[str, Any]:
    return {"api_base": fake.openai_base, "api_key": KEY}


async def test_collect_assembles_streamed_tool_calls(fake: FakeProvider) -> None:
    calls = [
        ToolCallSpec(
            name="get_weather", arguments='{"city": "Paris", "unit": "celsius"}', id="call_1"
        ),
        ToolCallSpec(name="get_time", arguments='{"tz": "Europe/Paris"}', id="call_2"),
    ]
    fake.script("m", Behavior(tool_calls=calls))
    async with salvo.Client(max_retries=0) as client:
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
        resp = await stream.collect()
    assert resp.created > 0 and resp.model == "m"  # from the chunks
    (choice,) = resp.choices
    assert choice.index == 0 and choice.message.content is None
    got = [(t.id, t.function.name, t.function.arguments) for t in choice.message.tool_calls or []]
    assert got == [
        ("call_1", "get_weather", '{"city": "Paris", "unit": "celsius"}'),
        ("call_2", "get_time", '{"tz": "Europe/Paris"}'),
    ]
    assert choice.finish_reason == "tool_calls"


async def test_collect_of_a_stream_read_to_its_end_is_an_empty_answer(fake: FakeProvider) -> None:
    fake.script("m", Behavior(text="a b c"))
    async with salvo.Client(max_retries=0) as client:
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
        chunks = [c async for c in stream]
        assert chunks
        resp = await stream.collect()  # nothing left to collect
    assert (resp.id, resp.created, resp.model, resp.usage) == ("", 0, "m", None)
    (choice,) = resp.choices
    assert choice.index == 0 and choice.finish_reason is None
    assert choice.message.content is None and choice.message.tool_calls is None


async def test_collect_without_usage_has_none(fake: FakeProvider) -> None:
    fake.script("m", Behavior(text="a b c", include_usage=False))
    async with salvo.Client(max_retries=0) as client:
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
        resp = await stream.collect()
    assert resp.content == "a b c" and resp.usage is None


async def test_chunk_count_latency_and_state_before_reading(fake: FakeProvider) -> None:
    fake.script("m", Behavior(text="a b c d", chunks=4, first_chunk_delay=1.0, chunk_interval=0.5))
    async with salvo.Client(max_retries=0) as client:
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
        assert stream.closed is False and stream.usage is None
        chunks = [c async for c in stream]
    assert stream.chunks_received == len(chunks) and len(chunks) >= 4
    first, last = chunks[0].latency_s, chunks[-1].latency_s
    assert first is not None and last is not None
    # seconds since the call started, on the virtual clock: the delays the fake was told
    assert 1.0 <= first < 1.1 and first < last < 10


async def test_an_event_over_max_event_bytes_names_the_provider(fake: FakeProvider) -> None:
    # written in two halves, so the first half waits in the buffer (a whole event that comes
    # in one read is already in memory: the limit is on what salvo buffers)
    fake.script("m", Behavior(text="x" * 5000, chunks=1, split_writes=True))
    async with salvo.Client(max_retries=0, max_event_bytes=1024) as client:
        with pytest.raises(salvo.StreamError) as info:
            stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
            async with stream:
                async for _ in stream:
                    pass
    assert (info.value.provider, info.value.model) == ("openai", "m")


async def test_an_in_stream_error_is_masked_of_the_key(fake: FakeProvider) -> None:
    fake.script(
        "m",
        Behavior(fault="midstream_error", fault_after=1, error_message=f"upstream saw {KEY}"),
    )
    async with salvo.Client(max_retries=0) as client:
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw(fake))
        with pytest.raises(salvo.SalvoError) as info:
            async with stream:
                async for _ in stream:
                    pass
    assert KEY not in str(info.value) and "sk-...cdef" in str(info.value)
