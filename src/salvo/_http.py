"""The network edge: the aiohttp session, SSE framing, and the one place where aiohttp's
exceptions become salvo's.

SSE framing follows the WHATWG rules (protocols.md 0.2): lines end at ``\\n``, ``\\r\\n`` or a
lone ``\\r``; ``:`` starts a comment; one leading space is stripped from a value; several
``data:`` lines join with ``\\n``; a blank line dispatches; a pending event is flushed at EOF.
Only the unfinished tail of the previous read is kept, so a long stream is never re-split.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple

from ._errors import ConnectionError, StreamError, TimeoutError, TransportError

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "SSEDecoder",
    "SSEEvent",
    "is_transport_error",
    "new_session",
    "translate_transport_error",
]


#: The largest single SSE event salvo buffers (``Client(max_event_bytes=...)``).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEEvent(NamedTuple):
    event: str | None
    data: bytes


_new_event = tuple.__new__  # SSEEvent without NamedTuple's Python-level __new__


class SSEDecoder:
    """Incremental SSE decoder: ``feed(bytes) -> list[SSEEvent]``, then ``flush()`` at EOF."""

    __slots__ = ("_data", "_event", "_has_data", "_max", "_pending_cr", "_size", "_tail")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        """``max_event_bytes``: the most one event (or one line) may buffer before
        :class:`~salvo.StreamError` is raised; an endless line would otherwise grow forever."""
        self._max = max_event_bytes
        self._size = 0
        self._tail = b""
        self._pending_cr = False
        self._event: str | None = None
        self._data: list[bytes] = []
        self._has_data = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            self._tail += chunk
            if len(self._tail) > self._max:
                raise self._too_big()
            return []
        if self._tail:
            chunk = self._tail + chunk
        if (
            chunk[-2:] == b"\n\n"
            and chunk[:6] == b"data: "
            and not self._has_data
            and self._event is None
        ):
            data = chunk[6:-2]
            if b"\n" not in data:  # one whole event in one read: a token of a live stream
                if len(data) > self._max:
                    raise self._too_big()
                self._tail = b""
                return [_new_event(SSEEvent, (None, data))]
        out: list[SSEEvent] = []
        if b"\n\n" in chunk:
            # Whole events first. The usual event is one ``data: ...`` line: sliced out
            # directly, without splitting it into lines or keeping any state.
            blocks = chunk.split(b"\n\n")
            chunk = blocks.pop()
            for block in blocks:
                if (
                    block[:6] == b"data: "
                    and b"\n" not in block
                    and not self._has_data
                    and self._event is None
                ):
                    if len(block) > self._max:
                        raise self._too_big()
                    out.append(_new_event(SSEEvent, (None, block[6:])))
                    continue
                for line in block.split(b"\n"):
                    if line:
                        self._line(line)
                    elif self._has_data or self._event is not None:
                        out.append(self._dispatch())
                if self._has_data or self._event is not None:
                    out.append(self._dispatch())
        lines = chunk.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > self._max:
            raise self._too_big()
        for line in lines:
            if line:
                self._line(line)
            elif self._has_data or self._event is not None:
                out.append(self._dispatch())
        return out

    def flush(self) -> list[SSEEvent]:
        """Events still pending at EOF (a last line without its newline, no blank line)."""
        if self._tail:
            self._line(self._tail)
            self._tail = b""
        if self._has_data or self._event is not None:
            return [self._dispatch()]
        return []

    def _dispatch(self) -> SSEEvent:
        data = self._data
        ev = SSEEvent(self._event, data[0] if len(data) == 1 else b"\n".join(data))
        self._event = None
        self._data = []
        self._has_data = False
        self._size = 0
        return ev

    def _too_big(self) -> StreamError:
        return StreamError(
            f"An event of the stream is larger than salvo's limit of {self._max} bytes "
            "(max_event_bytes), so salvo stopped reading it and closed the stream. Raise "
            "Client(max_event_bytes=...) if such events are expected."
        )

    def _line(self, line: bytes) -> None:
        if line[:5] == b"data:":
            value = line[5:]
            if value[:1] == b" ":
                value = value[1:]
            self._data.append(value)
            self._has_data = True
            self._size += len(value)
            if self._size > self._max:
                raise self._too_big()
            return
        if line[:1] == b":":
            return
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif field == b"data":  # "data" with no colon: an empty data line
            self._data.append(b"")
            self._has_data = True
        # "id", "retry" and unknown fields are ignored.


def new_session(*, connect_timeout: float | None = 10.0) -> aiohttp.ClientSession:
    """One pooled session for a Client: no cookie jar, no per-host cap (limiters cap).

    aiohttp is imported here, on first use, not when salvo is imported: it is most of the
    import time of a program that only configures salvo."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
        auto_decompress=True,
    )


def translate_transport_error(
    exc: BaseException, *, provider: str, model: str, url: str
) -> TransportError:
    """The salvo error for an aiohttp or socket failure (the only place that maps them)."""
    import aiohttp

    err: TransportError
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = ConnectionError(
            f"Could not connect to {provider} at {url} for model {model!r}: {exc.os_error}. "
            "Check api_base and that the server is running."
        )
    elif isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        err = TimeoutError(
            f"{provider} did not answer in time for model {model!r} ({url}): connecting or "
            "reading timed out. salvo retries this; raise connect_timeout=... if the network "
            "is slow."
        )
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        err = ConnectionError(
            f"{provider} closed the connection before the response for model {model!r} "
            "was complete; salvo retries this."
        )
    elif isinstance(exc, aiohttp.ClientPayloadError):
        err = ConnectionError(
            f"The connection to {provider} broke while the response for model {model!r} was "
            f"being read ({_payload_detail(exc)}). This is usually a passing network or server "
            "fault, and salvo retries it; if it keeps happening, check any proxy or load "
            "balancer between you and the provider."
        )
    elif isinstance(exc, aiohttp.ClientError | OSError):
        err = ConnectionError(f"The connection to {provider} for model {model!r} failed: {exc!r}.")
    else:  # pragma: no cover - callers only pass the types above
        err = TransportError(f"{provider} request for model {model!r} failed: {exc!r}.")
    err.provider, err.model = provider, model
    return err


def _payload_detail(exc: BaseException) -> str:
    """What aiohttp's payload error says, without its nested reprs."""
    text = str(exc)
    parts = []
    received = text.find("received ")
    if received != -1 and " bytes" in text[received:]:
        parts.append(text[received : text.index(" bytes", received) + 6])
    if "reset by peer" in text:
        parts.append("connection reset by peer")
    return "; ".join(parts) or text[:200]


def is_transport_error(exc: BaseException) -> bool:
    """True for the exceptions :func:`translate_transport_error` handles (aiohttp's client
    errors, socket errors, aiohttp's read timeouts) and never for salvo's own errors."""
    if isinstance(exc, TransportError):
        return False
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return True
    import aiohttp

    return isinstance(exc, aiohttp.ClientError)
