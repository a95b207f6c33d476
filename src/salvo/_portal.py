"""One persistent event loop for the blocking API: anyio's ``BlockingPortal`` in a background
thread.

Every blocking call (``salvo.completion``, ``batch_completion``, the batch-job twins) runs on
this one loop, so its default Client (connection pool, rate limiters, 429 pauses, statistics)
lives across calls, as in the async API. A blocking call from a thread whose own event loop is
running (Jupyter, a sync helper called from async code) runs here too, instead of on that loop.

The thread is a daemon started on first use; at interpreter exit an ``atexit`` hook closes the
default client and stops the loop (no warnings, no hang).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import SalvoError

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

__all__ = ["portal", "run_blocking", "running_portal", "stop_portal"]

T = TypeVar("T")

_lock = threading.Lock()
_portal: BlockingPortal | None = None
_thread: threading.Thread | None = None


def portal() -> BlockingPortal:
    """The portal of salvo's background loop, started on first use."""
    global _portal, _thread
    existing = _portal
    if existing is not None:
        return existing
    with _lock:
        if _portal is not None:
            return _portal
        from anyio import run
        from anyio.from_thread import BlockingPortal

        ready = threading.Event()
        box: list[BlockingPortal] = []
        errors: list[BaseException] = []

        async def serve() -> None:
            async with BlockingPortal() as p:
                box.append(p)
                ready.set()
                await p.sleep_until_stopped()

        def main() -> None:
            try:
                run(serve, backend="asyncio")
            except BaseException as exc:  # pragma: no cover - reported to the starter
                errors.append(exc)
                ready.set()

        thread = threading.Thread(target=main, name="salvo-portal", daemon=True)
        thread.start()
        ready.wait()
        if errors:
            raise SalvoError(f"salvo could not start its background event loop: {errors[0]!r}")
        _portal, _thread = box[0], thread
        return box[0]


def running_portal() -> BlockingPortal | None:
    """The portal if its loop is running, else None (never starts one)."""
    return _portal


def run_blocking(
    name: str, twin: str, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
) -> T:
    """Run ``fn(*args, **kwargs)`` on the background loop and wait for its result."""
    if _thread is not None and threading.current_thread() is _thread:
        raise SalvoError(
            f"salvo.{name}() blocks, and it was called on salvo's own background loop (from a "
            f"callback of another blocking call); use `await salvo.{twin}(...)` there."
        )
    if kwargs:
        fn = functools.partial(fn, **kwargs)
    future = portal().start_task_soon(fn, *args)
    try:
        result: T = future.result()
    except BaseException:
        # Ctrl-C (or any exception raised in this thread while it waits): cancel the call on
        # the loop too, which closes every HTTP response it opened.
        future.cancel()
        raise
    return result


async def _close_default() -> None:
    from . import _api

    client = _api._cached() or _api._DEFAULTS.get(asyncio.get_running_loop())
    if client is not None and not client.closed:
        await client.aclose()


@atexit.register
def stop_portal() -> None:
    """Close the background loop's default client and stop the loop (idempotent)."""
    global _portal, _thread
    with _lock:
        p, thread = _portal, _thread
        _portal = _thread = None
    if p is None or thread is None:
        return
    try:
        p.call(_close_default)
        p.call(p.stop)
    except RuntimeError:  # already stopping
        pass
    thread.join(5)
