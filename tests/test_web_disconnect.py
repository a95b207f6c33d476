"""A web app's request awaiting salvo is cancelled when its client disconnects, and every
upstream connection is closed within a second: Starlette under uvicorn with
``salvo.asgi.CancelOnDisconnect``, and aiohttp.web with ``handler_cancellation=True``. Real
servers on 127.0.0.1; the fake provider's records are the proof."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import salvo
from salvo.asgi import CancelOnDisconnect
from salvo.testing import Behavior, FakeProvider

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

MSGS = [{"role": "user", "content": "hi"}]
MODELS = ["openai/slow-a", "openai/slow-b", "openai/slow-c"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        for m in MODELS:
            server.script(m.split("/")[1], Behavior(latency=3.0, text="late"))
        yield server


def starlette_app(fake: FakeProvider, *, wrap: bool, stream: bool = False) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    kw = {"api_base": fake.openai_base, "api_key": "k", "max_retries": 0}

    async def race(request: Request) -> Any:
        body = await request.body()
        if stream:
            s = await salvo.arace(MODELS, MSGS, stream=True, **kw)

            async def pieces() -> AsyncIterator[bytes]:
                async with s:
                    async for chunk in s:
                        yield chunk.model_dump_json().encode() + b"\n"

            return StreamingResponse(pieces())
        resp = await salvo.arace(MODELS, MSGS, **kw)
        return JSONResponse({"content": resp.content, "body": len(body)})

    app = Starlette(routes=[Route("/race", race, methods=["GET", "POST"])])
    if wrap:
        app.add_middleware(CancelOnDisconnect)
    return app


async def serve_uvicorn(app: Any) -> tuple[Any, asyncio.Task[None], int]:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, loop="asyncio", lifespan="off", log_level="error"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


async def hang_up_after_upstream_starts(
    fake: FakeProvider, port: int, request: bytes, n: int = 3
) -> float:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    while len(fake.records) < n:  # every upstream call is in flight
        await asyncio.sleep(0.005)
    writer.close()
    await writer.wait_closed()
    return time.monotonic()


async def all_closed(fake: FakeProvider, timeout: float = 5.0) -> list[Any]:
    async with asyncio.timeout(timeout):
        while not all(r.closed is not None for r in fake.records):
            await asyncio.sleep(0.005)
    return list(fake.records)


GET = b"GET /race HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
POST = (
    b"POST /race HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 11\r\n\r\n{"a": 123}\n'
)


async def run_with(app: Any, body: Callable[[int], Awaitable[None]]) -> None:
    server, task, port = await serve_uvicorn(app)
    try:
        await body(port)
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize("request_bytes", [GET, POST], ids=["get", "post-with-body"])
async def test_starlette_disconnect_closes_every_upstream(
    fake: FakeProvider, request_bytes: bytes
) -> None:
    async def body(port: int) -> None:
        gone = await hang_up_after_upstream_starts(fake, port, request_bytes)
        recs = await all_closed(fake)
        assert len(recs) == 3
        for r in recs:
            assert r.completed is None and r.disconnected is not None
            assert r.disconnected - gone < 1.0, r.disconnected - gone

    await run_with(starlette_app(fake, wrap=True), body)


async def test_starlette_streaming_response_disconnect(fake: FakeProvider) -> None:
    fake.script("slow-a", Behavior(text="x " * 400, chunks=400, chunk_interval=0.02))

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the response started streaming
        await reader.readline()
        writer.close()
        await writer.wait_closed()
        gone = time.monotonic()
        recs = await all_closed(fake)
        for r in recs:
            assert r.completed is None
            assert (r.closed or 0) - gone < 1.0

    await run_with(starlette_app(fake, wrap=True, stream=True), body)


async def test_without_the_middleware_upstream_runs_on(fake: FakeProvider) -> None:
    # The control: what the middleware fixes. Starlette alone lets the race run to its end.
    async def body(port: int) -> None:
        gone = await hang_up_after_upstream_starts(fake, port, GET)
        await asyncio.sleep(1.0)
        assert all(r.closed is None for r in fake.records)  # still running a second later
        recs = await all_closed(fake, timeout=10)
        assert any(r.completed is not None for r in recs)
        assert min(r.completed or 1e9 for r in recs) - gone > 1.0

    await run_with(starlette_app(fake, wrap=False), body)


async def test_a_normal_request_is_untouched(fake: FakeProvider) -> None:
    fake.script("slow-b", Behavior(text="quick"))

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(POST)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(
            line.split(b":")[1] for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ))  # fmt: skip
        payload = await reader.readexactly(length)
        assert b'"content":"quick"' in payload and b'"body":11' in payload
        writer.close()
        await writer.wait_closed()
        recs = await all_closed(fake)
        assert [r.model for r in recs if r.completed is not None] == ["slow-b"]

    await run_with(starlette_app(fake, wrap=True), body)


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def receive() -> Any:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        return None

    await CancelOnDisconnect(app)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


async def test_aiohttp_web_with_handler_cancellation(fake: FakeProvider) -> None:
    from aiohttp import web

    kw = {"api_base": fake.openai_base, "api_key": "k", "max_retries": 0}

    async def race(request: web.Request) -> web.Response:
        resp = await salvo.arace(MODELS, MSGS, **kw)
        return web.json_response({"content": resp.content})

    app = web.Application()
    app.router.add_get("/race", race)
    runner = web.AppRunner(app, handler_cancellation=True)  # the recipe
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        gone = await hang_up_after_upstream_starts(fake, port, GET)
        recs = await all_closed(fake)
        assert len(recs) == 3
        for r in recs:
            assert r.completed is None and r.disconnected is not None
            assert r.disconnected - gone < 1.0
    finally:
        await runner.cleanup()


def test_warmup_does_the_first_call_costs() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio, sys, salvo
        print("aiohttp" in sys.modules)
        async def main():
            await salvo.warmup()
            print("aiohttp" in sys.modules)
            client = salvo._api._cached()
            print(client is not None and client.statistics().connections_open == 0)
            await salvo.warmup()  # idempotent
        asyncio.run(main())
        async def opened():
            async with salvo.Client() as c:
                print("opened", not c.closed)
        asyncio.run(opened())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "True", "opened", "True"]
    assert proc.stderr == ""


async def test_disconnects_at_random_moments(fake: FakeProvider) -> None:
    # A plain ASGI app streaming one model's answer, the client leaving at a random moment:
    # before the call, while it waits for the first chunk, or mid-stream. (A streaming
    # arace cancelled just as its winner is decided can keep the winner open: the race's
    # cleanup under a second cancel is issue 11 item 5, the fan-out's, tested there.)
    import random

    kw = {"api_base": fake.openai_base, "api_key": "k", "max_retries": 0}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        stream = await salvo.acompletion("openai/slow-a", MSGS, stream=True, **kw)
        async with stream:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            async for _chunk in stream:
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    rng = random.Random(1234)

    async def body(port: int) -> None:
        for _ in range(12):
            fake.reset()
            fake.script(
                "slow-a",
                Behavior(
                    first_chunk_delay=rng.choice([0.0, 0.05]),
                    text="x " * 300,
                    chunks=300,
                    chunk_interval=0.01,
                ),
            )
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(GET)
            await writer.drain()
            await asyncio.sleep(rng.uniform(0.0, 0.1))
            writer.close()
            await writer.wait_closed()
            gone = time.monotonic()
            await asyncio.sleep(0.2)  # what the handler had not started yet, it never will
            recs = await all_closed(fake)
            for r in recs:
                assert r.completed is None, r
                assert (r.closed or 0) - gone < 1.0
                assert r.arrived < gone + 0.1

    await run_with(CancelOnDisconnect(app), body)
