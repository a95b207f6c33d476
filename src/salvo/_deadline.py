"""Deadlines cheap enough for every call: ``with deadline_at(when):`` is
``async with asyncio.timeout_at(when):`` for code that does not await inside enter or exit.

A call's overall deadline is usually far away (the default timeout is 600 s) and is almost
never reached, yet ``asyncio.timeout_at`` costs each call a timer handle pushed onto and
cancelled out of the loop's heap plus its own state machine: several microseconds, a tenth of
what aiohttp itself spends on a request. Here a deadline more than ``COARSE_AFTER`` seconds
away instead joins a set that one shared timer per event loop checks every ``TICK`` seconds
(only while the set is not empty): entering and leaving cost a set insert and removal. Such a
deadline fires up to ``TICK`` late, which is nothing against 30 s or more. Nearer deadlines
get their own exact timer, as with asyncio.

When the deadline passes, the task is cancelled and the ``with`` block raises the builtin
``TimeoutError`` (from the CancelledError), with the same bookkeeping as ``asyncio.timeout``:
a cancellation that came from elsewhere stays a cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

__all__ = ["COARSE_AFTER", "TICK", "Deadline", "deadline_at"]

#: Deadlines further away than this (seconds) share the per-loop timer.
COARSE_AFTER = 30.0
#: How often the shared timer looks for passed deadlines (seconds).
TICK = 0.25

_current_task = asyncio.current_task
_get_running_loop = asyncio.get_running_loop


class _Wheel:
    """The far deadlines in flight on one loop, checked every TICK by one timer."""

    __slots__ = ("handle", "live", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.live: set[Deadline] = set()
        self.handle: asyncio.TimerHandle | None = None

    def add(self, d: Deadline) -> None:
        self.live.add(d)
        if self.handle is None:
            self.handle = self.loop.call_at(self.loop.time() + TICK, self._tick)

    def _tick(self) -> None:
        self.handle = None
        now = self.loop.time()
        due = [d for d in self.live if d.when <= now]
        for d in due:
            self.live.discard(d)
            d._fire()
        if self.live:
            self.handle = self.loop.call_at(now + TICK, self._tick)


_last_wheel: _Wheel | None = None


def _wheel_for(loop: asyncio.AbstractEventLoop) -> _Wheel:
    """The wheel of ``loop``: the last one made, or a new one when the loop changed (one loop
    at a time is the common case; a replaced wheel keeps ticking for the deadlines it holds)."""
    global _last_wheel
    wheel = _last_wheel  # one read: another thread may replace it meanwhile
    if wheel is None or wheel.loop is not loop:
        wheel = _last_wheel = _Wheel(loop)
    return wheel


class Deadline:
    """A synchronous context manager that cancels the current task at loop time ``when``."""

    __slots__ = ("_cancelling", "_fired", "_handle", "_task", "_wheel", "when")

    def __init__(self, when: float) -> None:
        self.when = when
        self._fired = False
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._wheel: _Wheel | None = None

    def __enter__(self) -> Deadline:
        task = _current_task()
        if task is None:
            raise RuntimeError("a salvo deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = _get_running_loop()
        left = self.when - loop.time()
        if left > COARSE_AFTER:
            self._wheel = _wheel_for(loop)
            self._wheel.add(self)
        elif left > 0:
            self._handle = loop.call_at(self.when, self._fire)
        else:
            self._handle = loop.call_soon(self._fire)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        elif self._wheel is not None:
            self._wheel.live.discard(self)
            self._wheel = None
        if (
            self._fired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def expired(self) -> bool:
        """True once the deadline passed and the task was cancelled for it."""
        return self._fired

    def _fire(self) -> None:
        if not self._fired:
            self._fired = True
            self._handle = None
            self._task.cancel()


_NO_DEADLINE: contextlib.nullcontext[None] = contextlib.nullcontext()


def deadline_at(when: float | None) -> Deadline | contextlib.nullcontext[None]:
    """``with deadline_at(loop_time):`` cancel the block's task at ``when``; TimeoutError.
    ``None`` is no deadline (a shared no-op), as with ``asyncio.timeout_at(None)``."""
    return _NO_DEADLINE if when is None else Deadline(when)
