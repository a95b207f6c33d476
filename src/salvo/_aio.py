"""The running asyncio loop, or a clear error where there is none (under trio)."""

from __future__ import annotations

import asyncio

from ._errors import ConfigError

__all__ = ["asyncio_loop"]


def _not_asyncio() -> ConfigError:
    try:
        import sniffio

        lib = sniffio.current_async_library()
    except Exception:  # no async library at all: a plain thread
        lib = "no event loop"
    return ConfigError(
        f"salvo runs on asyncio: it was called from {lib}, where aiohttp (its HTTP client) "
        "cannot run. Call it from asyncio code (asyncio.run, or anyio with the asyncio "
        "backend), or use the blocking salvo.completion(...) from a worker thread "
        "(trio.to_thread.run_sync)."
    )


def asyncio_loop() -> asyncio.AbstractEventLoop:
    """The running asyncio loop, or a ConfigError that says salvo needs one (under trio)."""
    loop = asyncio._get_running_loop()
    if loop is None:
        raise _not_asyncio()
    return loop
