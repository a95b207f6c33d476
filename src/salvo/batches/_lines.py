"""JSONL lines: the OpenAI batch input line (protocols.md 4.5) and output/error line (4.6).

Input lines decode into a small view struct; output lines are encoded from structs straight to
bytes (no dict round trip) with one module-level encoder, and decoded back into
:class:`~salvo.batches.BatchResult` by :func:`decode_result`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from .._errors import ConfigError, ProviderError, SalvoError, TimeoutError, TransportError
from .._types import EmbeddingResponse, ModelResponse
from ..providers._base import DECODE_ERRORS, decode_problem
from ._types import BatchError, BatchResult

__all__ = [
    "BOM",
    "CHAT",
    "EMBEDDINGS",
    "ENDPOINTS",
    "InputLine",
    "OutputLine",
    "ResponsePart",
    "check_anthropic_custom_id",
    "decode_input",
    "decode_result",
    "encode_line",
    "error_line",
    "internal_error_line",
    "iter_lines",
    "new_request_id",
    "numbered_lines",
]

CHAT = "chat"
EMBEDDINGS = "embeddings"
#: Request URLs a batch line may name, and what they run (Azure's come without ``/v1``).
ENDPOINTS = {
    "/v1/chat/completions": CHAT,
    "/chat/completions": CHAT,
    "/v1/embeddings": EMBEDDINGS,
    "/embeddings": EMBEDDINGS,
}
_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class InputLine(msgspec.Struct):
    """``{"custom_id", "method", "url", "body"}``; types are checked by hand for messages
    that say which line is wrong and how."""

    custom_id: Any = None
    method: Any = "POST"
    url: Any = None
    body: Any = None


class ResponsePart(msgspec.Struct):
    status_code: int
    request_id: str | None
    body: Any


class OutputLine(msgspec.Struct):
    """``{"id", "custom_id", "response": {...} | null, "error": {...} | null}``."""

    id: str
    custom_id: str | None
    response: ResponsePart | None
    error: BatchError | None


class _ResponseView(msgspec.Struct):
    status_code: int | None = None
    request_id: str | None = None
    body: msgspec.Raw = msgspec.Raw(b"null")


class _ErrorView(msgspec.Struct):
    code: str | int | None = None
    message: str | None = None
    line: int | None = None


class _OutputView(msgspec.Struct):
    id: str | None = None
    custom_id: str | None = None
    response: _ResponseView | None = None
    error: _ErrorView | None = None


class _ErrorBody(msgspec.Struct):
    error: Any = None


_DECODE_INPUT = msgspec.json.Decoder(InputLine).decode
_DECODE_OUTPUT = msgspec.json.Decoder(_OutputView).decode
_DECODE_CHAT = msgspec.json.Decoder(ModelResponse).decode
_DECODE_EMBEDDING = msgspec.json.Decoder(EmbeddingResponse).decode
_DECODE_ERROR_BODY = msgspec.json.Decoder(_ErrorBody).decode
_ENCODER = msgspec.json.Encoder()


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


def encode_line(line: OutputLine) -> bytes:
    """One JSONL line, newline included."""
    buf = bytearray()
    _ENCODER.encode_into(line, buf)
    buf += b"\n"
    return bytes(buf)


#: The UTF-8 byte order mark.
BOM = b"\xef\xbb\xbf"


def decode_input(raw: bytes) -> InputLine:
    """Decode one input line; ConfigError (without the line number) when it is not an object
    with the batch line's fields. A UTF-8 byte order mark (which editors on Windows put at
    the start of a file, so on line 1) is skipped."""
    if raw[:3] == BOM:
        raw = raw[3:]
    try:
        return _DECODE_INPUT(raw)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"not a batch request line ({exc})") from None
    except DECODE_ERRORS as exc:
        raise ConfigError(f"not valid JSON ({decode_problem(exc)})") from None


def check_anthropic_custom_id(custom_id: Any, line: int) -> str:
    """Anthropic's rule (protocols.md 6.1): 1-64 characters of ``[a-zA-Z0-9_-]``."""
    if not isinstance(custom_id, str) or not _ANTHROPIC_ID.match(custom_id):
        raise ConfigError(
            f"Line {line}: custom_id {custom_id!r} cannot be sent to Anthropic, which needs "
            "1-64 characters of letters, digits, '_' and '-'. Rename it in the input file."
        )
    return custom_id


def _error_code(err: SalvoError) -> str:
    if isinstance(err, ConfigError):
        return "invalid_request"
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, TransportError):
        return "connection_error"
    return "error"


def error_line(
    line_id: str, custom_id: str | None, err: SalvoError | str, *, line: int | None = None
) -> OutputLine:
    """The error-file line for a failed request. An HTTP error keeps the provider's status and
    error body in ``response`` (as OpenAI's batch API does); any other failure goes in the
    top-level ``error`` with a code."""
    if isinstance(err, ProviderError):
        body = err.body if isinstance(err.body, dict) else {"message": str(err.body or err)}
        if "message" not in body:
            body = {**body, "message": str(err)}
        resp = ResponsePart(err.status_code, new_request_id(), {"error": body})
        return OutputLine(line_id, custom_id, resp, None)
    if isinstance(err, str):
        error = BatchError(code="invalid_request", message=err, line=line)
        return OutputLine(line_id, custom_id, None, error)
    return OutputLine(line_id, custom_id, None, BatchError(code=_error_code(err), message=str(err)))


def internal_error_line(line_id: str, custom_id: str | None, exc: Exception) -> OutputLine:
    """The error-file line for a failure salvo did not expect (a bug, an answer it cannot
    hold): code ``internal_error``, the exception named."""
    text = f"{type(exc).__name__}: {exc}"[:300]
    message = f"salvo could not process this request ({text}); see its log."
    return OutputLine(line_id, custom_id, None, BatchError(code="internal_error", message=message))


def decode_result(raw: bytes) -> BatchResult:
    """An output or error line as a BatchResult (msgspec.DecodeError if it is not one)."""
    view = _DECODE_OUTPUT(raw)
    resp = view.response
    err = view.error
    error: BatchError | None = None
    parsed: ModelResponse | EmbeddingResponse | None = None
    status = resp.status_code if resp is not None else None
    if err is not None:
        code = err.code if err.code is None else str(err.code)
        error = BatchError(code=code, message=err.message, line=err.line)
    elif resp is not None and bytes(resp.body) != b"null":
        body = bytes(resp.body)
        if status is not None and 200 <= status < 300:
            parsed = _DECODE_CHAT(body) if b'"choices"' in body else _DECODE_EMBEDDING(body)
        else:
            error = _http_error(body, status)
    return BatchResult(
        custom_id=view.custom_id,
        status_code=status,
        response=parsed,
        error=error,
        request_id=resp.request_id if resp is not None else None,
        id=view.id,
    )


def _http_error(body: bytes, status: int | None) -> BatchError:
    try:
        inner = _DECODE_ERROR_BODY(body).error
    except DECODE_ERRORS:
        inner = None
    if isinstance(inner, dict):
        code = inner.get("code") or inner.get("type")
        msg = inner.get("message")
        return BatchError(
            code=None if code is None else str(code),
            message=msg if isinstance(msg, str) else f"HTTP {status}",
        )
    return BatchError(code=str(status), message=f"HTTP {status}")


async def iter_lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The non-blank lines (newline included when present) of a stream of byte pieces."""
    tail = b""
    async for piece in pieces:
        lines = (tail + piece).split(b"\n") if tail else piece.split(b"\n")
        tail = lines.pop()
        for line in lines:
            if line.strip():
                yield line + b"\n"
    if tail.strip():
        yield tail


async def numbered_lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, line without its newline) of the non-blank lines of a stream of byte
    pieces; blank lines count in the numbering, as in an editor."""
    n, tail = 0, b""
    async for piece in pieces:
        lines = (tail + piece).split(b"\n")
        tail = lines.pop()
        for raw in lines:
            n += 1
            if raw.strip():
                yield n, raw
    if tail.strip():
        yield n + 1, tail
