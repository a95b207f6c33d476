"""Body and event caps (issue item 10), against upstreams on raw sockets: a gzip bomb, a huge
error body, an SSE line that never ends, a body cut off in the middle."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from typing import Any

import pytest

import salvo
from _raw_upstream import RawRequest, RawUpstream, gzip_bomb, http_head, sse_head

MSGS = [{"role": "user", "content": "hi"}]
CHOICE = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
ANSWER = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m", "choices": [CHOICE]}


def _kw(up: RawUpstream) -> dict[str, Any]:
    return {"api_base": up.base, "api_key": "sk-raw-upstream-key", "max_retries": 0}


async def test_a_gzip_bomb_stops_at_the_body_cap() -> None:
    bomb = gzip_bomb(200 << 20)  # 200 MB of zeros in about 200 KB

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(http_head(200, {"Content-Type": "application/json", "Content-Encoding": "gzip",
                                "Content-Length": str(len(bomb))}))  # fmt: skip
        w.write(bomb)

    async with RawUpstream(respond) as up, salvo.Client(max_body_bytes=4 << 20) as client:
        tracemalloc.start()
        try:
            with pytest.raises(salvo.ResponseDecodeError, match=r"max_body_bytes") as info:
                await client.acompletion("openai/m", MSGS, **_kw(up))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "4194304 bytes" in str(info.value)
        assert peak < 40 << 20  # never the 200 MB the body inflates to
        assert client.statistics().in_flight == 0


async def test_a_plain_body_over_the_cap_is_refused() -> None:
    big = json.dumps({**ANSWER, "pad": "x" * 300_000}).encode()

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(
            http_head(200, {"Content-Type": "application/json", "Content-Length": str(len(big))})
        )
        w.write(big)

    async with RawUpstream(respond) as up:
        async with salvo.Client(max_body_bytes=100_000) as client:
            with pytest.raises(salvo.ResponseDecodeError, match="max_body_bytes"):
                await client.acompletion("openai/m", MSGS, **_kw(up))
        async with salvo.Client() as client:  # the default cap (64 MB) lets it through
            resp = await client.acompletion("openai/m", MSGS, **_kw(up))
            assert resp.content == "ok"


async def test_a_huge_error_body_is_read_a_little_and_kept_less() -> None:
    reads = 0
    huge = b'{"error": {"message": "' + b"y" * (20 << 20) + b'"}}'

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        nonlocal reads
        reads += 1
        w.write(
            http_head(500, {"Content-Type": "application/json", "Content-Length": str(len(huge))})
        )
        for i in range(0, len(huge), 1 << 16):
            w.write(huge[i : i + (1 << 16)])
            await w.drain()

    policy = salvo.RetryPolicy(wait=False)
    async with RawUpstream(respond) as up, salvo.Client(retry_policy=policy) as client:
        kw = {**_kw(up), "max_retries": 1}
        with pytest.raises(salvo.ServerError) as info:
            await client.acompletion("openai/m", MSGS, **kw)
        err = info.value
        assert reads == 2  # retried, as a 500 is
        assert len(str(err.body)) <= 4 * 1024 + 1
        assert len(err.message) <= 4 * 1024 + 1
        for req in up.requests:  # the rest of each body was never read: the client hung up
            await asyncio.wait_for(req.done.wait(), 5)
            assert req.client_closed.is_set()


async def test_an_endless_sse_line_is_a_stream_error_naming_the_limit() -> None:
    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head())
        w.write(b"data: ")
        while True:  # no newline, ever
            w.write(b"a" * 65536)
            await w.drain()

    async with RawUpstream(respond) as up, salvo.Client(max_event_bytes=1 << 20) as client:
        with pytest.raises(salvo.StreamError, match="max_event_bytes") as info:
            await client.acompletion("openai/m", MSGS, stream=True, **_kw(up))
        assert info.value.provider == "openai"
        (req,) = up.requests
        await asyncio.wait_for(req.done.wait(), 5)
        assert req.client_closed.is_set()
        assert client.statistics().in_flight == 0


async def test_many_data_lines_of_one_event_are_capped_too() -> None:
    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(sse_head())
        while True:  # one event that never ends: data lines, no blank line
            w.write(b"data: " + b"b" * 1000 + b"\n")
            await w.drain()

    async with RawUpstream(respond) as up, salvo.Client(max_event_bytes=256_000) as client:
        with pytest.raises(salvo.StreamError, match="256000 bytes"):
            await client.acompletion("openai/m", MSGS, stream=True, **_kw(up))


async def test_a_body_reset_in_the_middle_is_a_connection_error() -> None:
    body = json.dumps(ANSWER).encode()

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(http_head(200, {"Content-Type": "application/json",
                                "Content-Length": str(len(body))}))  # fmt: skip
        w.write(body[:20])
        await w.drain()
        w.transport.abort()

    async with RawUpstream(respond) as up, salvo.Client() as client:
        with pytest.raises(salvo.ConnectionError):
            await client.acompletion("openai/m", MSGS, **_kw(up))
        assert client.statistics().in_flight == 0


async def test_a_large_json_error_body_keeps_only_its_fields_cut_short() -> None:
    detail = {"message": "m" * 6000, "type": "server_error", "code": "boom", "extra": "e" * 6000}
    body = json.dumps({"error": detail}).encode()

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        w.write(http_head(500, {"Content-Type": "application/json",
                                "Content-Length": str(len(body))}) + body)  # fmt: skip

    async with RawUpstream(respond) as up, salvo.Client() as client:
        with pytest.raises(salvo.ServerError) as info:
            await client.acompletion("openai/m", MSGS, **_kw(up))
        kept = info.value.body
        assert isinstance(kept, dict) and kept["truncated"] is True
        assert kept["type"] == "server_error" and kept["code"] == "boom"
        assert len(json.dumps(kept)) < 4 * 1024
