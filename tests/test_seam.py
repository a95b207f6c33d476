"""``Client.route`` + ``Client.send``: the one public way bytes leave salvo.

The first test is the documented public use (what a wrapper or a new kind of call writes);
the rest attack the seam's promises: the limiter slot a stream holds, accept's errors going
through the retry policy, fresh bodies and auth headers per attempt, body caps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
from typing import Any

import msgspec
import pytest

import salvo
from salvo import HTTPRequest, Response, ResponseStream, Route
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "hi"}]


def _chat(route: Route, *, stream: bool = False, body: Any = None) -> HTTPRequest:
    payload = {"model": route.model, "messages": MSGS, "stream": stream}
    url = f"{route.dep.endpoint.api_base}/chat/completions"
    return HTTPRequest("POST", url, route.dep.headers, body or msgspec.json.encode(payload))


async def test_public_use_route_then_send() -> None:
    """What the README shows: resolve a route, send an HTTPRequest, get bytes back."""
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(text="hello there"))
        params: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "sk-x", "timeout": 30}
        route = client.route("openai/m", params)
        assert params == {}  # the call keys were popped
        assert isinstance(route, Route) and route.timeout == 30 and route.provider == "openai"

        resp = await client.send(_chat(route), route)
        assert isinstance(resp, Response)
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.json()["choices"][0]["message"]["content"] == "hello there"
        assert route.limiter.in_flight == 0

        async def text(r: Response) -> str:
            return str(r.json()["choices"][0]["message"]["content"])

        assert await client.send(_chat(route), route, accept=text) == "hello there"

        stream = await client.send(_chat(route, stream=True), route, stream=True)
        assert isinstance(stream, ResponseStream)
        async with stream:
            assert stream.content_type == "text/event-stream"
            assert route.limiter.in_flight == 1  # held while the stream is open
            body = b"".join([piece async for piece in stream])
        assert body.rstrip().endswith(b"data: [DONE]")
        assert stream.closed and route.limiter.in_flight == 0
        assert [r.stream for r in fake.records] == [False, False, True]


async def test_send_rejects_what_is_not_a_route_before_sending() -> None:
    async with FakeProvider() as fake, salvo.Client() as client:
        req = HTTPRequest("GET", fake.openai_base + "/models", {}, b"")
        with pytest.raises(salvo.ConfigError, match=r"Route from Client\.route"):
            await client.send(req, object())  # type: ignore[call-overload]
        assert fake.records == []


async def test_an_error_status_is_the_adapters_provider_error() -> None:
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(status=404, error_message="no such model"))
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        with pytest.raises(salvo.NotFoundError, match="no such model"):
            await client.send(_chat(route), route)
        assert route.limiter.in_flight == 0


async def test_accept_errors_are_retried_per_the_policy() -> None:
    async with (
        FakeProvider() as fake,
        salvo.Client(max_retries=2, retry_policy=salvo.RetryPolicy(wait=False)) as client,
    ):
        fake.script("m", Behavior(text="ok"))
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        seen: list[int] = []

        async def flaky(resp: Response) -> int:
            seen.append(resp.status)
            if len(seen) < 3:
                raise salvo.ConnectionError("the body looked cut short")  # retryable
            return len(seen)

        assert await client.send(_chat(route), route, accept=flaky) == 3
        assert len(fake.records) == 3

        async def undecodable(resp: Response) -> None:
            raise salvo.ResponseDecodeError("not what was promised")  # never retried

        with pytest.raises(salvo.ResponseDecodeError):
            await client.send(_chat(route), route, accept=undecodable)
        assert len(fake.records) == 4
        assert route.limiter.in_flight == 0


async def test_a_stream_accept_that_fails_closes_the_stream_and_frees_the_slot() -> None:
    async with (
        FakeProvider() as fake,
        salvo.Client(max_retries=1, retry_policy=salvo.RetryPolicy(wait=False)) as client,
    ):
        fake.script("m", Behavior(text="a b c d", chunks=4, chunk_interval=0.2))
        params = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 1}
        route = client.route("openai/m", params)
        opened: list[ResponseStream] = []

        async def refuse(stream: ResponseStream) -> None:
            opened.append(stream)
            raise salvo.StreamError("not this one")

        with pytest.raises(salvo.StreamError):
            await client.send(_chat(route, stream=True), route, stream=True, accept=refuse)
        assert len(opened) == 2 and all(s.closed for s in opened)
        assert route.limiter.in_flight == 0
        for rec in fake.records:
            await fake.wait_until_closed(rec)
            assert rec.disconnected is not None  # dropped, not read to the end


async def test_a_fresh_body_and_fresh_auth_headers_for_every_attempt() -> None:
    async with (
        FakeProvider() as fake,
        salvo.Client(max_retries=2, retry_policy=salvo.RetryPolicy(wait=False)) as client,
    ):
        fake.script("m", [Behavior(status=503), Behavior(status=503), Behavior(text="ok")])
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        tokens = iter(["t1", "t2", "t3"])

        async def auth(session: object) -> dict[str, str]:
            return {"Authorization": f"Bearer {next(tokens)}"}

        dep = route.dep
        authed = Route(
            dataclasses.replace(dep, auth=auth),  # what a Google deployment carries
            timeout=route.timeout,
            max_retries=route.max_retries,
            first_byte_timeout=None,
            stream_idle_timeout=None,
            limiter=route.limiter,
        )
        made: list[int] = []

        def body() -> bytes:
            made.append(len(made))
            return json.dumps({"model": "m", "messages": MSGS, "n_attempt": len(made)}).encode()

        req = HTTPRequest("POST", f"{fake.openai_base}/chat/completions", dep.headers, body)
        assert "made per attempt" in repr(req)
        resp = await client.send(req, authed)
        assert resp.status == 200
        assert made == [0, 1, 2]
        assert [r.body["n_attempt"] for r in fake.records] == [1, 2, 3]
        assert [r.headers["authorization"] for r in fake.records] == [
            "Bearer t1",
            "Bearer t2",
            "Bearer t3",
        ]


async def test_an_open_stream_holds_the_slot_until_closed() -> None:
    """With max_parallel_requests=1 the second send waits for the first stream to close; the
    fake's records show the second request arriving only after the first connection ended."""
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(text="a b c d", chunks=4, chunk_interval=0.05))
        params = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 1}
        route = client.route("openai/m", params)
        first = await client.send(_chat(route, stream=True), route, stream=True)
        second = asyncio.create_task(client.send(_chat(route, stream=True), route, stream=True))
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not second.done() and len(fake.records) == 1
        assert route.limiter.statistics().waiting == 1
        await first.read()
        await first.aclose()
        async with await second as s2:
            async for _ in s2:
                pass
        r1, r2 = fake.records
        await fake.wait_until_closed(r1)
        assert r1.closed is not None and r2.arrived >= r1.closed
        assert route.limiter.in_flight == 0


async def test_a_stream_dropped_unclosed_warns_and_gives_its_slot_back() -> None:
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(text="a b c d", chunks=4, chunk_interval=0.2))
        params = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 1}
        route = client.route("openai/m", params)
        stream = await client.send(_chat(route, stream=True), route, stream=True)
        assert route.limiter.in_flight == 1
        with pytest.warns(ResourceWarning, match="Unclosed salvo stream"):
            del stream
            gc.collect()
        assert route.limiter.in_flight == 0
        (rec,) = fake.records
        await fake.wait_until_closed(rec)
        assert rec.disconnected is not None


async def test_a_completion_stream_dropped_unclosed_gives_its_slot_back() -> None:
    """Issue item 5: a CompletionStream garbage-collected unclosed must not keep its slot."""
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(text="a b c d", chunks=4, chunk_interval=0.2))
        kw = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 1}
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw)
        first = await stream.__anext__()
        assert first.choices[0].delta.role == "assistant"
        limiter = client.route("openai/m", dict(kw)).limiter
        assert limiter.in_flight == 1
        with pytest.warns(ResourceWarning):
            del stream
            gc.collect()
        assert limiter.in_flight == 0
        # the key works again at once
        resp = await client.acompletion("openai/m", MSGS, **kw)
        assert resp.content


async def test_a_stream_read_to_its_end_releases_the_connection_for_reuse() -> None:
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(text="a b", chunks=2))
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        async with await client.send(_chat(route, stream=True), route, stream=True) as s:
            while await s.read():
                pass
        await client.send(_chat(route), route)
        assert client.statistics().connections_open == 1
        r1 = fake.records[0]
        assert r1.completed is not None and r1.disconnected is None


async def test_route_cache_is_bounded_for_per_call_keys() -> None:
    """Issue item: 100,000 distinct api_keys must not grow the client without bound."""
    from salvo._routes import MAX_ROUTES

    client = salvo.Client()
    for i in range(MAX_ROUTES * 3):
        client.route("openai/m", {"api_key": f"sk-user-{i}", "api_base": "http://127.0.0.1:9"})
    assert len(client._options) == MAX_ROUTES
    newest = client.route("openai/m", {"api_key": f"sk-user-{MAX_ROUTES * 3 - 1}",
                                       "api_base": "http://127.0.0.1:9"})  # fmt: skip
    assert newest.dep.endpoint.api_key == f"sk-user-{MAX_ROUTES * 3 - 1}"
    await client.aclose()


def test_sizes_must_be_positive() -> None:
    with pytest.raises(salvo.ConfigError, match="max_body_bytes"):
        salvo.Client(max_body_bytes=0)
    with pytest.raises(salvo.ConfigError, match="max_event_bytes"):
        salvo.Client(max_event_bytes=True)  # type: ignore[arg-type]


async def test_cancelled_at_random_points_send_leaks_no_slot_and_no_connection() -> None:
    """Cancel sends (whole bodies, streams, streams being read, accepts running) at random
    moments: every slot comes back and the fake sees every connection end."""
    import random

    rng = random.Random(11)
    async with FakeProvider() as fake, salvo.Client(max_retries=1) as client:
        fake.script("slow", Behavior(text="a b c d e f", chunks=6, chunk_interval=0.01,
                                     latency=0.01))  # fmt: skip
        params = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 3}
        route = client.route("openai/slow", params)

        async def slow_accept(r: Response) -> int:
            await asyncio.sleep(0.01)
            return r.status

        async def read_all(stream: ResponseStream) -> int:
            async with stream:
                return sum([len(p) async for p in stream])

        async def one(kind: int) -> None:
            if kind == 0:
                await client.send(_chat(route), route)
            elif kind == 1:
                await client.send(_chat(route), route, accept=slow_accept)
            else:
                req = _chat(route, stream=True)
                await read_all(await client.send(req, route, stream=True))

        tasks = []
        for i in range(60):
            t = asyncio.create_task(one(i % 3))
            tasks.append(t)
            await asyncio.sleep(rng.random() * 0.03)
            t.cancel()
            if i % 7 == 0:
                await asyncio.sleep(0)
                t.cancel()  # a second cancel
        await asyncio.gather(*tasks, return_exceptions=True)
        assert route.limiter.in_flight == 0
        assert route.limiter.statistics().waiting == 0
        for rec in fake.records:
            await fake.wait_until_closed(rec)
        assert all(r.closed is not None for r in fake.records)
        assert client.statistics().in_flight == 0


async def test_a_streams_reported_usage_reaches_the_tpm_limiter_when_it_closes() -> None:
    """The close callback carries the usage the stream reported: a stream that used far more
    than its estimate leaves that much token debt on the key (a mutant that drops it, or
    settles before the usage arrived, leaves none)."""
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(text="a b c", chunks=3, prompt_tokens=10, chunk_interval=0.05,
                                  completion_tokens=5000, include_usage=True))  # fmt: skip
        kw = {"api_base": fake.openai_base, "api_key": "k", "tpm": 600_000}
        limiter = client.route("openai/m", dict(kw)).limiter
        stream = await client.acompletion("openai/m", MSGS, stream=True, max_tokens=1, **kw)
        async with stream:
            assert limiter.statistics().tokens_owed == 0  # nothing settled while it is open
            chunks = [c async for c in stream]
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5010
        owed = limiter.statistics().tokens_owed
        estimate = 5010 - owed
        assert 0 < estimate < 100  # the estimate (a few tokens) was corrected to 5,010
        assert limiter.in_flight == 0


async def test_close_callbacks_run_once_with_the_used_tokens() -> None:
    async with FakeProvider() as fake, salvo.Client(max_retries=0) as client:
        fake.script("m", Behavior(text="a b", chunks=2))
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        stream = await client.send(_chat(route, stream=True), route, stream=True)
        got: list[int | None] = []
        stream.add_close_callback(got.append)
        stream.used_tokens = 42
        await stream.aclose()
        await stream.aclose()
        stream.add_close_callback(got.append)  # already closed: at once
        assert got == [42, 42]
        assert route.limiter.in_flight == 0


def test_routes_with_unhashable_call_keys_are_cached_too() -> None:
    client = salvo.Client()
    base = {"api_key": "sk-a", "api_base": "http://127.0.0.1:9"}
    a = client.route("openai/m", {**base, "extra_headers": {"x-team": "red"}})
    b = client.route("openai/m", {**base, "extra_headers": {"x-team": "red"}})
    c = client.route("openai/m", {**base, "extra_headers": {"x-team": "blue"}})
    assert a is b and a is not c
    assert c.dep.headers["x-team"] == "blue"
    assert client.route("openai/m", dict(base)) is client.route("openai/m", dict(base))
