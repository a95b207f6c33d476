"""A misbehaving upstream written on raw sockets (no tests here): for what the fake provider
cannot do on purpose (an HTML page with status 200 on a stream, a gzip bomb, an endless SSE
line, a reset in the middle of a body, a secret cut across two writes).

``RawUpstream(respond)`` listens on 127.0.0.1; for each request it parses the request line,
headers and body and awaits ``respond(request, writer)``, which writes whatever bytes it likes.
Each connection is recorded: what arrived, and whether the client hung up (``client_closed``)
before the script ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["RawRequest", "RawUpstream", "gzip_bomb", "http_head", "sse_head"]


@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


Respond = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[None]]


def http_head(status: int = 200, headers: dict[str, str] | None = None) -> bytes:
    fields = {"Connection": "close", **(headers or {})}
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def sse_head() -> bytes:
    """Headers of an SSE body that ends when the connection closes."""
    return http_head(200, {"Content-Type": "text/event-stream"})


def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about 1/1000 of the size)."""
    block = b"\0" * (1 << 20)
    out = gzip.compress(block * (size >> 20), compresslevel=9)
    return out


class RawUpstream:
    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[RawRequest] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (every response says ``Connection: close``)."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            line, *rest = head.decode("latin-1").split("\r\n")
            method, path, _ = line.split(" ", 2)
            headers = {}
            for h in rest:
                if ":" in h:
                    k, v = h.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            req = RawRequest(method, path, headers, body)
            self.requests.append(req)
            watch = asyncio.create_task(_watch_eof(reader, req))
            try:
                await self.respond(req, writer)
                await writer.drain()
            except (ConnectionError, RuntimeError):
                req.client_closed.set()
            finally:
                req.done.set()
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _watch_eof(reader: asyncio.StreamReader, req: RawRequest) -> None:
    """Set ``client_closed`` when the client hangs up while the response is going out."""
    with contextlib.suppress(Exception):
        data = await reader.read(1)
        if not data:
            req.client_closed.set()


async def write_slowly(writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
    """Each piece its own write, flushed, with a loop turn between (separate TCP reads)."""
    for p in pieces:
        writer.write(p)
        await writer.drain()
        await asyncio.sleep(0.02)
