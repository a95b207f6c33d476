"""A misbehaving upstream on a raw socket (no aiohttp on the server side): it answers every
request with whatever ``answer(path, body)`` returns, byte for byte, and records each request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Answer = tuple[int, bytes]  # status, JSON body


class Hostile:
    def __init__(self, answer: Callable[[str, bytes], Answer]) -> None:
        self.answer = answer
        self.requests: list[tuple[str, bytes]] = []
        self._server: asyncio.Server | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Hostile:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append((path, body))
                status, payload = self.answer(path, body)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def nested(depth: int) -> bytes:
    """``{"x": [[[...]]]}``, ``depth`` lists deep."""
    return b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
