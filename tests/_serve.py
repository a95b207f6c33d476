"""``salvo serve`` in a child process, for the tests that start the proxy for real."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Served:
    """The child process; ``line``, the first line it printed (``salvo proxy listening on
    <url> ...``); ``err``, all it wrote to stderr (once it has stopped)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.line = ""
        self.err = b""

    @property
    def url(self) -> str:
        return self.line.split()[4]


@asynccontextmanager
async def salvo_serve(*args: str, timeout: float = 30) -> AsyncIterator[Served]:
    """Start ``salvo serve *args`` and wait (up to ``timeout`` seconds) for its first line;
    on the way out, SIGTERM and wait (as long again) for it to stop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "salvo.cli", "serve", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    served = Served(proc)
    try:
        async with asyncio.timeout(timeout):
            served.line = (await proc.stdout.readline()).decode()
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            _, served.err = await proc.communicate()
