"""What :meth:`salvo.Client.send` hands back: a whole :class:`Response`, or a
:class:`ResponseStream` of byte pieces that owns its HTTP response and its limiter slot.

A whole body is read within bounds by ``_body.py`` (``max_body_bytes``, error bodies).

A ResponseStream closes its response (``close()``: the connection is dropped, never pooled
half-read) when it is closed early, when reading fails or is cancelled, and when it is
garbage-collected unclosed (with a :class:`ResourceWarning`, as aiohttp warns for an unclosed
response). Whichever way it ends, its close callback runs exactly once: that is how the
limiter slot a stream holds is given back, with the tokens its reader reported.
"""

from __future__ import annotations

import asyncio
import builtins
import warnings
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._deadline import deadline_at
from ._errors import TimeoutError
from ._http import is_transport_error, translate_transport_error

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Response", "ResponseStream"]


class Response:
    """A whole HTTP response: ``status``, ``headers`` (case-insensitive), ``content`` bytes."""

    __slots__ = ("content", "headers", "status", "url")

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes, url: str) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.url = url

    def json(self) -> Any:
        """The body decoded as JSON (``msgspec.json.decode``)."""
        import msgspec

        return msgspec.json.decode(self.content)

    def __repr__(self) -> str:
        return f"<salvo.Response {self.status} {len(self.content)} bytes>"


class ResponseStream:
    """An open HTTP response read as it arrives: ``status``, ``headers``, and an async
    iterator of byte pieces (each what one network read delivered, decompressed).

    ``async with`` it, or ``aclose()`` it: until then it holds its connection and its limiter
    slot. Reading to the end releases the connection for reuse; anything else drops it.
    ``deadline`` (loop time, from ``Client.send``) bounds reading to the end; set it to None
    for a download that may take longer. ``used_tokens`` may be set by whoever parses the
    stream (the usage it reported); the close callback receives it, so a tokens-per-minute
    limiter is charged what was really used.
    """

    __slots__ = (
        "_head",
        "_idle_timeout",
        "_loop",
        "_on_close",
        "_resp",
        "_timeout",
        "closed",
        "deadline",
        "headers",
        "model",
        "provider",
        "status",
        "url",
        "used_tokens",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        *,
        provider: str,
        model: str,
        url: str,
        idle_timeout: float | None = None,
        deadline: float | None = None,
        timeout: float | None = None,
        on_close: Callable[[int | None], None] | None = None,
    ) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.url = url
        self.provider = provider
        self.model = model
        self._idle_timeout = idle_timeout
        self.deadline = deadline
        self._timeout = timeout
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.used_tokens: int | None = None
        self._head = b""

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (``text/event-stream``)."""
        value = self.headers.get("Content-Type", "")
        return value.partition(";")[0].strip().lower()

    # -- reading -------------------------------------------------------------------------------

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        data = await self.read()
        if not data:
            raise StopAsyncIteration
        return data

    async def read(self) -> bytes:
        """The next piece; ``b""`` once the body has ended (the stream is then closed and
        the connection released). Idle and deadline timeouts raise :class:`~salvo.TimeoutError`,
        a broken connection :class:`~salvo.ConnectionError`; the stream is closed either way."""
        if self._head:
            data, self._head = self._head, b""
            return data
        if self.closed:
            return b""
        limit = self._idle_timeout
        by_deadline = False
        deadline = self.deadline
        if deadline is not None:
            left = deadline - self._loop.time()
            if limit is None or left <= limit:
                limit, by_deadline = left, True
        content = self._resp.content
        try:
            if limit is None:
                data = await content.readany()
            elif by_deadline:
                with deadline_at(deadline):  # cheap: usually far away, rarely reached
                    data = await content.readany()
            else:
                async with asyncio.timeout(limit):
                    data = await content.readany()
        except asyncio.CancelledError:
            self.abort()
            raise
        except BaseException as exc:
            self.abort()
            if not is_transport_error(exc):
                raise
            if isinstance(exc, builtins.TimeoutError) and limit is not None:
                raise (self._deadline_error() if by_deadline else self._idle_error()) from None
            raise translate_transport_error(
                exc, provider=self.provider, model=self.model, url=self.url
            ) from None
        if not data:
            self.finish()
        return data

    def unread(self, data: bytes) -> None:
        """Put ``data`` back: the next :meth:`read` returns it first."""
        self._head = data + self._head

    def _idle_error(self) -> TimeoutError:
        err = TimeoutError(
            f"The {self.provider} stream for model {self.model!r} sent nothing for "
            f"{self._idle_timeout:g} s (stream_idle_timeout), so salvo closed it. Raise "
            "stream_idle_timeout=... if the model pauses that long."
        )
        err.provider, err.model = self.provider, self.model
        return err

    def _deadline_error(self) -> TimeoutError:
        t = self._timeout
        shown = "its" if t is None else f"the call's {t:g} s"
        err = TimeoutError(
            f"The {self.provider} stream for model {self.model!r} did not finish within "
            f"{shown} deadline (timeout={t}, which covers reading the stream to its end), so "
            "salvo closed it. Pass timeout=... to allow more time, or timeout=None for no "
            "deadline."
        )
        err.provider, err.model = self.provider, self.model
        return err

    # -- closing ----------------------------------------------------------------------------

    def finish(self) -> None:
        """The body ended as it should: release the connection for reuse, run the callback."""
        if not self.closed:
            self.closed = True
            self._resp.release()
            if self._on_close is not None:
                self._fire()

    def abort(self) -> None:
        """Stop now: drop the connection (it is never pooled half-read), run the callback."""
        if not self.closed:
            self.closed = True
            self._resp.close()
            if self._on_close is not None:
                self._fire()

    def _fire(self) -> None:
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback(self.used_tokens)

    def add_close_callback(self, callback: Callable[[int | None], None]) -> None:
        """Run ``callback(used_tokens)`` when the stream closes (at once if it already has)."""
        previous = self._on_close
        if previous is None:
            self._on_close = callback
        else:

            def both(used: int | None) -> None:
                try:
                    previous(used)
                finally:
                    callback(used)

            self._on_close = both
        if self.closed:
            self._fire()

    async def aclose(self) -> None:
        """Close now (the connection is dropped if the body was unfinished). Idempotent."""
        self.abort()

    async def __aenter__(self) -> ResponseStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()

    def __del__(self) -> None:
        if self.closed:
            return
        # Dropped without being closed: give the connection and the slot back, and say so.
        try:
            loop = self._loop
        except AttributeError:  # __init__ never ran to the end
            return
        warnings.warn(
            f"Unclosed salvo stream for {self.provider} model {self.model!r}: close it "
            "(async with, aclose(), or read it to the end); salvo closed it and gave its "
            "rate-limit slot back.",
            ResourceWarning,
            source=self,
            stacklevel=2,
        )
        if loop.is_closed():
            self.closed = True
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.abort()
        else:  # collected on another thread: close on the loop's own thread
            self.closed = True
            try:
                loop.call_soon_threadsafe(self._abort_later)
            except RuntimeError:  # the loop closed meanwhile: nothing left to give back to
                pass

    def _abort_later(self) -> None:
        self._resp.close()
        if self._on_close is not None:
            self._fire()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<salvo.ResponseStream {self.status} {state} {self.provider}/{self.model}>"
