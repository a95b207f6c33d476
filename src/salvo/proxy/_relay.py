"""Moving bytes: request bodies in, upstream bodies and SSE streams out, timed.

:class:`Timer` measures the proxy's own share of a request: the time from the middleware's
entry to the moment the response headers go out, minus the time spent awaiting the upstream
call (the rate limiter, the provider's answer and any retry back-off are all "waiting on
upstream"). That figure is the ``x-salvo-overhead-ms`` header. For a stream it stops when the
headers are sent; each chunk after that is one ``write`` of the bytes that arrived.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from aiohttp import web

from .._deadline import deadline_at
from .._errors import SalvoError, StreamError
from ._errors import ProxyError, Redactor, error_body, from_exception

if TYPE_CHECKING:
    from .._calltrace import CallTrace
    from .._response import ResponseStream
    from .._stream import CompletionStream
    from ._scrub import Scrubber

__all__ = [
    "OVERHEAD_HEADER",
    "EventFramer",
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
_DONE_LINE = b"data: [DONE]"
_TAIL = 2048  # bytes kept of a relayed stream (traced): its [DONE] and its final usage chunk
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


class EventFramer:
    """Cuts a byte stream at SSE event boundaries (a blank line: ``\n\n``, ``\r\n\r\n`` or
    ``\r\r``): ``feed`` returns the whole events that arrived; the unfinished one is kept, at
    most ``max_event`` bytes of it (then :class:`~salvo.StreamError`). Relaying whole events
    means an error event the proxy appends always starts on a fresh line, and a secret split
    across two reads is whole when it is scrubbed."""

    __slots__ = ("_max", "rest")

    def __init__(self, max_event: int) -> None:
        self._max = max_event
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        buf = self.rest + data if self.rest else data
        end = buf.rfind(b"\n\n")
        if end != -1:
            end += 2
        if end != len(buf) and b"\r" in buf:  # not at the end: maybe a CR-style boundary
            for sep in (b"\r\n\r\n", b"\r\r"):
                at = buf.rfind(sep)
                if at != -1 and at + len(sep) > end:
                    end = at + len(sep)
        if end == -1:
            self.rest = buf
            out = b""
        else:
            self.rest = buf[end:]
            out = buf[:end]
        if len(self.rest) > self._max:
            raise StreamError(
                f"An event of the upstream stream is larger than the proxy's limit of "
                f"{self._max} bytes (max_event_bytes)."
            )
        return out


async def relay_sse(
    request: web.Request,
    timer: Timer,
    upstream: ResponseStream,
    *,
    model: str,
    scrub: Scrubber,
    max_event: int,
    trace: CallTrace | None = None,
) -> web.StreamResponse:
    """Relay an OpenAI-format SSE body event by event, as the bytes arrive.

    ``upstream`` comes from ``Client.send(..., stream=True)``: it holds the key's limiter slot
    and carries the call's deadline and idle timeout; it is closed however the relay ends (the
    client went away and the handler is cancelled, a write failed, the upstream broke), and
    released for reuse only after a complete body. Whole events are relayed, scrubbed of the
    proxy's secrets; a broken, oversized or unterminated upstream stream ends with an error
    event on a fresh line, which the OpenAI SDKs raise as an error.

    ``trace`` (observed): marked when the first bytes arrive, and ended with the relay
    (``passthrough_done``) with the last bytes relayed, whose final ``usage`` chunk (when the
    upstream sent one) gives the tokens, or with why it stopped early (``"cancelled"``: the
    client went away).
    """
    relay = _Relay(trace)
    if trace is None:
        return await relay.run(request, timer, upstream, model, scrub, max_event)
    try:
        resp = await relay.run(request, timer, upstream, model, scrub, max_event)
    except asyncio.CancelledError:
        trace.passthrough_done(relay.tail, "cancelled")
        raise
    except BaseException as exc:
        trace.passthrough_done(relay.tail, exc)
        raise
    trace.passthrough_done(relay.tail, relay.ended)
    return resp


class _Relay:
    """One SSE relay; what a trace needs of it: the last bytes relayed (``tail``) and why it
    ended early (``ended``: a ProxyError, ``"cancelled"``, or None for a complete stream)."""

    __slots__ = ("ended", "tail", "trace")

    def __init__(self, trace: CallTrace | None) -> None:
        self.trace = trace
        self.tail = b""
        self.ended: ProxyError | str | None = None

    async def run(
        self,
        request: web.Request,
        timer: Timer,
        upstream: ResponseStream,
        model: str,
        scrub: Scrubber,
        max_event: int,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers=SSE_HEADERS)
        resp.headers[OVERHEAD_HEADER] = timer.overhead_ms()
        framer = EventFramer(max_event)
        last = b""
        failure: ProxyError | None = None
        trace = self.trace
        first = trace is not None
        # The call's deadline bounds the whole relay, writes to a slow client included: one
        # deadline around the loop rather than one per read.
        deadline, upstream.deadline = upstream.deadline, None
        async with upstream:
            await resp.prepare(request)
            try:
                with deadline_at(deadline):
                    while True:
                        data = await upstream.read()
                        if not data:
                            break
                        if first and trace is not None:
                            trace.first_chunk()
                            first = False
                        out = framer.feed(data)
                        if not out:
                            continue
                        if scrub:
                            out = scrub(out)
                        try:
                            await resp.write(out)
                        except ConnectionResetError:
                            self.ended = "cancelled"
                            return resp
                        last = out
                        if trace is not None:
                            tail = self.tail
                            self.tail = out[-_TAIL:] if len(out) >= _TAIL else (tail + out)[-_TAIL:]
            except (SalvoError, builtins.TimeoutError) as exc:
                failure = _stream_failure(exc, model)
        if failure is None:
            if framer.rest.strip() == _DONE_LINE:  # a terminator without its blank line
                await _write_end(resp, _DONE)
                return resp
            if b"[DONE]" not in last[-32:]:
                failure = ProxyError(
                    502,
                    f"The upstream stream for model {model!r} ended without its [DONE] terminator.",
                    type="server_error",
                    code="upstream_stream",
                )
        self.ended = failure
        await _write_end(resp, b"" if failure is None else _sse_error(failure))
        return resp


def _stream_failure(exc: Exception, model: str) -> ProxyError:
    if isinstance(exc, builtins.TimeoutError):  # salvo's (idle) or the deadline's
        return ProxyError(
            504,
            f"The upstream stream for model {model!r} ran out of time.",
            type="timeout_error",
            code="upstream_timeout",
        )
    what = (
        "carried an event over the proxy's size limit"
        if isinstance(exc, StreamError)
        else "broke off"
    )
    return ProxyError(
        502,
        f"The upstream stream for model {model!r} {what}.",
        type="server_error",
        code="upstream_stream",
    )


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
