"""Edges of what ``Client.send`` hands back (``_response``) no other test pinned down: the
public attributes of a Response and a ResponseStream, the state its repr shows, the usage a
second close callback must not take from the limiter's, a broken stream naming its provider,
and the warning of a stream dropped unclosed: where it points, what it carries, and a stream
dropped on another thread giving its slot back on the loop's thread.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

import salvo
from salvo import HTTPRequest, Route
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def _chat(route: Route, *, stream: bool = False) -> HTTPRequest:
    payload = {"model": route.model, "messages": MSGS, "stream": stream}
    url = f"{route.dep.endpoint.api_base}/chat/completions"
    return HTTPRequest("POST", url, route.dep.headers, msgspec.json.encode(payload))


async def test_a_response_and_a_stream_carry_url_provider_and_model(fake: FakeProvider) -> None:
    fake.script("m", Behavior(text="a b", chunks=2))
    async with salvo.Client(max_retries=0) as client:
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        req = _chat(route)
        resp = await client.send(req, route)
        assert (resp.status, resp.url) == (200, req.url)
        stream = await client.send(_chat(route, stream=True), route, stream=True)
        assert (stream.provider, stream.model) == ("openai", "m")
        assert repr(stream) == "<salvo.ResponseStream 200 open openai/m>"
        await stream.aclose()
        assert repr(stream) == "<salvo.ResponseStream 200 closed openai/m>"


async def test_a_second_close_callback_leaves_the_limiter_its_usage(fake: FakeProvider) -> None:
    fake.script("m", Behavior(text="a b", chunks=2, chunk_interval=0.5))
    async with salvo.Client(max_retries=0) as client:
        route = client.route(
            "openai/m", {"api_base": fake.openai_base, "api_key": "k", "tpm": 600_000}
        )
        stream = await client.send(_chat(route, stream=True), route, stream=True, tokens=10)
        got: list[int | None] = []
        stream.add_close_callback(got.append)  # after the limiter slot's own callback
        stream.used_tokens = 5000
        await stream.aclose()
        assert got == [5000]
        assert route.limiter.statistics().tokens_owed == 5000 - 10  # the slot got it too
        assert route.limiter.in_flight == 0


async def test_a_stream_broken_midway_names_its_provider(fake: FakeProvider) -> None:
    fake.script("m", Behavior(chunks=4, fault="reset_mid_body", fault_after=1))
    async with salvo.Client(max_retries=0) as client:
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        stream = await client.send(_chat(route, stream=True), route, stream=True)
        with pytest.raises(salvo.ConnectionError) as info:
            async with stream:
                async for _ in stream:
                    pass
    assert (info.value.provider, info.value.model) == ("openai", "m")
    assert "openai" in str(info.value)


async def test_the_unclosed_warning_points_at_the_line_that_dropped_the_stream(
    fake: FakeProvider,
) -> None:
    fake.script("m", Behavior(text="a b", chunks=2, chunk_interval=0.5))
    async with salvo.Client(max_retries=0) as client:
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        stream = await client.send(_chat(route, stream=True), route, stream=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del stream  # the last reference: the stream is finalized on this line
        (w,) = [w for w in caught if issubclass(w.category, ResourceWarning)]
        # the user's line, not salvo's (mutmut's trampoline, when present, is one frame more)
        assert not w.filename.startswith(str(Path(salvo.__file__).parent))
        if "mutmut" not in w.filename:
            assert w.filename == __file__
        assert isinstance(w.source, salvo.ResponseStream)  # tracemalloc can say where it was made
        del w, caught
        gc.collect()
        assert route.limiter.in_flight == 0


async def test_a_stream_dropped_on_another_thread_gives_its_slot_back_on_the_loop(
    fake: FakeProvider,
) -> None:
    fake.script("m", Behavior(text="a b", chunks=2, chunk_interval=0.5))
    async with salvo.Client(max_retries=0) as client:
        params = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 1}
        route = client.route("openai/m", params)
        holder = [await client.send(_chat(route, stream=True), route, stream=True)]
        assert route.limiter.in_flight == 1
        seen: list[warnings.WarningMessage] = []

        def drop() -> None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                holder.clear()  # the last reference, finalized on this thread
            seen.extend(caught)

        thread = threading.Thread(target=drop)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        for _ in range(10):
            await asyncio.sleep(0.01)  # the close scheduled onto the loop's thread runs
        assert [w.category for w in seen] == [ResourceWarning]
        seen.clear()
        assert route.limiter.in_flight == 0
        (rec,) = fake.records
        await fake.wait_until_closed(rec, timeout=2.0)
        assert rec.disconnected is not None


async def test_the_deadline_wins_over_a_later_idle_timeout(fake: FakeProvider) -> None:
    fake.script("m", Behavior(chunks=3, chunk_interval=1.0))
    async with salvo.Client(max_retries=0) as client:
        params = {"api_base": fake.openai_base, "api_key": "k", "timeout": 0.3}
        route = client.route("openai/m", {**params, "stream_idle_timeout": 5.0})
        stream = await client.send(_chat(route, stream=True), route, stream=True)
        with pytest.raises(salvo.TimeoutError, match=r"within the call's 0\.3 s deadline"):
            async with stream:
                async for _ in stream:
                    pass


async def test_a_deadline_given_without_a_timeout_is_its_deadline(fake: FakeProvider) -> None:
    fake.script("m", Behavior(chunks=3, chunk_interval=1.0))
    async with salvo.Client(max_retries=0, timeout=None) as client:
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        assert route.timeout is None
        deadline = asyncio.get_running_loop().time() + 0.3
        req = _chat(route, stream=True)
        stream = await client.send(req, route, stream=True, deadline=deadline)
        with pytest.raises(salvo.TimeoutError, match="did not finish within its deadline"):
            async with stream:
                async for _ in stream:
                    pass
