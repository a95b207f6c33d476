"""Moving bytes: request bodies in, upstream bodies and SSE streams out, timed.

:class:`Timer` measures the proxy's own share of a request: the time from the middleware's
entry to the moment the response headers go out, minus the time spent awaiting the upstream
call (the rate limiter, the provider's answer and any retry back-off are all "waiting on
upstream"). That figure is the ``x-salvo-overhead-ms`` header. For a stream it stops when the
headers are sent; each chunk after that is one ``write`` of the bytes that arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from aiohttp import web

from .._deadline import deadline_at
from .._errors import SalvoError
from .._http import is_transport_error
from ._errors import ProxyError, Redactor, error_body, from_exception

if TYPE_CHECKING:
    import aiohttp

    from .._observe import CallTrace
    from .._stream import CompletionStream

__all__ = [
    "OVERHEAD_HEADER",
    "SSE_HEADERS",
    "TIMER",
    "Timer",
    "read_body",
    "relay_chunks",
    "relay_sse",
    "timed",
]

T = TypeVar("T")

OVERHEAD_HEADER = "x-salvo-overhead-ms"
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_DONE = b"data: [DONE]\n\n"
_TAIL = 2048  # bytes kept of a relayed stream: its [DONE] and its final usage chunk
_ENCODE = msgspec.json.Encoder().encode
_perf = time.perf_counter


class Timer:
    """Started when a request enters the proxy; ``upstream`` accumulates awaited time."""

    __slots__ = ("start", "upstream")

    def __init__(self) -> None:
        self.start = _perf()
        self.upstream = 0.0

    def overhead_ms(self) -> str:
        return f"{(_perf() - self.start - self.upstream) * 1000.0:.3f}"


TIMER = web.RequestKey("salvo_proxy_timer", Timer)


async def timed(timer: Timer, awaitable: Awaitable[T]) -> T:
    """Await an upstream call, counting the wait as upstream time (even when it fails)."""
    t = _perf()
    try:
        return await awaitable
    finally:
        timer.upstream += _perf() - t


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body; 413 at once when Content-Length already says it is too big
    (aiohttp enforces the same ``client_max_size`` while reading a body without one)."""
    size = request.content_length
    if size is not None and size > limit:
        raise ProxyError(
            413,
            f"The request body is {size} bytes; this proxy accepts at most {limit} "
            "(setting max_request_size_mb).",
            code="request_too_large",
        )
    return await request.read()


def _sse_error(err: ProxyError) -> bytes:
    return b"data: " + error_body(err) + b"\n\n"


async def _write_end(resp: web.StreamResponse, data: bytes) -> None:
    """Write a last event and end the body; a client that already left is not an error."""
    try:
        if data:
            await resp.write(data)
        await resp.write_eof()
    except ConnectionResetError:
        pass


async def relay_sse(
    request: web.Request,
    timer: Timer,
    upstream: aiohttp.ClientResponse,
    *,
    model: str,
    idle_timeout: float | None,
    deadline: float | None = None,
    trace: CallTrace | None = None,
) -> web.StreamResponse:
    """Relay an OpenAI-format SSE body chunk by chunk, as the bytes arrive.

    Each ``write`` waits for the socket to drain (back-pressure). The upstream response is
    closed the moment the relay stops early for any reason: the client went away (the handler
    is cancelled), a write failed, or the upstream broke; it is released for reuse only after
    a complete body. A broken or unterminated upstream stream ends with an error event, which
    the OpenAI SDKs raise as an error. ``deadline`` (loop time) bounds the whole call, as
    it does for salvo's own streams; ``idle_timeout`` the gap between reads.
    """
    resp = web.StreamResponse(headers=SSE_HEADERS)
    resp.headers[OVERHEAD_HEADER] = timer.overhead_ms()
    complete = False
    tail = b""
    failure: ProxyError | None = None
    try:
        await resp.prepare(request)
        try:
            with deadline_at(deadline):
                first = None if trace is None else trace.first_chunk
                complete, tail = await _pump(upstream, resp, idle_timeout, first)
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            timed_out = isinstance(exc, TimeoutError)
            failure = ProxyError(
                504 if timed_out else 502,
                f"The upstream stream for model {model!r} "
                + ("ran out of time." if timed_out else "broke off."),
                type="timeout_error" if timed_out else "server_error",
                code="upstream_timeout" if timed_out else "upstream_stream",
            )
    finally:
        if complete:
            upstream.release()
        else:
            upstream.close()
        if trace is not None:  # the span ends with the relay; usage from the final chunk
            trace.passthrough_done(tail, None if complete else failure or "cancelled")
    if failure is None and complete and b"[DONE]" not in tail:
        failure = ProxyError(
            502,
            f"The upstream stream for model {model!r} ended without its [DONE] terminator.",
            type="server_error",
            code="upstream_stream",
        )
    if failure is not None:
        await _write_end(resp, _sse_error(failure))
    elif complete:
        await _write_end(resp, b"")
    return resp


async def _pump(
    upstream: aiohttp.ClientResponse,
    resp: web.StreamResponse,
    idle_timeout: float | None,
    first: Callable[[], None] | None = None,
) -> tuple[bool, bytes]:
    """Copy until the upstream body ends: (True, its last bytes, enough to hold a final
    usage chunk); (False, ...) when the client went away first. ``first()`` is called when
    the first bytes arrive."""
    content = upstream.content
    tail = b""
    while True:
        if idle_timeout is None:
            data = await content.readany()
        else:
            async with asyncio.timeout(idle_timeout):
                data = await content.readany()
        if not data:
            return True, tail
        if first is not None:
            first()
            first = None
        try:
            await resp.write(data)
        except ConnectionResetError:
            return False, tail
        tail = data[-_TAIL:] if len(data) >= _TAIL else (tail + data)[-_TAIL:]


async def relay_chunks(
    request: web.Request,
    timer: Timer,
    stream: CompletionStream,
    redact: Redactor,
    *,
    extra_headers: dict[str, Any] | None = None,
) -> web.StreamResponse:
    """Send a CompletionStream (a translated provider, or a race's winner) as OpenAI SSE."""
    resp = web.StreamResponse(headers=SSE_HEADERS)
    if extra_headers:
        resp.headers.update(extra_headers)
    resp.headers[OVERHEAD_HEADER] = timer.overhead_ms()
    async with stream:
        await resp.prepare(request)
        try:
            async for chunk in stream:
                await resp.write(b"data: " + _ENCODE(chunk) + b"\n\n")
        except ConnectionResetError:
            return resp
        except SalvoError as exc:
            await _write_end(resp, _sse_error(from_exception(exc, redact)))
            return resp
    await _write_end(resp, _DONE)
    return resp
