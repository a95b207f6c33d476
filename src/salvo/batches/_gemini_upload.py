"""The Gemini Files API's resumable upload (protocols.md 14.1), resumed for real.

``start`` opens a session (its URL comes back in ``X-Goog-Upload-URL``); the bytes go to it in
one ``upload, finalize`` request from ``X-Goog-Upload-Offset``. When that request fails after
some bytes may have arrived (the connection broke, or a retry was refused because the offset
moved on), the session is asked (``X-Goog-Upload-Command: query``) how many bytes it holds
(``X-Goog-Upload-Size-Received``) and the rest is sent from there: the body is made again from
its source and the bytes already received are skipped. Three tries, then the error stands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec

from .._errors import BadRequestError, TransportError
from ._rest import Rest, StreamedPayload, unreadable

__all__ = ["upload_jsonl"]


class _FileName(msgspec.Struct):
    name: str


class _Uploaded(msgspec.Struct):
    file: _FileName


_DECODE_UPLOADED = msgspec.json.Decoder(_Uploaded).decode


async def _skip(pieces: AsyncIterator[bytes], offset: int) -> AsyncIterator[bytes]:
    async for piece in pieces:
        if offset >= len(piece):
            offset -= len(piece)
            continue
        yield piece[offset:] if offset else piece
        offset = 0


def _body(
    pieces: Callable[[], AsyncIterator[bytes]], offset: int, size: int
) -> Callable[[], StreamedPayload]:
    """A body factory (one fresh body per attempt) for the bytes from ``offset`` on."""

    def body() -> StreamedPayload:
        return StreamedPayload(
            lambda: _skip(pieces(), offset), size - offset, content_type="application/jsonl"
        )

    return body


async def upload_jsonl(
    rest: Rest,
    upload_url: str,
    pieces: Callable[[], AsyncIterator[bytes]],
    size: int,
    display_name: str,
) -> str:
    """Upload ``size`` bytes (made fresh by ``pieces()``) as a JSONL file; its ``files/...``."""
    start = {
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": str(size),
        "X-Goog-Upload-Header-Content-Type": "application/jsonl",
    }
    meta = {"file": {"displayName": display_name, "mimeType": "application/jsonl"}}
    headers = (await rest.request("POST", upload_url, json=meta, headers=start)).headers
    session = headers.get("X-Goog-Upload-URL")
    if not session:
        raise unreadable("gemini", "upload start without X-Goog-Upload-URL", b"")
    offset = 0
    for attempt in range(3):
        final = {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": str(offset)}
        body = _body(pieces, offset, size)
        try:
            answer = await rest.request("POST", session, body=body, headers=final)
            raw, headers = answer.content, answer.headers
            break
        except (TransportError, BadRequestError):
            if attempt == 2:
                raise
            got = (
                await rest.request("POST", session, headers={"X-Goog-Upload-Command": "query"})
            ).headers
            received = got.get("X-Goog-Upload-Size-Received", "")
            if not received.isdigit() or int(received) > size:
                raise
            offset = int(received)
    if headers.get("X-Goog-Upload-Status", "").lower() != "final":
        raise unreadable("gemini", "upload answer whose status is not 'final'", raw)
    try:
        return _DECODE_UPLOADED(raw).file.name
    except msgspec.DecodeError:
        raise unreadable("gemini", "file upload answer", raw) from None
