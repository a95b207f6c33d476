"""CancelOnDisconnect driven directly through the ASGI interface, hostile cases: a disconnect
in the middle of a body upload, an app that raises, the server cancelling the request, an app
that swallows the cancellation, a multi-piece body handed over in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from salvo.asgi import CancelOnDisconnect

SCOPE = {"type": "http", "method": "POST", "path": "/"}


class Channel:
    """The server's side of one request: messages to hand the app, and what the app sent."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for m in messages:
            self.inbox.put_nowait(m)
        self.sent: list[dict[str, Any]] = []
        self.reads = 0

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


async def test_body_pieces_in_order_then_a_normal_answer() -> None:
    got: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            got.append(msg["body"])
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"".join(got)})

    ch = Channel(body(b"a", True), body(b"b", True), body(b"c"))
    await CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send)
    assert got == [b"a", b"b", b"c"]
    assert ch.sent[-1]["body"] == b"abc"


async def test_next_piece_is_read_only_once_the_app_took_the_previous_one() -> None:
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await release.wait()  # sits on the first piece
        await receive()

    ch = Channel(body(b"a", True), body(b"b", True), body(b"c", True), body(b"d"))
    task = asyncio.create_task(CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send))
    for _ in range(20):
        await asyncio.sleep(0)
    assert ch.reads == 2  # the piece the app holds and one more, never the whole body
    release.set()
    await task
    assert ch.reads >= 2


async def test_disconnect_mid_upload_cancels_the_app() -> None:
    cancelled = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    await asyncio.sleep(10)  # an app that ignores it: cancelled anyway
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ch = Channel(body(b"a", True), {"type": "http.disconnect"})
    async with asyncio.timeout(5):
        await CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send)
    assert cancelled.is_set() and ch.sent == []


async def test_disconnect_while_the_app_awaits_work() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        started.set()
        try:
            await asyncio.sleep(30)  # the upstream call
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ch = Channel(body(b""))
    task = asyncio.create_task(CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send))
    await started.wait()
    ch.inbox.put_nowait({"type": "http.disconnect"})
    async with asyncio.timeout(5):
        await task  # returns quietly: nobody is waiting for an answer
    assert cancelled.is_set()


async def test_an_app_error_propagates() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise ValueError("boom")

    ch = Channel(body(b""))
    with pytest.raises(ValueError, match="boom"):
        await CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send)


async def test_the_server_cancelling_the_request_cancels_the_app() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ch = Channel(body(b""))
    task = asyncio.create_task(CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_an_app_that_cancels_itself_is_not_hidden() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError  # not a disconnect: must not be swallowed

    ch = Channel(body(b""))
    with pytest.raises(asyncio.CancelledError):
        await CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send)


async def test_a_client_gone_before_the_app_reads_anything() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["type"])
        await asyncio.sleep(30)

    ch = Channel({"type": "http.disconnect"})
    async with asyncio.timeout(5):
        await CancelOnDisconnect(app)(SCOPE, ch.receive, ch.send)  # cancelled, quietly
    assert seen in ([], ["http.disconnect"]) and ch.sent == []
