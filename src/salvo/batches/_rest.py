"""REST calls to the providers' files and batch APIs, through a salvo Client.

The calls share the client's session, its limiter for the key, its retries and its deadline;
error statuses become the provider adapter's ProviderError (``adapter.parse_error``) and
aiohttp's exceptions go through :func:`salvo._http.translate_transport_error`. A response is
closed, never drained, when its reader is cancelled. Uploads are streamed by a small aiohttp
Payload that reads the source piece by piece on the loop (aiohttp's own file payload reads in
a thread pool, which salvo does not use).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import payload as aiohttp_payload

from .._http import is_transport_error, translate_transport_error
from ._store import CHUNK, api_error

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.abc import AbstractStreamWriter

    from .._call import CallOptions
    from .._client import Client

__all__ = ["Rest", "StreamedPayload"]

_ENCODE = msgspec.json.Encoder().encode
Body = Callable[[], Any]


class StreamedPayload(aiohttp_payload.Payload):
    """An upload body whose bytes come from an async iterator made fresh for each attempt
    (so a retried upload starts again from the first byte)."""

    def __init__(
        self,
        factory: Callable[[], AsyncIterator[bytes]],
        size: int | None,
        *,
        content_type: str = "application/octet-stream",
        filename: str | None = None,
    ) -> None:
        super().__init__(None, content_type=content_type, filename=filename)
        self._factory = factory
        self._size = size

    async def write(self, writer: AbstractStreamWriter) -> None:
        async for piece in self._factory():
            await writer.write(piece)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        remaining = content_length
        async for piece in self._factory():
            if remaining is None:
                await writer.write(piece)
            elif remaining > 0:
                await writer.write(piece[:remaining])
                remaining -= len(piece)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed upload cannot be decoded in memory")


class Rest:
    """The REST side of one provider deployment: ``call`` for JSON, ``stream`` for bytes."""

    def __init__(
        self,
        client: Client,
        provider: str,
        *,
        api_key: str | None,
        api_base: str | None,
        what: str,
    ) -> None:
        over = {"api_key": api_key, "api_base": api_base}
        self.client = client
        self.opts: CallOptions = client.options(
            f"{provider}/{what}", {k: v for k, v in over.items() if v is not None}
        )
        self.dep = self.opts.dep
        self.ep = self.dep.endpoint
        self.json_headers = dict(self.dep.headers)
        self.headers = {k: v for k, v in self.json_headers.items() if k != "content-type"}

    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """Send (with retries) and return the whole response body. ``body`` makes a fresh
        request body for each attempt (a multipart writer, a streamed payload)."""

        async def attempt() -> bytes:
            hdrs = dict(self.headers if json is None else self.json_headers)
            if headers:
                hdrs.update(headers)
            data = _ENCODE(json) if json is not None else (body() if body is not None else None)
            resp = await self._send(method, url, data, hdrs, params)
            return await self._read(resp, url)

        result: bytes = await self.client._with_retries(self.opts, attempt, 0)
        return result

    async def stream(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[bytes]:
        """GET ``url`` and yield its body in pieces. Opening is retried; once bytes have been
        yielded a broken body raises a TransportError. Closing the generator (or cancelling
        its consumer) closes the response."""
        hdrs = {**self.headers, **(headers or {})}

        async def attempt() -> aiohttp.ClientResponse:
            return await self._send("GET", url, None, hdrs, params)

        resp: aiohttp.ClientResponse = await self.client._with_retries(self.opts, attempt, 0)
        try:
            while True:
                try:
                    piece = await resp.content.read(CHUNK)
                except Exception as exc:
                    if not is_transport_error(exc):
                        raise
                    raise self._transport(exc, url) from None
                if not piece:
                    break
                yield piece
        finally:
            resp.close()

    def _transport(self, exc: BaseException, url: str) -> Exception:
        return translate_transport_error(
            exc, provider=self.ep.provider, model=self.ep.model, url=url
        )

    async def _send(
        self,
        method: str,
        url: str,
        data: Any,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
    ) -> aiohttp.ClientResponse:
        session = self.client._session or self.client._open()
        try:
            resp = await session.request(method, url, data=data, headers=headers, params=params)
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            raise self._transport(exc, url) from None
        if resp.status >= 400:
            raw = await self._read(resp, url)
            err = self.dep.adapter.parse_error(self.ep, resp.status, resp.headers, raw)
            raise api_error(err, raw, method, url)
        return resp

    async def _read(self, resp: aiohttp.ClientResponse, url: str) -> bytes:
        try:
            return await resp.read()
        except BaseException as exc:
            resp.close()
            if is_transport_error(exc):
                raise self._transport(exc, url) from None
            raise
