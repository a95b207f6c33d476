"""The SQLite state of one local batch job, and the lock that says a process is running it.

One database per job (``<output>.salvo-state.sqlite3`` for ``salvo batch run``, or
``<store>/batches/<batch id>.sqlite3``)::

    meta(key PRIMARY KEY, value)        the Batch (JSON), committed output sizes, flags
    requests(line PRIMARY KEY, custom_id UNIQUE, state, problem)

``requests`` has one row per non-blank input line (1-based physical line numbers): PENDING,
OK or FAILED once its output line is committed, or INVALID (with ``problem``) while the error
line of a line that failed validation is still to be written. The database runs in WAL mode
with ``synchronous=NORMAL``: a commit is atomic under a crash of the process.

The lock is an ``flock`` on ``<state>.lock``, held while a process runs the job; the kernel
drops it when that process dies, even under SIGKILL, so a free lock on an unfinished job means
nobody is running it and it can be resumed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from .._errors import SalvoError
from ._types import Batch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, one runner assumed
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FAILED",
    "INVALID",
    "OK",
    "PENDING",
    "JobDB",
    "read_batch",
    "release_lock",
    "try_lock",
    "write_batch",
]

PENDING, OK, FAILED, INVALID = 0, 1, 2, 3
_DECODE_BATCH = msgspec.json.Decoder(Batch).decode
_ENCODE = msgspec.json.Encoder().encode


def try_lock(state_path: Path) -> int | None:
    """Take the job's lock without waiting: a file descriptor to release, or None when
    another process (or another runner in this one) holds it."""
    fd = os.open(f"{state_path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release_lock(fd: int) -> None:
    os.close(fd)  # closing the descriptor drops the flock


class JobDB:
    """A connection to one job's state. Small synchronous calls: each is one short
    transaction (see the module docstring of ``_engine`` for the measured cost)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB)")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS requests(line INTEGER PRIMARY KEY,"
                " custom_id TEXT UNIQUE, state INTEGER NOT NULL, problem TEXT)"
            )
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> JobDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Any:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def get(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def put(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?)"
            " ON CONFLICT DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def batch(self) -> Batch:
        raw = self.get("batch")
        if raw is None:
            raise SalvoError(
                f"{self.path} is not a salvo batch state file (it holds no batch); "
                "delete it or point salvo at another output."
            )
        return _DECODE_BATCH(raw)

    def put_batch(self, batch: Batch) -> None:
        self.put("batch", _ENCODE(batch))

    def counts(self) -> dict[int, int]:
        rows = self.conn.execute("SELECT state, count(*) FROM requests GROUP BY state")
        return {int(s): int(n) for s, n in rows}


def read_batch(path: Path) -> Batch | None:
    """The Batch stored in a state file, or None when there is no such file."""
    if not path.exists():
        return None
    with JobDB(path) as db:
        return db.batch()


def write_batch(path: Path, batch: Batch, **flags: Any) -> None:
    """Store ``batch`` (and meta ``flags``) in one transaction, creating the file if needed."""
    with JobDB(path) as db, db.transaction():
        db.put_batch(batch)
        for key, value in flags.items():
            db.put(key, value)
