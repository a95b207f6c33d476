"""REST calls to the providers' files and batch APIs, through ``Client.send``.

The calls share the client's session, its limiter for the key, its retries and its deadline;
error statuses become the provider adapter's ProviderError (``adapter.parse_error``) and
aiohttp's exceptions arrive as salvo's. A response is closed, never drained, when its reader
is cancelled. Uploads are streamed by a small aiohttp
Payload that reads the source piece by piece on the loop (aiohttp's own file payload reads in
a thread pool, which salvo does not use).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import msgspec
from aiohttp import payload as aiohttp_payload

from .._errors import ProviderError, ResponseDecodeError
from ..providers import HTTPRequest
from ._store import api_error

if TYPE_CHECKING:
    from aiohttp.abc import AbstractStreamWriter

    from .._call import Route
    from .._client import Client
    from .._response import Response

__all__ = ["Rest", "StreamedPayload", "decoded", "unreadable"]

_ENCODE = msgspec.json.Encoder().encode
T = TypeVar("T")
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
    """The REST side of one provider deployment, sent through ``Client.send``: ``call`` for
    JSON, ``stream`` for bytes."""

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
        self.route: Route = client.route(
            f"{provider}/{what}", {k: v for k, v in over.items() if v is not None}
        )
        self.opts = self.route  # the name this had before Client.route
        self.dep = self.route.dep
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
        resp = await self.request(method, url, json=json, body=body, params=params, headers=headers)
        return resp.content

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """As :meth:`call`, but the whole :class:`~salvo.Response` (status, headers, body).
        An error status is the adapter's ProviderError, reworded for the object the call was
        about (a 404 says to check the id, not the model)."""
        hdrs = dict(self.headers if json is None else self.json_headers)
        if headers:
            hdrs.update(headers)
        data: bytes | Body = _ENCODE(json) if json is not None else (body or b"")
        req = HTTPRequest(method, _with_query(url, params), hdrs, data)
        try:
            return await self.client.send(req, self.route)
        except ProviderError as err:
            raise api_error(err, method, req.url) from None

    async def stream(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[bytes]:
        """GET ``url`` and yield its body in pieces (a download: not held to the client's
        body cap nor, once open, to the call's deadline). Opening is retried; once bytes have
        been yielded a broken body raises a TransportError. Closing the generator (or
        cancelling its consumer) closes the response, which gives the key's slot back."""
        req = HTTPRequest("GET", _with_query(url, params), {**self.headers, **(headers or {})}, b"")
        try:
            body = await self.client.send(req, self.route, stream=True)
        except ProviderError as err:
            raise api_error(err, "GET", req.url) from None
        body.deadline = None
        async with body:
            while True:
                piece = await body.read()
                if not piece:
                    break
                yield piece


def _with_query(url: str, params: Mapping[str, str] | None) -> str:
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def unreadable(
    provider: str, what: str, raw: bytes, exc: Exception | None = None
) -> ResponseDecodeError:
    """The error for an answer of ``provider``'s that salvo cannot read: what it was, why
    (``exc``, when given) and how it began."""
    why = "" if exc is None else f" ({exc})"
    err = ResponseDecodeError(
        f"{provider} sent a {what} that salvo cannot read{why}; it began with "
        f"{raw[:200].decode('utf-8', 'replace')!r}."
    )
    err.provider = provider
    return err


def decoded(
    decode: Callable[[bytes], T], raw: bytes, provider: str, what: str, *, why: bool = True
) -> T:
    """``decode(raw)``, or :func:`unreadable` (naming msgspec's reason when ``why``)."""
    try:
        return decode(raw)
    except msgspec.DecodeError as exc:
        raise unreadable(provider, what, raw, exc if why else None) from None
