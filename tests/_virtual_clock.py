"""An asyncio event loop on a virtual clock, for timing tests without real sleeps.

The loop's clock stands still while code runs and, whenever the loop would block waiting for
its next timer, moves forward to that timer instead: ``asyncio.sleep(60)`` returns at once,
with ``loop.time()`` exactly a minute later, and rate limiters, backoff sleeps and deadlines
fire in order at exact times, however fast the machine is.

``grace`` (real seconds) is how long the loop first waits for real I/O before it jumps, for
tests that also talk to an in-process server over loopback sockets. Tests pick a loop with
anyio's backend options::

    @pytest.fixture
    def anyio_backend():
        return ("asyncio", {"loop_factory": VirtualClockLoop})
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from typing import Any

#: Virtual seconds each turn of the loop takes.
TICK = 1e-7


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:  # no timer at all: only I/O can wake the loop
            return super().select(None)
        grace = self._loop.grace
        ready = super().select(min(timeout, grace) if grace and timeout > 0 else 0)
        if ready or timeout <= 0:
            # Each turn of the loop takes a tick, as on a real clock; without it, code that
            # waits for float rounding to settle (aiolimiter's leak) would spin forever.
            self._loop.now += TICK
        else:  # idle until the next timer: jump there
            self._loop.now += timeout
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` jumps to the next timer when it would wait."""

    def __init__(self, grace: float = 0.0) -> None:
        self.grace = grace
        self.now = 1000.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


#: A loop factory that waits 5 ms for real socket I/O before jumping.
with_sockets = functools.partial(VirtualClockLoop, grace=0.005)
