"""Ending the tasks a fan-out started, in a way a second cancel cannot interrupt.

:func:`finish_tasks` cancels what is still running, waits for all of it, and closes every
stream that is not handed to the caller. It runs shielded: a cancellation that lands while it
waits (the caller cancelled twice, or the race is torn down by its own caller) is held until the
cleanup is over and re-raised then, so no task is left running and no limiter slot or
connection is left held. (trio's cancel shields; anyio's ``CancelScope(shield=True)``.)

:func:`after_close` adds a callback to a :class:`CompletionStream`'s close, for the race report
and budgets of a streamed call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ._stream import CompletionStream

__all__ = ["after_close", "close_result", "finish_tasks"]


def close_result(result: Any) -> None:
    """Close ``result`` if it holds a connection (a stream); a plain response holds none."""
    if isinstance(result, CompletionStream):
        result._abort()


async def _cleanup(tasks: Sequence[asyncio.Task[Any]], keep: Collection[asyncio.Task[Any]]) -> None:
    live = [t for t in tasks if not t.done()]
    for t in live:
        t.cancel()
    if live:
        await asyncio.wait(live)
    for t in tasks:
        if t.cancelled():
            continue
        exc = t.exception()  # retrieved, so never "Task exception was never retrieved"
        if exc is None and t not in keep:
            close_result(t.result())


async def finish_tasks(
    tasks: Sequence[asyncio.Task[Any]], keep: Collection[asyncio.Task[Any]] = ()
) -> None:
    """Cancel the tasks still running, wait for every one to end, and close the result of every
    task not in ``keep``. Completes even if the caller is cancelled meanwhile (any number of
    times); the cancellation is re-raised once everything is closed, and then the results of
    ``keep`` are closed too, since they will not be returned."""
    if not tasks:
        return
    cleanup = asyncio.ensure_future(_cleanup(tasks, keep))
    cancelled = False
    while True:
        try:
            await asyncio.shield(cleanup)
        except asyncio.CancelledError:
            if cleanup.done() and cleanup.cancelled():  # pragma: no cover - never cancelled
                raise
            cancelled = True
            if not cleanup.done():
                continue
        break
    cleanup.result()
    if cancelled:
        for t in keep:
            if t.done() and not t.cancelled() and t.exception() is None:
                close_result(t.result())
        raise asyncio.CancelledError


def after_close(stream: CompletionStream, callback: Callable[[CompletionStream], None]) -> None:
    """Call ``callback(stream)`` once the stream is closed (at once if it already is), after
    the callbacks already registered (the limiter's slot release)."""
    stream.add_close_callback(lambda _used: callback(stream))
