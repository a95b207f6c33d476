"""The proxy's pass-through relay on the seam (issue items 2, 6, 8): upstream failures on a
stream are errors, never an empty success; error events start on a fresh line; upstream
secrets never reach a client, even cut across two writes; a pass-through stream holds its
``max_parallel_requests`` slot until it ends."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import pytest

from _raw_upstream import RawRequest, RawUpstream, http_head, sse_head, write_slowly
from salvo import RetryPolicy
from salvo.proxy import ProxyServer
from salvo.testing import Behavior
from test_proxy_support import MASTER_KEY, USER, stack

SECRET = "sk-upstream-secret-0123456789abcdef"
SHORT = "k3y5x"  # a short upstream key: scrubbed from errors all the same
CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
)


@asynccontextmanager
async def proxied(up: RawUpstream, key: str = SECRET, **client: Any) -> AsyncIterator[str]:
    config = {
        "model_list": [
            {
                "model_name": "m",
                "params": {
                    "model": "openai/m",
                    "api_base": up.base,
                    "api_key": key,
                    "max_retries": 0,
                },
            },
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    async with ProxyServer(config, retry_policy=RetryPolicy(wait=False), **client) as proxy:
        yield proxy.url


async def _post(url: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/v1/chat/completions", json=body, headers=headers) as r,
    ):
        return r.status, r.headers.get("Content-Type", ""), await r.read()


STREAM = {"model": "m", "messages": USER, "stream": True}


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("text/html", b"<html><body>502 Bad Gateway</body></html>"),
        ("application/json", b'{"id": "c", "choices": []}'),
    ],
)
async def test_a_200_that_is_not_an_event_stream_is_a_502_not_an_empty_success(
    ctype: str, body: bytes
) -> None:
    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(http_head(200, {"Content-Type": ctype, "Content-Length": str(len(body))}) + body)

    async with RawUpstream(respond) as up, proxied(up) as url:
        status, got_type, raw = await _post(url, STREAM)
        assert status == 502
        assert got_type.startswith("application/json")
        err = json.loads(raw)["error"]
        assert err["code"] == "upstream_bad"
        # the official SDK raises instead of yielding zero chunks
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=MASTER_KEY,
                                      max_retries=0) as oai:  # fmt: skip
            with pytest.raises(openai.APIStatusError):
                await oai.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]


async def test_a_reset_mid_stream_ends_with_an_error_event_on_a_fresh_line() -> None:
    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head() + CHUNK + CHUNK + b'data: {"id":"c","object":"chat.compl')
        await w.drain()
        await asyncio.sleep(0.05)
        w.transport.abort()

    async with RawUpstream(respond) as up, proxied(up) as url:
        status, _, raw = await _post(url, STREAM)
        assert status == 200
        assert raw.startswith(CHUNK + CHUNK)
        rest = raw[len(CHUNK) * 2 :]
        assert rest.startswith(b"data: {")  # the cut-off event was not relayed
        event = json.loads(rest[len(b"data: ") :].strip())
        assert event["error"]["code"] == "upstream_stream"
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=MASTER_KEY,
                                      max_retries=0) as oai:  # fmt: skip
            got = []
            with pytest.raises(openai.APIError):
                stream = await oai.chat.completions.create(model="m", messages=USER, stream=True)  # type: ignore[arg-type]
                async for chunk in stream:
                    got.append(chunk)
            assert len(got) == 2


async def test_an_unterminated_stream_ends_with_an_error_event() -> None:
    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head() + CHUNK)  # then the connection closes: no [DONE]

    async with RawUpstream(respond) as up, proxied(up) as url:
        status, _, raw = await _post(url, STREAM)
        assert status == 200 and raw.startswith(CHUNK)
        assert json.loads(raw[len(CHUNK) + 6 :])["error"]["code"] == "upstream_stream"


async def test_a_terminator_without_its_blank_line_completes_the_stream() -> None:
    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head() + CHUNK + b"data: [DONE]\n")

    async with RawUpstream(respond) as up, proxied(up) as url:
        _, _, raw = await _post(url, STREAM)
        assert raw == CHUNK + b"data: [DONE]\n\n"


async def test_an_endless_upstream_event_is_cut_with_an_error_event() -> None:
    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head() + CHUNK + b"data: ")
        while True:
            w.write(b"z" * 65536)
            await w.drain()

    async with RawUpstream(respond) as up, proxied(up, max_event_bytes=1 << 20) as url:
        status, _, raw = await _post(url, STREAM)
        assert status == 200 and raw.startswith(CHUNK)
        assert len(raw) < 10_000  # the endless event was never relayed
        err = json.loads(raw[len(CHUNK) + 6 :])["error"]
        assert err["code"] == "upstream_stream" and "size limit" in err["message"]
        (req,) = up.requests
        await asyncio.wait_for(req.done.wait(), 5)
        assert req.client_closed.is_set()


def test_event_framer_holds_partial_events_and_caps_them() -> None:
    from salvo._errors import StreamError
    from salvo.proxy._relay import EventFramer

    f = EventFramer(100)
    assert f.feed(b"data: a\n\ndata: b") == b"data: a\n\n"
    assert f.feed(b"c\n") == b""
    assert f.feed(b"\ndata: d\r\n\r\n") == b"data: bc\n\ndata: d\r\n\r\n"
    assert f.feed(b"data: e\r\re") == b"data: e\r\r"
    assert f.rest == b"e"
    with pytest.raises(StreamError, match="100 bytes"):
        f.feed(b"x" * 200)


@pytest.mark.parametrize("cut", [5, 12, len(SECRET) - 1])
async def test_a_secret_cut_across_two_writes_never_reaches_the_client(cut: int) -> None:
    echoed = f"Bearer {SECRET}"
    at = echoed.index(SECRET) + cut
    event = ('data: {"error": {"message": "bad auth header ' + echoed + '"}}\n\n').encode()
    split = event.index(echoed.encode()) + at

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head() + CHUNK)
        await w.drain()
        await write_slowly(w, [event[:split], event[split:]])

    async with RawUpstream(respond) as up, proxied(up) as url:
        _, _, raw = await _post(url, STREAM)
        assert SECRET.encode() not in raw
        assert SECRET[:8].encode() not in raw[len(CHUNK) :]
        assert b"[redacted]" in raw
        # the upstream did get the key
        assert up.requests[0].headers["authorization"] == f"Bearer {SECRET}"


async def test_a_short_key_echoed_in_an_error_events_fields_is_scrubbed() -> None:
    event = json.dumps(
        {"error": {"message": f"key {SHORT} refused", "param": SHORT, "code": f"bad_{SHORT}"}}
    ).encode()

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head() + CHUNK + b"data: " + event + b"\n\n")

    async with RawUpstream(respond) as up, proxied(up, key=SHORT) as url:
        _, _, raw = await _post(url, STREAM)
        assert SHORT.encode() not in raw


async def test_a_short_key_echoed_in_a_plain_error_is_scrubbed_from_every_field() -> None:
    body = json.dumps(
        {"error": {"message": f"key {SHORT} refused", "param": SHORT, "code": SHORT,
                   "type": f"auth_{SHORT}"}}
    ).encode()  # fmt: skip

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(http_head(401, {"Content-Type": "application/json",
                                "Content-Length": str(len(body))}) + body)  # fmt: skip

    async with RawUpstream(respond) as up, proxied(up, key=SHORT) as url:
        for stream in (False, True):
            status, _, raw = await _post(url, {**STREAM, "stream": stream})
            assert status == 401
            assert SHORT.encode() not in raw, raw


async def test_a_key_echoed_in_an_error_carried_by_a_200_is_scrubbed() -> None:
    body = json.dumps({"error": {"message": f"upstream said: you sent {SECRET}"}}).encode()

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(http_head(200, {"Content-Type": "application/json",
                                "Content-Length": str(len(body))}) + body)  # fmt: skip

    async with RawUpstream(respond) as up, proxied(up) as url:
        _, _, raw = await _post(url, {**STREAM, "stream": False})
        assert SECRET.encode() not in raw and b"[redacted]" in raw


async def test_a_pass_through_stream_holds_its_slot_until_it_ends() -> None:
    """Issue item 8: with max_parallel_requests 1, three streaming clients get one upstream
    stream at a time; the fake's records show each starting after the previous one closed."""
    extra = {"one": {"model": "openai/gpt-4o-mini", "max_parallel_requests": 1}}
    async with stack(extra_models=extra) as s:
        s.fake.script("gpt-4o-mini", Behavior(text="a b c d", chunks=4, chunk_interval=0.05))

        async def one() -> str:
            stream = await s.oai.chat.completions.create(model="one", messages=USER, stream=True)  # type: ignore[arg-type]
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return "".join(parts)

        assert await asyncio.gather(one(), one(), one()) == ["a b c d"] * 3
        records = sorted(s.fake.records, key=lambda r: r.arrived)
        assert len(records) == 3
        for before, after in itertools.pairwise(records):
            assert before.closed is not None
            assert after.arrived >= before.closed
        assert s.proxy.state.client.statistics().in_flight == 0


async def test_a_client_leaving_a_pass_through_stream_frees_the_slot_and_the_upstream() -> None:
    extra = {"one": {"model": "openai/gpt-4o-mini", "max_parallel_requests": 1}}
    async with stack(extra_models=extra) as s:
        s.fake.script("gpt-4o-mini", Behavior(text="a b c d e f", chunks=6, chunk_interval=0.3))
        headers = s.auth()
        body = {"model": "one", "messages": USER, "stream": True}
        async with s.http.post(s.url + "/v1/chat/completions", headers=headers, json=body) as r:
            await r.content.readline()  # one line, then leave
        (rec,) = s.fake.records
        await s.fake.wait_until_closed(rec)
        assert rec.disconnected is not None
        for _ in range(100):
            if s.proxy.state.client.statistics().in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert s.proxy.state.client.statistics().in_flight == 0
        # and the key serves the next stream at once
        stream = await s.oai.chat.completions.create(model="one", messages=USER, stream=True)  # type: ignore[arg-type]
        assert [c async for c in stream]


def test_the_scrubber_knows_its_secrets_exactly() -> None:
    from salvo.proxy._scrub import Scrubber

    scrub = Scrubber([SECRET, SHORT, "ab", None, 'we/ird"key1'])
    ordinary = f"the words {SHORT} and {SECRET} in an answer".encode()
    assert scrub(ordinary) is ordinary  # no error: relayed untouched
    for word in (b"error", b"Error", b"object_error"):
        piece = b'{"' + word + b'": {"param": "' + SHORT.encode() + b'", "m": "' + SECRET.encode()
        assert (
            scrub(piece + b'"}}')
            == b'{"' + word + b'": {"param": "[redacted]", "m": "[redacted]"}}'
        )
    assert scrub(b'{"error": "ab"}') == b'{"error": "ab"}'  # under 4 characters: no secret
    assert scrub(b'{"error": "we/ird\\"key1"}') == b'{"error": "[redacted]"}'  # as JSON writes it
    assert scrub(b'{"error": "we\\/ird\\"key1"}') == b'{"error": "[redacted]"}'
    assert not Scrubber([None, "", "abc"])


async def test_clients_leaving_pass_through_streams_at_random_points_leak_nothing() -> None:
    import random

    rng = random.Random(5)
    extra = {"two": {"model": "openai/gpt-4o-mini", "max_parallel_requests": 2}}
    async with stack(extra_models=extra) as s:
        s.fake.script("gpt-4o-mini", Behavior(text="a b c d e f", chunks=6, chunk_interval=0.01,
                                              latency=0.01))  # fmt: skip
        body = {"model": "two", "messages": USER, "stream": True}

        async def one() -> None:
            async with s.http.post(
                s.url + "/v1/chat/completions", headers=s.auth(), json=body
            ) as r:
                async for _ in r.content:
                    pass

        tasks = []
        for _ in range(30):
            t = asyncio.create_task(one())
            tasks.append(t)
            await asyncio.sleep(rng.random() * 0.04)
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for rec in s.fake.records:
            await s.fake.wait_until_closed(rec)
        stats = s.proxy.state.client.statistics
        for _ in range(200):  # the proxy notices each departure on its next write
            if stats().in_flight == 0 and stats().waiting_on_limiters == 0:
                break
            await asyncio.sleep(0.01)
        assert stats().in_flight == 0 and stats().waiting_on_limiters == 0
        await one()  # the key still serves


async def test_a_client_that_stops_reading_cannot_hold_the_upstream_past_the_deadline() -> None:
    event = b"data: " + json.dumps({"pad": "p" * 60_000}).encode() + b"\n\n"

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head())
        while True:  # valid events, forever
            w.write(event)
            await w.drain()

    async with RawUpstream(respond) as up, proxied(up, timeout=1.0) as url:
        host, port = url.removeprefix("http://").split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps(STREAM).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {MASTER_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        try:
            for _ in range(100):
                if up.requests:
                    break
                await asyncio.sleep(0.05)
            (req,) = up.requests
            # the client never reads; the proxy gives the upstream up at the call's deadline
            await asyncio.wait_for(req.client_closed.wait(), 10)
        finally:
            writer.transport.abort()
