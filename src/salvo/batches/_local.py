"""``provider="local"`` (and every provider without a batch API): files in the local store,
batches run by the local engine in this process.

A batch's job runs as a task on the loop that created it, with the client it was created
with. Its state lives in ``<store>/batches/<batch id>.sqlite3``; its output and error files
are written under ids chosen at creation and registered (become listable and readable) when
the batch ends. A batch left unfinished by a process that stopped is resumed by
:func:`~salvo.batches.await_batch` (or ``resume``). A cancel from another process is a flag
in the state that the running job notices at its next flush (within ``flush_interval``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from .._errors import ConfigError, SalvoError
from ._engine import Job
from ._state import JobDB, read_batch, release_lock, try_lock
from ._store import LocalStore, StoreFiles, new_hex, not_found, paginate
from ._types import Batch, BatchError, BatchErrors, Page

__all__ = ["LocalBatches", "running_job"]

log = logging.getLogger("salvo")
_RUNNING: dict[str, tuple[Job, asyncio.Task[Batch]]] = {}
_SETTINGS = ("model", "provider_hint", "api_base", "concurrency")


def running_job(state_path: Path) -> Job | None:
    """The job running ``state_path`` in this process, if any."""
    entry = _RUNNING.get(str(state_path))
    if entry is None or entry[1].done():
        return None
    return entry[0]


class LocalBatches(StoreFiles):
    """Files and batches on local disk, run through ``client``."""

    def __init__(
        self,
        client: Any,
        store: LocalStore,
        provider: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        model: str | None = None,
        concurrency: int | None = None,
        on_progress: Callable[[Batch], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.provider = provider
        self.api_key = api_key
        self.api_base = api_base
        self.model = model
        self.concurrency = concurrency
        self.on_progress = on_progress

    # -- batches -----------------------------------------------------------------------------

    def state_path(self, batch_id: str) -> Path:
        if not batch_id.startswith("batch_") or not batch_id[6:].isalnum():
            raise not_found(self.provider, "batch", batch_id)
        return self.store.batches / f"{batch_id}.sqlite3"

    async def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str] | None,
    ) -> Batch:
        self.store.get_file(input_file_id, self.provider)
        self.store.ensure()
        batch = Batch(
            id=f"batch_{new_hex()}",
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            created_at=int(time.time()),
            output_file_id=self.store.new_file_id(),
            error_file_id=self.store.new_file_id(),
            metadata=dict(metadata) if metadata else None,
            model=self.model,
            provider=self.provider,
        )
        path = self.state_path(batch.id)
        Job.create(path, batch)
        hint = self.provider if self.provider != "local" else None
        settings = dict(
            zip(_SETTINGS, (self.model, hint, self.api_base, self.concurrency), strict=True)
        )
        with JobDB(path) as db, db.transaction():
            db.put("settings", msgspec.json.encode(settings))
        self.start(batch.id)
        return batch

    def _job(self, batch_id: str) -> Job:
        path = self.state_path(batch_id)
        with JobDB(path) as db:
            settings = msgspec.json.decode(db.get("settings") or b"{}")
            batch = db.batch()
        overrides = {"api_key": self.api_key, "api_base": self.api_base or settings.get("api_base")}
        store, provider = self.store, self.provider

        def finalize(done: Batch) -> None:
            for file_id, kind in ((done.output_file_id, "output"), (done.error_file_id, "errors")):
                if file_id is not None:
                    store.register(file_id, f"{done.id}_{kind}.jsonl", "batch_output", provider)
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id is not None and file_id not in (done.output_file_id, done.error_file_id):
                    store.file_path(file_id).unlink(missing_ok=True)

        assert batch.output_file_id is not None and batch.error_file_id is not None
        return Job(
            self.client,
            state_path=path,
            input_path=self.store.file_path(batch.input_file_id),
            output_path=self.store.file_path(batch.output_file_id),
            error_path=self.store.file_path(batch.error_file_id),
            model=self.model or settings.get("model"),
            provider_hint=settings.get("provider_hint"),
            overrides={k: v for k, v in overrides.items() if v is not None},
            concurrency=self.concurrency or settings.get("concurrency"),
            on_progress=self.on_progress,
            finalize=finalize,
        )

    def start(self, batch_id: str) -> Job:
        """Run the batch's job in a task on this loop (unless it already runs here)."""
        path = self.state_path(batch_id)
        job = running_job(path)
        if job is not None:
            return job
        job = self._job(batch_id)
        task = asyncio.get_running_loop().create_task(_run(job), name=f"salvo batch {batch_id}")
        key = str(path)
        _RUNNING[key] = (job, task)
        task.add_done_callback(lambda t: _finished(key, batch_id, t))
        return job

    def resume(self, batch_id: str) -> Job | None:
        """Start the job of an unfinished batch nobody is running; None when it is finished
        or another process runs it."""
        path = self.state_path(batch_id)
        job = running_job(path)
        if job is not None:
            return job
        batch = read_batch(path)
        if batch is None:
            raise not_found(self.provider, "batch", batch_id)
        if batch.done:
            return None
        lock = try_lock(path)
        if lock is None:
            return None
        release_lock(lock)
        return self.start(batch_id)

    async def retrieve_batch(self, batch_id: str) -> Batch:
        batch = read_batch(self.state_path(batch_id))
        if batch is None:
            raise not_found(self.provider, "batch", batch_id)
        return batch

    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]:
        batches = []
        for path in self.store.batches.glob("batch_*.sqlite3"):
            batch = read_batch(path)
            if batch is not None:
                batches.append(batch)
        batches.sort(key=lambda b: (b.created_at, b.id), reverse=True)
        return paginate(batches, limit, after)

    async def cancel_batch(self, batch_id: str) -> Batch:
        path = self.state_path(batch_id)
        job = running_job(path)
        batch = await self.retrieve_batch(batch_id)
        if batch.done:
            return batch
        if job is not None:
            job.cancel()
            batch.status = "cancelling"
            batch.cancelling_at = batch.cancelling_at or int(time.time())
            return batch
        with JobDB(path) as db, db.transaction():
            batch = db.batch()
            batch.status = "cancelling"
            batch.cancelling_at = batch.cancelling_at or int(time.time())
            db.put("cancel", 1)
            db.put_batch(batch)
        lock = try_lock(path)
        if lock is None:  # another process runs it: it sees the flag at its next flush
            return batch
        release_lock(lock)
        # Nobody runs it: start it, and it stops at once, registering what it had finished.
        self.start(batch_id)
        return await _RUNNING[str(path)][1]


async def _run(job: Job) -> Batch:
    """Run a job; a job that cannot run as it stands (its input changed or vanished) fails
    the batch, saying why, rather than being retried by every later await_batch. So does a
    failure salvo did not expect (logged with its traceback): a batch never stays
    ``in_progress`` with nothing running it."""
    try:
        return await job.run()
    except (ConfigError, OSError) as exc:
        log.warning("local batch %s failed: %s", job.state_path.stem, exc)
        return _fail(job, BatchError(code="invalid_input", message=str(exc)))
    except SalvoError:  # another process runs it: not this task's to fail
        raise
    except Exception as exc:
        log.error("local batch %s failed unexpectedly", job.state_path.stem, exc_info=exc)
        text = f"{type(exc).__name__}: {exc}"[:300]
        message = f"salvo hit an internal error running this batch ({text}); see its log."
        return _fail(job, BatchError(code="internal_error", message=message))


def _fail(job: Job, error: BatchError) -> Batch:
    with JobDB(job.state_path) as db, db.transaction():
        batch = db.batch()
        batch.status, batch.failed_at = "failed", int(time.time())
        batch.errors = BatchErrors(data=[error])
        batch.output_file_id = batch.error_file_id = None
        db.put_batch(batch)
    return batch


def _finished(key: str, batch_id: str, task: asyncio.Task[Batch]) -> None:
    if _RUNNING.get(key, (None, task))[1] is task:
        _RUNNING.pop(key, None)
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, SalvoError):
        log.warning("local batch %s stopped: %s", batch_id, exc)
    elif exc is not None:
        log.error("local batch %s failed", batch_id, exc_info=exc)
