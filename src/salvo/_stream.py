"""CompletionStream: an async iterator of chunks that owns its HTTP response.

Leaving ``async with``, calling ``aclose()``, breaking out and closing, or cancelling the task
that iterates closes the response at once (``close()``: the connection is dropped, never
returned to the pool half-read). A stream that reaches its terminator releases the connection
for reuse.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

from ._errors import StreamError
from ._http import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent
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
    from collections.abc import Callable

    from ._response import ResponseStream
    from .providers import Endpoint, StreamParser

__all__ = ["CompletionStream"]


class CompletionStream:
    """Chunks of one streamed completion, in the OpenAI chunk shape.

    ``model`` is the model string the caller asked for (useful after a race), ``provider``
    the provider that served it. It reads a :class:`~salvo.ResponseStream` (which holds the
    HTTP response and the limiter slot) and closes it when it closes; dropped unclosed, the
    response stream warns and gives its slot back when it is garbage-collected.
    """

    __slots__ = (
        "__weakref__",  # salvo's tracing holds a stream weakly (_calltrace)
        "_closed",
        "_decoder",
        "_ends_at_eof",
        "_ep",
        "_error",
        "_loop",
        "_parser",
        "_pending",
        "_raw",
        "_started",
        "_usage",
        "chunks_received",
        "model",
        "provider",
        "race",
    )

    def __init__(
        self,
        raw: ResponseStream,
        parser: StreamParser,
        *,
        endpoint: Endpoint,
        model: str,
        started: float,
        ends_at_eof: bool,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        """``raw`` carries the timeouts: ``stream_idle_timeout`` between reads, and the call's
        deadline, which also bounds reading the stream to its end."""
        self._raw = raw
        self._parser = parser
        self._decoder = SSEDecoder(max_event_bytes)
        self._pending: deque[ChatCompletionChunk] = deque()
        self._closed = False
        self._ends_at_eof = ends_at_eof
        self._ep = endpoint
        self._error: Exception | None = None
        self._loop = asyncio.get_running_loop()
        self._started = started
        self.model = model
        self.provider = endpoint.provider
        self.chunks_received = 0
        self._usage: Usage | None = None
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

    async def prime(self) -> None:
        """Read until the first chunk is buffered (or the stream ended): ``Client.send``'s
        ``accept`` for a stream, so that a failure before the first chunk is retried."""
        while not self._pending and not self._closed:
            await self._read()

    async def _read(self) -> None:
        try:
            data = await self._raw.read()
        except BaseException:
            self._closed = True  # the raw stream closed itself
            raise
        try:
            events = self._decoder.feed(data) if data else self._decoder.flush()
        except StreamError as exc:
            self._abort()
            exc.provider, exc.model = self._ep.provider, self._ep.model
            raise
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
                    usage = chunk.usage
                    if usage is not None:
                        self._usage = usage
                        if usage.total_tokens:
                            self._raw.used_tokens = usage.total_tokens
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

    # -- closing ---------------------------------------------------------------------------

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._raw.finish()

    def _abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._raw.abort()

    @property
    def closed(self) -> bool:
        return self._closed

    def add_close_callback(self, callback: Callable[[int | None], None]) -> None:
        """Run ``callback(used_tokens)`` once the stream is closed (at once if it already is),
        after the callbacks registered before it (the limiter slot's release first)."""
        self._raw.add_close_callback(callback)

    @property
    def finished(self) -> bool:
        """The stream reached its proper end: its terminator, or (a format that ends at EOF)
        the end of the body after at least one chunk. False while it is open, and after it
        was closed early or broke. (Inside a close callback that runs because the body ended,
        False means it ended before its terminator.)"""
        return self._parser.done or (
            self._ends_at_eof and self.chunks_received > 0 and self._raw.closed
        )

    @property
    def pending_error(self) -> Exception | None:
        """The error the stream broke with, while it waits behind the chunks that arrived
        before it (it is raised once they are read); None otherwise."""
        return self._error

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
