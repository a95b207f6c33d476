"""The fake provider on its own event loop in a background thread, for tests of salvo's
blocking API (whose calls block the test's thread, so the fake cannot share it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from salvo.testing import FakeProvider

T = TypeVar("T")


class ThreadFake:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake = FakeProvider()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.call(self.fake.start)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (a coroutine function or a plain one) on the fake's loop."""

        async def run() -> Any:
            out = fn(*args)
            if asyncio.iscoroutine(out):
                out = await out
            return out

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        self.call(self.fake.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@contextmanager
def thread_fake() -> Iterator[ThreadFake]:
    tf = ThreadFake()
    tf.start()
    try:
        yield tf
    finally:
        tf.stop()
