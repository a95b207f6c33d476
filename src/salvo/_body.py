"""Reading bodies within bounds: a whole response body up to the client's
``max_body_bytes`` (after decompression: aiohttp inflates a gzip body in bounded steps, and
salvo stops at the limit), an error body up to :data:`ERROR_READ_LIMIT` bytes whatever its size
claims, and at most :data:`ERROR_KEEP_CHARS` of it kept on the exception. Past a limit the
connection is dropped (never pooled half-read) and the error names the setting.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._errors import ResponseDecodeError
from ._http import DEFAULT_MAX_EVENT_BYTES, is_transport_error, translate_transport_error

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_EVENT_BYTES",
    "ERROR_KEEP_CHARS",
    "ERROR_READ_LIMIT",
    "read_capped",
    "read_error_body",
    "trim_error",
]

#: The largest decoded response body salvo reads into memory (``Client(max_body_bytes=...)``).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: How much of an error body is read (the rest is never read; the connection is dropped).
ERROR_READ_LIMIT = 16 * 1024
#: How much of an error body's text an exception keeps.
ERROR_KEEP_CHARS = 4 * 1024


def _too_big(provider: str, model: str, what: str, limit: int, setting: str) -> ResponseDecodeError:
    err = ResponseDecodeError(
        f"{provider} sent {what} for model {model!r} larger than salvo's limit of {limit} bytes "
        f"({setting}); salvo stopped reading and dropped the connection. Raise "
        f"Client({setting}=...) if such answers are expected."
    )
    err.provider, err.model = provider, model
    return err


async def read_capped(
    resp: aiohttp.ClientResponse,
    limit: int,
    *,
    provider: str,
    model: str,
    url: str,
    head: bytes = b"",
) -> bytes:
    """The whole body, at most ``limit`` decoded bytes (``head``: bytes already read). The
    response is closed (not pooled) if reading fails, is cancelled or passes the limit; at its
    end aiohttp gives the connection back to the pool by itself."""
    content = resp.content
    try:
        body = head or await content.readany()
        if not body:
            return body
        size = len(body)
        piece = await content.readany() if size <= limit else b""
        if piece:  # more than one read: collect the pieces (the usual answer is one)
            parts = [body]
            while piece:
                size += len(piece)
                if size > limit:
                    break
                parts.append(piece)
                piece = await content.readany()
            body = b"".join(parts)
    except BaseException as exc:
        resp.close()
        if is_transport_error(exc):
            raise translate_transport_error(exc, provider=provider, model=model, url=url) from None
        raise
    if size > limit:
        resp.close()
        raise _too_big(provider, model, "a response body", limit, "max_body_bytes")
    return body


async def read_error_body(resp: aiohttp.ClientResponse, *, provider: str, model: str) -> bytes:
    """At most :data:`ERROR_READ_LIMIT` bytes of an error body. A failure while reading it
    gives what arrived (the status is the news); the response is released when the body
    ended within the limit, closed otherwise."""
    content = resp.content
    parts: list[bytes] = []
    size = 0
    try:
        while size < ERROR_READ_LIMIT:
            piece = await content.readany()
            if not piece:
                resp.release()
                break
            parts.append(piece)
            size += len(piece)
        else:
            resp.close()
    except asyncio.CancelledError:
        resp.close()
        raise
    except Exception as exc:
        resp.close()
        if not is_transport_error(exc):
            raise
    body = b"".join(parts)
    return body[:ERROR_READ_LIMIT]


def trim_error(err: Any) -> None:
    """Keep at most :data:`ERROR_KEEP_CHARS` of an error's text body and message."""
    body = getattr(err, "body", None)
    if isinstance(body, str) and len(body) > ERROR_KEEP_CHARS:
        err.body = body[:ERROR_KEEP_CHARS] + "…"
    elif isinstance(body, bytes) and len(body) > ERROR_KEEP_CHARS:
        err.body = body[:ERROR_KEEP_CHARS] + b"..."
    elif isinstance(body, dict) and _encoded_size(body) > ERROR_KEEP_CHARS:
        # the fields callers read (message, type, code, param), each cut short
        kept: dict[str, Any] = {"truncated": True}
        for key in ("message", "type", "code", "param", "status"):
            value = body.get(key)
            if isinstance(value, str):
                kept[key] = value if len(value) <= 1024 else value[:1024] + "…"
            elif isinstance(value, int | float | bool) or value is None:
                kept[key] = value
        err.body = kept
    message = getattr(err, "message", None)
    if isinstance(message, str) and len(message) > ERROR_KEEP_CHARS:
        err.message = message[:ERROR_KEEP_CHARS] + "…"
        err.args = (err.message, *err.args[1:])


def _encoded_size(value: Any) -> int:
    import msgspec

    try:
        return len(msgspec.json.encode(value))
    except (TypeError, ValueError, RecursionError):
        return ERROR_KEEP_CHARS + 1
