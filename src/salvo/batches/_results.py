"""Waiting for a batch, reading its results, and what it cost.

Cost: a local batch adds up its calls' costs as it runs (no discount: they are ordinary
calls). A provider's batch is priced with its batch discount (``_pricing``, ``batch=True``)
once: from the batch's own ``usage`` when the provider reports it (OpenAI), else on the first
complete pass of :func:`abatch_results`; the figure is stored in the local store's index and
filled into ``Batch.cost_usd`` by later retrieves, never recomputed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncGenerator, Callable
from contextlib import closing
from typing import Any

from .._errors import ConfigError, SalvoError, TimeoutError
from .._pricing import response_cost
from ._backends import Backend, backend_for
from ._cost import native as _native
from ._cost import with_cost
from ._lines import decode_input, decode_result, iter_lines
from ._types import AsyncStream, Batch, BatchResult

__all__ = ["abatch_results", "await_batch", "with_cost"]


async def await_batch(
    batch_id: str,
    *,
    provider: str = "openai",
    poll_interval: float | None = None,
    max_poll_interval: float = 60.0,
    timeout: float | None = None,  # noqa: ASYNC109
    on_progress: Callable[[Batch], None] | None = None,
    resume: bool = True,
    **kw: Any,
) -> Batch:
    """Poll until the batch reaches a terminal status and return it. Polls start every
    ``poll_interval`` seconds (default 5; 0.25 for local batches, which also wake at each of
    their flushes) and back off by 1.5x up to ``max_poll_interval``. A local batch left
    unfinished by a stopped process is resumed here (``resume=False`` to only watch)."""
    backend = await backend_for(provider, **kw)
    local = not _native(backend)
    delay = poll_interval if poll_interval is not None else (0.25 if local else 5.0)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        batch = await backend.retrieve_batch(batch_id)
        if on_progress is not None:
            on_progress(batch)
        if batch.done:
            return with_cost(backend, batch)
        wait = delay if deadline is None else min(delay, deadline - loop.time())
        if wait <= 0 and deadline is not None:
            raise TimeoutError(
                f"Batch {batch_id} on {provider} is still {batch.status!r} after {timeout} s; "
                "call await_batch again to keep waiting."
            )
        job = None
        if local:
            from ._local import LocalBatches, running_job

            assert isinstance(backend, LocalBatches)
            job = running_job(backend.state_path(batch_id))
            if job is None and resume:
                job = backend.resume(batch_id)
        if job is not None:
            await job.wait_changed(wait)
        else:
            await asyncio.sleep(wait)
            delay = min(delay * 1.5, max_poll_interval)


def abatch_results(
    batch: Batch | str,
    *,
    provider: str | None = None,
    ordered: bool = False,
    **kw: Any,
) -> AsyncStream[BatchResult]:
    """The results of a finished batch, output and error lines alike, as BatchResults: in
    the order the provider wrote them, or with ``ordered=True`` in the input file's order
    (sorted in a temporary on-disk SQLite table, so memory stays flat)."""

    async def results() -> AsyncGenerator[BatchResult, None]:
        name = provider or (batch.provider if isinstance(batch, Batch) else "openai")
        backend = await backend_for(name, **kw)
        b = batch if isinstance(batch, Batch) else await backend.retrieve_batch(batch)
        if not b.done:
            raise SalvoError(
                f"Batch {b.id} is {b.status!r}: its results come once it has ended "
                "(await_batch waits for that)."
            )
        native = _native(backend)
        total, priced = 0.0, True
        lines = _ordered(backend, b) if ordered else _lines(backend, b)
        try:
            async for raw in lines:
                result = decode_result(raw)
                resp = result.response
                if resp is not None:
                    if resp.cost_usd is None and native:
                        resp.cost_usd = response_cost(name, resp.usage, resp.model, batch=True)
                    if resp.cost_usd is None:
                        priced = False
                    else:
                        total += resp.cost_usd
                yield result
        finally:
            await lines.aclose()
        if native and priced and b.done and b.cost_usd is None:
            backend.store.store_cost(name, b.id, round(total, 10))

    return AsyncStream(results())


async def _lines(backend: Backend, batch: Batch) -> AsyncGenerator[bytes, None]:
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id is not None:
            async for line in iter_lines(backend.content(file_id)):
                yield line


async def _ordered(backend: Backend, batch: Batch) -> AsyncGenerator[bytes, None]:
    with closing(sqlite3.connect("")) as db:  # "" = a private temporary on-disk database
        db.execute("CREATE TABLE inp(custom_id TEXT PRIMARY KEY, pos INTEGER)")
        db.execute("CREATE TABLE res(custom_id TEXT, raw BLOB)")
        pos = 0
        async for line in iter_lines(backend.content(batch.input_file_id)):
            try:
                custom_id = decode_input(line).custom_id
            except ConfigError:
                continue
            if isinstance(custom_id, str):
                db.execute("INSERT OR IGNORE INTO inp VALUES(?, ?)", (custom_id, pos))
                pos += 1
        async for line in _lines(backend, batch):
            db.execute("INSERT INTO res VALUES(?, ?)", (decode_result(line).custom_id, line))
        cursor = db.execute(
            "SELECT res.raw FROM res LEFT JOIN inp ON res.custom_id = inp.custom_id"
            " ORDER BY inp.pos IS NULL, inp.pos"
        )
        while rows := cursor.fetchmany(512):
            for (raw,) in rows:
                yield raw
            await asyncio.sleep(0)
