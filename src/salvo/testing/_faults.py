"""Sending a response the way its Behavior says: latency, SSE framing, and every fault mode.

Format modules only build bytes: a JSON body for `send_json`, or a `StreamPlan` of SSE events for
`send_stream`. Timing, framing (line endings, comments, split writes, drip) and faults live here
once, so a fault means the same thing in every wire format:

- ``reset_before_body``: status line and headers, then a TCP reset (SO_LINGER 0, then abort).
- ``reset_mid_body``: half the JSON body (streams: the first ``fault_after`` events), then a reset.
- ``truncated_json``: a 200 whose JSON is cut in half, with correct framing (Content-Length of the
  half; streams: the event after ``fault_after`` events carries half its JSON), then a clean end.
- ``html_error``: a 502 ``text/html`` page, as a proxy in front of the provider would send.
- ``no_terminator``: the stream ends cleanly without its terminator (the plan says what that is).
- ``midstream_error``: after ``fault_after`` events, the format's in-stream error event, then end.
- ``stall``: headers, then nothing for ``stall_s`` seconds, then the normal answer.
- ``drip``: the body written a few bytes at a time, ``chunk_interval`` apart.

``split_writes`` (not a fault) writes each SSE event in two writes split mid-line, with a 1 ms
pause between them so that even an in-process reader receives the halves separately.

``fault_after`` is capped at the number of events before the terminator. Stream-only faults
(``no_terminator``, ``midstream_error``) do not change a non-streaming answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import msgspec
from aiohttp import web

from ._state import Exchange

__all__ = [
    "DRIP_BYTES",
    "JSON_TYPE",
    "SSE_TYPE",
    "SSEEvent",
    "StreamPlan",
    "encode",
    "send_html",
    "send_json",
    "send_stream",
]

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"
DRIP_BYTES = 5

#: One SSE event: the ``event:`` name (None for a ``data:``-only event) and the data payload.
SSEEvent: TypeAlias = tuple[str | None, bytes]

encode = msgspec.json.Encoder().encode

_BODY_FAULTS = frozenset({"reset_before_body", "reset_mid_body", "truncated_json", "stall", "drip"})
_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_COMMENT = b": keep-alive"
_SPLIT_PAUSE = 0.001


@dataclass(slots=True)
class StreamPlan:
    """The events of one streamed answer, as the format sends them.

    ``events`` come first, then ``tail`` (the terminator: ``[DONE]``, ``message_stop``, ...).
    Under ``no_terminator`` the fake sends ``unterminated_tail`` instead of ``tail``; under
    ``midstream_error`` it sends ``error`` after ``fault_after`` events and stops.
    """

    events: list[SSEEvent]
    tail: list[SSEEvent]
    error: SSEEvent
    unterminated_tail: list[SSEEvent] = field(default_factory=list)
    line_ending: str = "\n"


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _drip(resp: web.StreamResponse, data: bytes, interval: float) -> None:
    for i in range(0, len(data), DRIP_BYTES):
        if i:
            await _sleep(interval)
        await resp.write(data[i : i + DRIP_BYTES])


async def send_html(ex: Exchange) -> web.StreamResponse:
    """The ``html_error`` fault: a proxy's 502 page instead of the provider's JSON."""
    headers = {**ex.behavior.headers, "Content-Type": "text/html"}
    return await _send_whole(ex, 502, _HTML_502, headers)


async def _send_whole(
    ex: Exchange, status: int, payload: bytes, headers: dict[str, str]
) -> web.Response:
    resp = web.Response(status=status, body=payload, headers=headers)
    ex.response = resp
    ex.record.status = status
    await resp.prepare(ex.request)
    ex.record.first_byte = time.monotonic()  # headers go out with the body, in write_eof
    await resp.write_eof()
    ex.complete()
    return resp


async def send_json(
    ex: Exchange,
    status: int,
    payload: bytes,
    headers: Mapping[str, str],
    *,
    scripted: bool = True,
    content_type: str = JSON_TYPE,
) -> web.StreamResponse:
    """Send a whole JSON body. ``scripted=False`` (the fake's own validation errors) skips the
    Behavior's latency, extra headers and faults."""
    b = ex.behavior
    merged = dict(headers)
    fault = None
    if scripted:
        await _sleep(b.latency)
        if b.fault == "html_error":
            return await send_html(ex)
        merged.update(b.headers)
        fault = b.fault
    merged["Content-Type"] = content_type
    if fault not in _BODY_FAULTS:
        return await _send_whole(ex, status, payload, merged)

    half = payload[: len(payload) // 2]
    resp = web.StreamResponse(status=status, headers=merged)
    resp.content_length = len(half) if fault == "truncated_json" else len(payload)
    await ex.prepare(resp)
    if fault == "reset_before_body":
        await ex.abort()
        return resp
    if fault == "reset_mid_body":
        await resp.write(half)
        await ex.abort()
        return resp
    if fault == "truncated_json":
        await resp.write(half)
    elif fault == "stall":
        await _sleep(b.stall_s)
        await resp.write(payload)
    else:  # drip
        await _drip(resp, payload, b.chunk_interval)
    await resp.write_eof()
    ex.complete()
    return resp


def _select(plan: StreamPlan, fault: str | None, after: int) -> tuple[list[SSEEvent], bool]:
    """The events to send under ``fault``, and whether to reset the connection after them."""
    body = plan.events
    cut = min(after, len(body))
    if fault == "midstream_error":
        return [*body[:cut], plan.error], False
    if fault == "reset_mid_body":
        return body[:cut], True
    full = body + (plan.unterminated_tail if fault == "no_terminator" else plan.tail)
    if fault == "truncated_json" and full:
        cut = min(cut, len(full) - 1)
        name, data = full[cut]
        return [*full[:cut], (name, data[: max(1, len(data) // 2)])], False
    return full, False


def _frame(event: SSEEvent, eol: bytes, comment: bool) -> bytes:
    name, data = event
    out = _COMMENT + eol + eol if comment else b""
    if name is not None:
        out += b"event: " + name.encode() + eol
    return out + b"data: " + data + eol + eol


async def send_stream(
    ex: Exchange, plan: StreamPlan, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Send an SSE answer: headers, ``first_chunk_delay``, then the events ``chunk_interval``
    apart (all in one write when nothing asks for spacing), then a clean end of the body."""
    b = ex.behavior
    await _sleep(b.latency)
    fault = b.fault
    if fault == "html_error":
        return await send_html(ex)
    merged = {"Content-Type": SSE_TYPE, "Cache-Control": "no-cache", **headers, **b.headers}
    resp = web.StreamResponse(status=b.status, headers=merged)
    await ex.prepare(resp)
    if fault == "reset_before_body":
        await ex.abort()
        return resp
    if fault == "stall":
        await _sleep(b.stall_s)
    await _sleep(b.first_chunk_delay)

    events, reset = _select(plan, fault, b.fault_after)
    eol = (b.sse_line_ending or plan.line_ending).encode()
    frames = [_frame(e, eol, b.sse_comments) for e in events]
    if fault == "drip":
        await _drip(resp, b"".join(frames), b.chunk_interval)
    elif b.chunk_interval == 0 and not b.split_writes:
        if frames:
            await resp.write(b"".join(frames))
    else:
        for i, frame in enumerate(frames):
            if i:
                await _sleep(b.chunk_interval)
            if b.split_writes:
                mid = len(frame) // 2
                await resp.write(frame[:mid])
                await asyncio.sleep(_SPLIT_PAUSE)  # so the reader sees the halves apart
                await resp.write(frame[mid:])
            else:
                await resp.write(frame)
    if reset:
        await ex.abort()
        return resp
    await resp.write_eof()
    ex.complete()
    return resp
