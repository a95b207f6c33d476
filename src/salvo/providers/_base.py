"""What every provider adapter is, and the pure helpers they share.

An adapter does no I/O. Given an :class:`Endpoint` (where to send, with which key) it builds
an :class:`HTTPRequest` (URL, headers, body bytes), and it turns the bytes that come back into
salvo's OpenAI-shaped types, or into the right :class:`~salvo.ProviderError`. Streams are
parsed one SSE event at a time by a small stateful :class:`StreamParser` per stream.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgspec

from .._errors import ProviderError, ResponseDecodeError, SalvoError, error_for_status
from .._types import ChatCompletionChunk, EmbeddingResponse, ModelResponse

__all__ = [
    "Adapter",
    "DECODE_ERRORS",
    "Capabilities",
    "Endpoint",
    "HTTPRequest",
    "ProviderInfo",
    "StreamParser",
    "bounded",
    "decode_problem",
    "error_message_from_body",
    "make_provider_error",
    "no_answer",
    "retry_after_from_headers",
    "should_retry_from_headers",
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one deployment's calls go: the provider, its model name, base URL and key."""

    provider: str
    model: str
    api_base: str
    api_key: str | None = field(default=None, repr=False)  # never in a repr or a log
    api_version: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class HTTPRequest(NamedTuple):
    """One request for ``Client.send``. ``body`` is bytes, or a zero-argument callable that
    makes a fresh body (anything aiohttp takes as ``data``) for each attempt: a streamed
    upload, a multipart writer."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | Callable[[], Any]

    def __repr__(self) -> str:  # the headers carry the key
        size = f"{len(self.body)} bytes" if isinstance(self.body, bytes) else "made per attempt"
        return (
            f"HTTPRequest(method={self.method!r}, url={self.url!r}, "
            f"headers=<{len(self.headers)} hidden>, body=<{size}>)"
        )


@dataclass(frozen=True, slots=True)
class Capabilities:
    streaming: bool = True
    tools: bool = True
    embeddings: bool = False
    batch_api: bool = False


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """One row of the provider table: how a model string's provider is reached."""

    name: str
    adapter: Adapter
    base_url: str
    key_env: str | None
    base_env: str | None = None
    key_required: bool = True
    prefixes: tuple[str, ...] = ()
    capabilities: Capabilities = Capabilities()
    version_env: str | None = None
    default_version: str | None = None
    finish_reasons: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""


class StreamParser(Protocol):
    """Turns one SSE event into zero or one chunk; raises on an in-stream error event."""

    @property
    def done(self) -> bool:
        """True once the stream's terminator was seen (for formats that have one)."""
        ...

    def feed(self, event: str | None, data: bytes) -> ChatCompletionChunk | None: ...


class Adapter(Protocol):
    name: str
    #: True when the format's streams end at connection close rather than with a terminator.
    stream_ends_at_eof: bool

    def headers(self, ep: Endpoint) -> dict[str, str]:
        """The request headers for every call to this endpoint (computed once per endpoint)."""
        ...

    def build_chat(
        self,
        ep: Endpoint,
        headers: Mapping[str, str],
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        stream: bool,
    ) -> HTTPRequest: ...

    def parse_chat(self, ep: Endpoint, body: bytes) -> ModelResponse: ...

    def stream_parser(self, ep: Endpoint) -> StreamParser: ...

    def build_embedding(
        self, ep: Endpoint, headers: Mapping[str, str], input: Any, params: Mapping[str, Any]
    ) -> HTTPRequest: ...

    def parse_embedding(self, ep: Endpoint, body: bytes) -> EmbeddingResponse: ...

    def parse_error(
        self, ep: Endpoint, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError: ...


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """The server's requested delay in seconds: ``retry-after-ms``, then ``retry-after``
    (seconds or an HTTP date). ``None`` when absent or unparseable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        return max(float(ra), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def should_retry_from_headers(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


_ANY = msgspec.json.Decoder()

#: What decoding a body can raise: msgspec's errors, and RecursionError for JSON nested past
#: the interpreter's depth (msgspec counts nesting against the recursion limit). Every adapter
#: catches this tuple where bytes become values, so nesting is a salvo error in place.
DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, RecursionError)

#: Nesting kept of a decoded error body; deeper structure becomes its text, so code that
#: walks a body (redaction, re-encoding for a client, logging) never recurses far.
MAX_ERROR_DEPTH = 32


def decode_problem(exc: BaseException) -> str:
    """A short phrase for a decoding failure, for error messages."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply to decode"
    return str(exc)


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: no recursion)."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth >= limit:
            return True
        todo.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def bounded(value: Any, text: bytes, limit: int = MAX_ERROR_DEPTH) -> Any:
    """``value`` when it nests at most ``limit`` deep; else the start of its text."""
    if isinstance(value, dict | list) and _depth_over(value, limit):
        return text[:2000].decode("utf-8", "replace")
    return value


def error_message_from_body(body: bytes) -> tuple[Any, str | None]:
    """Decode an error body leniently: (decoded body or text, the message found in it). A
    body nested deeper than :data:`MAX_ERROR_DEPTH` is kept as (the start of) its text; its
    message is still found."""
    try:
        decoded = _ANY.decode(body)
    except DECODE_ERRORS:
        text = body.decode("utf-8", "replace").strip()
        if text.lstrip().startswith("<"):
            return text, "the response was an HTML page, not JSON (a proxy or gateway error)"
        return text, text[:300] or None
    kept, msg = _message_of(decoded)
    return bounded(kept, body), msg


def _message_of(decoded: Any) -> tuple[Any, str | None]:
    if isinstance(decoded, dict):
        inner = decoded.get("error")
        if isinstance(inner, dict):
            msg = inner.get("message")
            return inner, msg if isinstance(msg, str) else None
        if isinstance(inner, str):
            return decoded, inner
        msg = decoded.get("message")
        if isinstance(msg, str):
            return decoded, msg
        detail = decoded.get("detail")
        if detail is not None:
            deep = isinstance(detail, dict | list) and _depth_over(detail, MAX_ERROR_DEPTH)
            return decoded, None if deep else str(detail)[:2000]
    return decoded, None


_HINTS = {
    401: "Check the API key{key_hint}.",
    403: "The key may not use this model or resource.",
    404: "Check the model name and the base URL.",
    429: "The provider is throttling; salvo retries this with backoff.",
}
_SERVER_HINT = (
    "The provider (or a proxy in front of it) failed, not your request; salvo retries this."
)


def make_provider_error(
    ep: Endpoint,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    key_env: str | None = None,
) -> ProviderError:
    """The ProviderError for an error response in any format whose message sits where
    :func:`error_message_from_body` looks."""
    decoded, msg = error_message_from_body(body)
    cls = error_for_status(status)
    text = f"{ep.provider} returned HTTP {status} for model {ep.model!r}"
    if msg:
        msg = msg.strip()
        text += f": {msg}" if msg.endswith((".", "!", "?")) else f": {msg}."
    else:
        text += "."
    hint = _HINTS.get(status) or (_SERVER_HINT if status >= 500 else None)
    if hint is not None:
        text += " " + hint.format(key_hint=f" ({key_env})" if key_env else "")
    return cls(
        text,
        status_code=status,
        provider=ep.provider,
        model=ep.model,
        body=decoded,
        retry_after=retry_after_from_headers(headers),
        should_retry=should_retry_from_headers(headers),
    )


def _carried_status(error: Any) -> int:
    """The HTTP status an error object inside a 200 names (``code`` or ``status`` as a number,
    e.g. OpenRouter's ``{"error": {"code": 429}}``); else 502, a gateway that failed."""
    if isinstance(error, dict):
        for key in ("code", "status"):
            value = error.get(key)
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
                return value
    return 502


def no_answer(ep: Endpoint, body: bytes, what: str = "answer") -> SalvoError:
    """The error for a 2xx body that holds no ``what`` (no choices, no vectors): the provider
    error it carries (``{"error": {...}}``, classed by the status it names, else a 502
    ServerError), or a ResponseDecodeError. Either way the call failed: in a race it loses."""
    decoded, msg = error_message_from_body(body)
    carried = isinstance(decoded, dict) and (msg is not None or b'"error"' in body)
    if carried:
        status = _carried_status(decoded)
        cls = error_for_status(status)
        text = (
            f"{ep.provider} answered HTTP 200 for model {ep.model!r} with an error instead of "
            f"an {what}: {(msg or 'no message').strip()}"
        )
        return cls(
            text if text.endswith((".", "!", "?")) else text + ".",
            status_code=status,
            provider=ep.provider,
            model=ep.model,
            body=decoded,
        )
    preview = body[:200].decode("utf-8", "replace")
    err = ResponseDecodeError(
        f"{ep.provider} answered HTTP 200 for model {ep.model!r} with no {what} (the body "
        f"began with {preview!r}). That is a broken response, not an empty answer; salvo "
        "does not count it as a success."
    )
    err.provider, err.model = ep.provider, ep.model
    return err
