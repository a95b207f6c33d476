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

from .._errors import ProviderError, error_for_status
from .._types import ChatCompletionChunk, EmbeddingResponse, ModelResponse

__all__ = [
    "Adapter",
    "Capabilities",
    "Endpoint",
    "HTTPRequest",
    "ProviderInfo",
    "StreamParser",
    "error_message_from_body",
    "make_provider_error",
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


def error_message_from_body(body: bytes) -> tuple[Any, str | None]:
    """Decode an error body leniently: (decoded body or text, the message found in it)."""
    try:
        decoded = _ANY.decode(body)
    except msgspec.DecodeError:
        text = body.decode("utf-8", "replace").strip()
        if text.lstrip().startswith("<"):
            return text, "the response was an HTML page, not JSON (a proxy or gateway error)"
        return text, text[:300] or None
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
            return decoded, str(detail)
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
