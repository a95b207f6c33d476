"""CompletionStream: an async iterator of chunks that owns its HTTP response.

Leaving ``async with``, calling ``aclose()``, breaking out and closing, or cancelling the task
that iterates closes the response at once (``close()``: the connection is dropped, never
returned to the pool half-read). A stream that reaches its terminator releases the connection
for reuse.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from ._deadline import deadline_at
from ._errors import StreamError, TimeoutError
from ._http import SSEDecoder, SSEEvent, is_transport_error, translate_transport_error
from ._retry import redact_secret
from ._types import (
    ChatCompletionChunk,
    Choice,
    Message,
    ModelResponse,
    RaceReport,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    import aiohttp

    from .providers import Endpoint, StreamParser

__all__ = ["CompletionStream"]


class CompletionStream:
    """Chunks of one streamed completion, in the OpenAI chunk shape.

    ``model`` is the model string the caller asked for (useful after a race), ``provider``
    the provider that served it.
    """

    __slots__ = (
        "_closed",
        "_deadline",
        "_decoder",
        "_ends_at_eof",
        "_ep",
        "_error",
        "_idle_timeout",
        "_loop",
        "_on_close",
        "_parser",
        "_pending",
        "_resp",
        "_started",
        "_timeout",
        "_url",
        "_usage",
        "chunks_received",
        "model",
        "provider",
        "race",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        parser: StreamParser,
        *,
        endpoint: Endpoint,
        model: str,
        started: float,
        ends_at_eof: bool,
        idle_timeout: float | None = None,
        deadline: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """``idle_timeout``: the longest gap between reads; ``deadline`` (loop time): when the
        whole call's ``timeout`` runs out, which also bounds reading the stream to its end."""
        self._resp = resp
        self._parser = parser
        self._decoder = SSEDecoder()
        self._pending: deque[ChatCompletionChunk] = deque()
        self._closed = False
        self._ends_at_eof = ends_at_eof
        self._ep = endpoint
        self._url = str(resp.url)
        self._idle_timeout = idle_timeout
        self._deadline = deadline
        self._timeout = timeout
        self._on_close: Callable[[int | None], None] | None = None
        self._usage: Usage | None = None
        self._error: Exception | None = None
        self._loop = asyncio.get_running_loop()
        self._started = started
        self.model = model
        self.provider = endpoint.provider
        self.chunks_received = 0
        #: the race's report when this stream won an ``arace`` (complete once closed)
        self.race: RaceReport | None = None

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> CompletionStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        pending = self._pending
        while not pending:
            if self._closed:
                err, self._error = self._error, None
                if err is not None:
                    raise err
                raise StopAsyncIteration
            await self._read()
        return pending.popleft()

    async def _prime(self) -> None:
        """Read until the first chunk is buffered (or the stream ended)."""
        while not self._pending and not self._closed:
            await self._read()

    async def _read(self) -> None:
        resp = self._resp
        limit = self._idle_timeout
        by_deadline = False
        if self._deadline is not None:
            left = self._deadline - self._loop.time()
            if limit is None or left <= limit:
                limit, by_deadline = left, True
        try:
            if limit is None:
                data = await resp.content.readany()
            elif by_deadline and self._deadline is not None:
                with deadline_at(self._deadline):  # cheap: usually far away, rarely reached
                    data = await resp.content.readany()
            else:
                async with asyncio.timeout(limit):
                    data = await resp.content.readany()
        except asyncio.CancelledError:
            self._abort()
            raise
        except BaseException as exc:
            self._abort()
            if not is_transport_error(exc):
                raise
            if isinstance(exc, asyncio.TimeoutError) and limit is not None:
                raise (self._deadline_error() if by_deadline else self._idle_error()) from None
            raise translate_transport_error(
                exc, provider=self._ep.provider, model=self._ep.model, url=self._url
            ) from None
        if data:
            events = self._decoder.feed(data)
        else:
            events = self._decoder.flush()
        if events:
            self._handle(events)
        if not data and not self._closed:
            if self._parser.done or (self._ends_at_eof and self.chunks_received):
                self._finish()
            else:
                self._abort()
                err = StreamError(
                    f"The {self._ep.provider} stream for model {self._ep.model!r} ended "
                    + (
                        "without its terminator: the connection closed early and the answer "
                        "may be incomplete."
                        if self.chunks_received or not self._ends_at_eof
                        else "without any answer (a 200 with no chunk in it)."
                    )
                    + " Retry the call (salvo retries by itself until the first chunk is "
                    "delivered)."
                )
                err.provider, err.model = self._ep.provider, self._ep.model
                raise err

    def _handle(self, events: list[SSEEvent]) -> None:
        parser = self._parser
        now = self._loop.time() - self._started
        try:
            for event, data in events:
                chunk = parser.feed(event, data)
                if chunk is not None:
                    chunk.latency_s = now
                    self._pending.append(chunk)
                    self.chunks_received += 1
                    if chunk.usage is not None:
                        self._usage = chunk.usage
                if parser.done:
                    self._finish()
                    return
        except Exception as exc:
            self._abort()
            if self._ep.api_key:
                redact_secret(exc, self._ep.api_key)
            if self._pending:
                # Chunks that arrived before the error are handed out first, so the error
                # surfaces where it happened in the stream, however the bytes were split.
                self._error = exc
                return
            raise

    def _idle_error(self) -> TimeoutError:
        err = TimeoutError(
            f"The {self._ep.provider} stream for model {self._ep.model!r} sent nothing for "
            f"{self._idle_timeout:g} s (stream_idle_timeout), so salvo closed it. Raise "
            "stream_idle_timeout=... if the model pauses that long."
        )
        err.provider, err.model = self._ep.provider, self._ep.model
        return err

    def _deadline_error(self) -> TimeoutError:
        err = TimeoutError(
            f"The {self._ep.provider} stream for model {self._ep.model!r} did not finish within "
            f"the call's {self._timeout:g} s deadline (timeout={self._timeout:g}, which covers "
            "reading the stream to its end), so salvo closed it. Pass timeout=... to allow "
            "more time, or timeout=None for no deadline."
        )
        err.provider, err.model = self._ep.provider, self._ep.model
        return err

    # -- closing ---------------------------------------------------------------------------

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._resp.release()
            if self._on_close is not None:
                self._closed_now()

    def _abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._resp.close()
            if self._on_close is not None:
                self._closed_now()

    def _closed_now(self) -> None:
        callback, self._on_close = self._on_close, None
        if callback is not None:
            usage = self._usage
            callback(usage.total_tokens if usage is not None and usage.total_tokens else None)

    def _hold_slot(self, callback: Callable[[int | None], None]) -> bool:
        """Keep the caller's limiter slot until this stream closes, then call ``callback``
        with the total tokens the stream reported (None if it reported none); at once if the
        stream already ended while it was primed."""
        self._on_close = callback
        if self._closed:
            self._closed_now()
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def usage(self) -> Usage | None:
        """The usage the stream reported (its last chunk's), None until then."""
        return self._usage

    async def aclose(self) -> None:
        """Close the HTTP stream now (the connection is dropped if the stream was unfinished)."""
        self._abort()

    async def __aenter__(self) -> CompletionStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._abort()

    # -- conveniences -------------------------------------------------------------------------

    async def collect(self) -> ModelResponse:
        """Consume the rest of the stream and assemble it into one ModelResponse."""
        texts: dict[int, list[str]] = {}
        finish: dict[int, str | None] = {}
        tools: dict[int, dict[int, ToolCall]] = {}
        first: ChatCompletionChunk | None = None
        usage: Usage | None = None
        async with self:
            async for chunk in self:
                first = first or chunk
                if chunk.usage is not None:
                    usage = chunk.usage
                for c in chunk.choices:
                    d = c.delta
                    if d.content:
                        texts.setdefault(c.index, []).append(d.content)
                    if c.finish_reason is not None:
                        finish[c.index] = c.finish_reason
                    for tc in d.tool_calls or ():
                        slot = tools.setdefault(c.index, {})
                        call = slot.get(tc.index)
                        if call is None:
                            call = slot[tc.index] = ToolCall(id=tc.id or "")
                        fn = tc.function
                        if fn is not None:
                            call.function.name += fn.name or ""
                            call.function.arguments += fn.arguments or ""
        indexes = sorted(set(texts) | set(finish) | set(tools)) or [0]
        choices = [
            Choice(
                index=i,
                message=Message(
                    content="".join(texts[i]) if i in texts else None,
                    tool_calls=[tools[i][k] for k in sorted(tools[i])] if i in tools else None,
                ),
                finish_reason=finish.get(i),
            )
            for i in indexes
        ]
        return ModelResponse(
            id=first.id if first else "",
            created=first.created if first else 0,
            model=first.model if first else self._ep.model,
            choices=choices,
            usage=usage,
            provider=self.provider,
            latency_s=self._loop.time() - self._started,
        )
