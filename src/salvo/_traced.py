"""What a :class:`~salvo._calltrace.CallTrace` puts around the retry loop (a Route whose
limiter times its waits) and reads off a closed stream (why it ended, as ``error.type``)."""

from __future__ import annotations

import asyncio
import builtins
import time
from typing import TYPE_CHECKING, cast

from ._errors import SalvoError
from ._http import is_transport_error, translate_transport_error

if TYPE_CHECKING:
    from ._call import Route
    from ._calltrace import CallTrace
    from ._limits import Limiter
    from ._models import Deployment
    from ._stream import CompletionStream

__all__ = ["TracedCall", "TracedLimiter", "stream_error"]

_perf = time.perf_counter


def stream_error(
    stream: CompletionStream, exc: BaseException | None, dep: Deployment
) -> str | None:
    """Why a CompletionStream closed, as ``error.type``; None for a clean end or the caller
    closing it early. The stream closes inside the ``except`` block that caught the failure,
    so the exception being handled is the cause; a body that ended under the stream before
    its terminator closes outside one (the stream is then neither closed by its reader nor
    finished). Known limit: a last event without its blank line, read only at EOF, counts as
    ending before the terminator here."""
    deferred = stream.pending_error  # to be raised after the buffered chunks
    if deferred is not None:
        return type(deferred).__name__
    if exc is None or isinstance(exc, GeneratorExit | StopAsyncIteration):
        if stream.closed or stream.finished:
            return None
        return "StreamError"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, builtins.TimeoutError) and not isinstance(exc, SalvoError):
        return "TimeoutError"
    if is_transport_error(exc):
        ep = dep.endpoint
        err = translate_transport_error(exc, provider=ep.provider, model=ep.model, url="")
        return type(err).__name__
    return type(exc).__name__


class TracedLimiter:
    """A Limiter seen through a trace: waits are timed. (A stream's slot releases the
    route's own limiter: ``_call.Slot``.)"""

    __slots__ = ("_limiter", "_trace")

    def __init__(self, limiter: Limiter, trace: CallTrace) -> None:
        self._limiter = limiter
        self._trace = trace

    @property
    def counts_tokens(self) -> bool:
        return self._limiter.counts_tokens

    async def acquire(self, tokens: int = 0, *, deadline: float | None = None) -> None:
        t = _perf()
        await self._limiter.acquire(tokens, deadline=deadline)
        self._trace.waited(_perf() - t)

    def release(self, tokens: int = 0, used: int | None = None) -> None:
        self._limiter.release(tokens, used)

    def pause(self, seconds: float) -> None:
        self._limiter.pause(seconds)


class TracedCall:
    """The call's Route, as the retry loop sees it (``RetryCall``), with the traced limiter."""

    __slots__ = ("limiter", "max_retries", "model", "provider", "secret", "timeout")

    def __init__(self, opts: Route, trace: CallTrace) -> None:
        self.limiter = cast("Limiter", TracedLimiter(opts.limiter, trace))
        self.max_retries = opts.max_retries
        self.timeout = opts.timeout
        self.provider = opts.provider
        self.model = opts.model
        self.secret = opts.secret
