"""The local batch engine: an OpenAI-format JSONL file run through a salvo Client.

The input is read as a stream, twice: a validation pass records one row per line in the job's
SQLite state (so duplicate custom_ids are found without holding them in memory, and a bad line
becomes an error line naming its line number while the rest run), then a run pass feeds the
pending lines to a fixed number of workers (``concurrency``), which send them with the client's
limiters and retries. Memory stays flat: at most ``concurrency`` requests in flight and at most
``flush_every`` finished lines waiting to be written.

Exactly once, even under SIGKILL
--------------------------------
Finished lines are buffered and flushed together (every ``flush_every`` results or
``flush_interval`` seconds): first the bytes are appended to the output and error files, then
ONE SQLite transaction marks those lines done and records the new committed sizes of both
files. On start the engine truncates each file to its committed size. So a kill between the
append and the commit leaves bytes past the committed size, which are cut off, and their lines,
still pending in the state, run again: every custom_id ends up exactly once. (A torn last line
is cut off the same way.) If a file is *shorter* than committed (a power loss, or someone
truncated it), the engine rebuilds the state from what the files hold: it cuts a torn tail,
reads the line number back from each line's ``id`` and re-runs the lines not found.

SQLite runs on the event loop, synchronously, in these small transactions (no thread pool).
Measured (``benchmarks/bench_local_batch.py``, 100,000 requests at 1,400-1,900 requests/s): a
flush (append ~300-500 lines, update their rows, commit) takes ~2 ms on average, ~1% of the
run, and under 20 ms at worst (the first one, which creates the WAL). Automatic WAL checkpoints
are off while a job runs, because each is an fsync on the loop (20-70 ms measured here): the
WAL (~70 bytes a result) is checkpointed every 1,000 flushes and when the job's connection
closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from .._budget import LocalBudget, check_limit, price_of
from .._errors import BudgetExceededError, ConfigError, SalvoError
from .._messages import CALL_KEYS
from ._budget_lines import BUDGET, reopen_deferred, write_deferred
from ._lines import (
    CHAT,
    ENDPOINTS,
    OutputLine,
    ResponsePart,
    decode_input,
    encode_line,
    error_line,
    internal_error_line,
)
from ._recover import reconcile
from ._state import FAILED, INVALID, OK, PENDING, JobDB, release_lock, try_lock
from ._types import Batch
from ._validate import fingerprint, validate_input

__all__ = ["Job", "JobStatistics"]

log = logging.getLogger("salvo")

Work = tuple[int, bytes, str | None, str | None]
#: Keys a batch line's body may hold that are not request parameters here.
_DROP = CALL_KEYS | {"model", "stream", "stream_options"}
#: Flushes between WAL checkpoints (about half a million results; a WAL of ~35 MB).
_CHECKPOINT_EVERY = 1000


class JobStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of one run (``Job.statistics()``)."""

    sent: int
    flushes: int
    flush_seconds: float
    max_flush_seconds: float


class Job:
    """One local batch job: its input, output, error and state files."""

    def __init__(
        self,
        client: Any,
        *,
        state_path: str | os.PathLike[str],
        input_path: str | os.PathLike[str],
        output_path: str | os.PathLike[str],
        error_path: str | os.PathLike[str],
        model: str | None = None,
        provider_hint: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        concurrency: int | None = None,
        flush_every: int = 512,
        flush_interval: float = 0.25,
        on_progress: Callable[[Batch], None] | None = None,
        finalize: Callable[[Batch], None] | None = None,
        max_cost_usd: float | None = None,
    ) -> None:
        """``max_cost_usd``: the job's budget (see ``_budget_lines``)."""
        self.client = client
        self.state_path = Path(state_path)
        self.input_path = Path(input_path)
        self.output_path = Path(output_path)
        self.error_path = Path(error_path)
        self.model = model
        self.provider_hint = provider_hint
        self.overrides = dict(overrides or {})
        self.concurrency = max(1, concurrency or client.max_concurrency)
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        self.on_progress = on_progress
        self.finalize = finalize
        self.batch: Batch | None = None
        self._stop = False
        self._cancelled = False
        self._workers: list[asyncio.Task[None]] = []
        self._rows: list[tuple[int, int]] = []
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._cost = 0.0
        self._sizes = [0, 0]
        self._fds: list[int] = []
        self._db: JobDB | None = None
        self._tag = ""
        self._changed = asyncio.Event()
        self._opts: dict[str, Any] = {}
        self._sent = 0
        self._flushes = 0
        self._flush_s = 0.0
        self._flush_max = 0.0
        self.max_cost_usd = (
            None if max_cost_usd is None else check_limit(max_cost_usd, "max_cost_usd")
        )
        self._budget: LocalBudget | None = None
        self._unpriced: ConfigError | None = None

    @staticmethod
    def create(state_path: str | os.PathLike[str], batch: Batch) -> None:
        """Write a new job's initial state (status ``validating``)."""
        with JobDB(Path(state_path)) as db, db.transaction():
            if db.get("batch") is None:
                db.put_batch(batch)
                db.put("tag", secrets.token_hex(4))

    # -- control -----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop sending: no new line starts, in-flight requests are cancelled (their
        connections closed); what finished is kept and the batch ends ``cancelled``."""
        if self._cancelled:
            return
        self._cancelled = self._stop = True
        for task in self._workers:
            task.cancel()

    async def wait_changed(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return after the next flush (or ``timeout`` seconds)."""
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass

    def statistics(self) -> JobStatistics:
        return JobStatistics(
            sent=self._sent,
            flushes=self._flushes,
            flush_seconds=self._flush_s,
            max_flush_seconds=self._flush_max,
        )

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> Batch:
        """Run (or resume) the job until every line is answered or it is cancelled. Raises
        SalvoError when another process is running it."""
        lock = try_lock(self.state_path)
        if lock is None:
            raise SalvoError(
                f"Another process is running the batch job {self.state_path}; wait for it, "
                "or cancel it, before running it here."
            )
        try:
            with JobDB(self.state_path) as db:
                # No automatic WAL checkpoints while running: each costs an fsync on the loop
                # (measured 20-70 ms). The WAL grows ~70 bytes a result; _flush checkpoints it
                # every _CHECKPOINT_EVERY flushes, and closing the connection at the end does.
                db.conn.execute("PRAGMA wal_autocheckpoint=0")
                self._db = db
                return await self._run(db)
        finally:
            self._db = None
            for fd in self._fds:
                os.close(fd)
            self._fds = []
            release_lock(lock)
            self._notify()

    async def _run(self, db: JobDB) -> Batch:
        batch = self.batch = db.batch()
        if batch.done and not reopen_deferred(db, batch):
            return batch
        self._tag = db.get("tag") or secrets.token_hex(4)
        if db.get("cancel"):
            self._cancelled = self._stop = True
        if not db.get("validated"):
            await validate_input(self, db, batch)
            if batch.done:
                return batch
        elif db.get("fingerprint") != fingerprint(self.input_path):
            raise ConfigError(
                f"The input {self.input_path} changed since this batch job started; delete "
                f"{self.state_path} to start over, or write to another output."
            )
        self._sizes = reconcile(db, batch, self.output_path, self.error_path)
        if self.max_cost_usd is not None:
            self._budget = LocalBudget(self.max_cost_usd)
            self._budget.spent_usd = batch.cost_usd or 0.0  # what earlier runs spent counts
        self._fds = [
            os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            for p in (self.output_path, self.error_path)
        ]
        if not self._stop:
            batch.status = "in_progress"
            batch.in_progress_at = batch.in_progress_at or int(time.time())
        ticker = asyncio.create_task(self._tick())
        items = self._pending(db)
        try:
            self._workers = [
                asyncio.create_task(self._worker(items)) for _ in range(self.concurrency)
            ]
            await asyncio.wait(self._workers)
            for task in self._workers:
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    raise exc
        finally:
            for task in (*self._workers, ticker):
                task.cancel()
            await asyncio.gather(*self._workers, ticker, return_exceptions=True)
            items.close()
            self._flush(db)
        if not self._cancelled:
            write_deferred(
                db, batch, self._fds[1], self._sizes, self._tag, self.max_cost_usd, _write_all
            )
        return self._finish(db, batch)

    def _finish(self, db: JobDB, batch: Batch) -> Batch:
        now = int(time.time())
        if self._cancelled:
            batch.status, batch.cancelled_at = "cancelled", now
            batch.cancelling_at = batch.cancelling_at or now
        else:
            batch.status, batch.finalizing_at, batch.completed_at = "completed", now, now
        if self._sizes[0] == 0:
            batch.output_file_id = None
        if self._sizes[1] == 0:
            batch.error_file_id = None
        if self.finalize is not None:
            self.finalize(batch)
        with db.transaction():
            db.put_batch(batch)
        self._progress(batch)
        return batch

    def _pending(self, db: JobDB) -> Generator[Work, None, None]:
        """(line, raw bytes, custom_id, problem) of each line still to answer, in input order:
        the pending rows, fetched a thousand at a time, merged with one pass over the file."""
        with open(self.input_path, "rb") as f:
            at, last = 0, 0
            while not self._stop:
                rows = db.conn.execute(
                    "SELECT line, custom_id, state, problem FROM requests WHERE state IN (?, ?)"
                    " AND line > ? ORDER BY line LIMIT 1000",
                    (PENDING, INVALID, last),
                ).fetchall()
                if not rows:
                    return
                for line, custom_id, state, problem in rows:
                    if self._stop:
                        return
                    if state == INVALID:
                        yield line, b"", custom_id, problem
                        continue
                    raw = b""
                    while at < line:
                        raw = f.readline()
                        at += 1
                    yield line, raw, custom_id, None
                last = rows[-1][0]

    async def _worker(self, items: Iterator[Work]) -> None:
        for line, raw, custom_id, problem in items:
            line_id = f"batch_req_{self._tag}_{line}"
            if problem is not None:
                err = error_line(line_id, custom_id, problem, line=line)
                self._done(line, FAILED, encode_line(err), 0)
                continue
            state, data, cost = await self._one(line_id, raw, custom_id)
            self._done(line, state, data, cost)

    async def _one(
        self, line_id: str, raw: bytes, custom_id: str | None
    ) -> tuple[int, bytes, float]:
        client = self.client
        self._sent += 1
        try:
            req = decode_input(raw)  # validated already; this guards against a changed file
            params: dict[str, Any] = dict(req.body)
            model = self._qualify(str(self.model or params.get("model")))
            for key in _DROP.intersection(params):
                del params[key]
            if ENDPOINTS[req.url] == CHAT:
                messages = params.pop("messages")
                resp = await client.complete_with(
                    self._options(model), messages, params, budget=self._budget
                )
            else:
                params.update(self.overrides)
                resp = await client.aembedding(model, params.pop("input"), **params)
            part = ResponsePart(200, line_id[6:], resp)  # "req_<tag>_<line>": unique, cheap
            line = encode_line(OutputLine(line_id, custom_id, part, None))
        except BudgetExceededError:
            return BUDGET, b"", 0.0
        except SalvoError as err:
            if err is self._unpriced:
                raise  # a budget needs every model's price: stop, rather than fail every line
            try:
                return FAILED, encode_line(error_line(line_id, custom_id, err)), 0.0
            except Exception as exc:  # an error body that cannot be written as it is
                return FAILED, _internal(line_id, custom_id, exc), 0.0
        except Exception as exc:  # whatever one line's answer holds, the job goes on
            return FAILED, _internal(line_id, custom_id, exc), 0.0
        return OK, line, resp.cost_usd or 0.0

    def _options(self, model: str) -> Any:
        """The client's CallOptions for ``model`` with the job's overrides, resolved once per
        model (an alias with several deployments is resolved per call, to rotate them)."""
        opts = self._opts.get(model)
        if opts is None:
            opts = self.client.options(model, dict(self.overrides))
            if self.max_cost_usd is not None or self.client.budget is not None:
                try:
                    price_of(opts.dep)
                except ConfigError as err:
                    self._unpriced = err
                    raise
            entries = self.client.config.entries(model)
            if entries is None or len(entries) < 2:
                self._opts[model] = opts
        return opts

    def _qualify(self, model: str) -> str:
        hint = self.provider_hint
        if hint is None or "/" in model or self.client.config.entries(model):
            return model
        return f"{hint}/{model}"

    # -- writing and committing --------------------------------------------------------------

    def _done(self, line: int, state: int, data: bytes, cost: float) -> None:
        self._rows.append((state, line))
        (self._out if state == OK else self._err).append(data)
        self._cost += cost
        if len(self._rows) >= self.flush_every and self._db is not None:
            self._flush(self._db)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            if self._db is not None:
                self._flush(self._db)

    def _flush(self, db: JobDB) -> None:
        """Append the finished lines, then commit them and the new file sizes at once."""
        started = time.perf_counter()
        batch = self.batch
        assert batch is not None
        if not self._rows and not self._cancelled:  # nothing new: only look for a cancel
            if db.get("cancel"):
                self.cancel()
            self._progress(batch)
            return
        rows, self._rows = self._rows, []
        for i, parts in enumerate((self._out, self._err)):
            if parts:
                data = b"".join(parts)
                parts.clear()
                _write_all(self._fds[i], data)
                self._sizes[i] += len(data)
        counts = batch.request_counts
        for state, _ in rows:
            if state == OK:
                counts.completed += 1
            else:
                counts.failed += 1
        if self._cost:
            batch.cost_usd = round((batch.cost_usd or 0.0) + self._cost, 10)
            self._cost = 0.0
        if self._cancelled and batch.status not in ("cancelling", "cancelled"):
            batch.status, batch.cancelling_at = "cancelling", int(time.time())
        with db.transaction() as conn:
            conn.executemany("UPDATE requests SET state=? WHERE line=?", rows)
            db.put("sizes", msgspec.json.encode(self._sizes))
            db.put_batch(batch)
            cancel = db.get("cancel")
        if cancel and not self._cancelled:
            self.cancel()
        if self._flushes % _CHECKPOINT_EVERY == _CHECKPOINT_EVERY - 1:
            db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        elapsed = time.perf_counter() - started
        self._flushes += 1
        self._flush_s += elapsed
        self._flush_max = max(self._flush_max, elapsed)
        self._progress(batch)

    def _progress(self, batch: Batch) -> None:
        self._notify()
        if self.on_progress is not None:
            self.on_progress(batch)

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()


def _internal(line_id: str, custom_id: str | None, exc: Exception) -> bytes:
    """A failure salvo did not expect on one line: logged with its traceback, the line fails
    and the job carries on."""
    log.error("batch line %s (custom_id %r) failed unexpectedly", line_id, custom_id, exc_info=exc)
    return encode_line(internal_error_line(line_id, custom_id, exc))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
