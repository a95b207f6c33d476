"""The local engine's validation pass: one streamed read of the input, one state row per line.

A line that cannot run (not JSON, no custom_id, an unknown url, no model, malformed messages,
a custom_id already used on an earlier line) is recorded as INVALID with a sentence naming its
line number; it becomes an error line and the other lines run. Rows are inserted in
transactions of 2,000 lines, and the loop gets a turn between them.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from .._messages import check_messages
from ._lines import CHAT, ENDPOINTS, InputLine, decode_input
from ._state import INVALID, PENDING, JobDB
from ._types import Batch, BatchError, BatchErrors

if TYPE_CHECKING:
    from ._engine import Job

__all__ = ["check_line", "fingerprint", "validate_input"]

_CHUNK = 2000
_URLS = ", ".join(sorted(u for u in ENDPOINTS if u.startswith("/v1/")))


def fingerprint(path: Path) -> str:
    """Size and a hash of the first 64 KiB: enough to notice an input replaced mid-job."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(65536)
    return f"{size}:{hashlib.blake2b(head, digest_size=16).hexdigest()}"


def _problem(req: InputLine, model_override: str | None) -> str | None:
    if req.method != "POST":
        return f"method must be POST, not {req.method!r}."
    kind = ENDPOINTS.get(req.url) if isinstance(req.url, str) else None
    if kind is None:
        return f"url {req.url!r} is not one the local engine runs ({_URLS})."
    body = req.body
    if not isinstance(body, dict):
        return "body must be a JSON object with the request."
    model = model_override or body.get("model")
    if not isinstance(model, str) or not model.strip():
        return "body has no model; set body.model, or give the job a model to use for every line."
    if kind == CHAT:
        try:
            check_messages(body.get("messages"))
        except ConfigError as exc:
            return str(exc)
    elif body.get("input") in (None, "", []):
        return "body has no input to embed."
    return None


def check_line(raw: bytes, line: int, model_override: str | None) -> tuple[str | None, str | None]:
    """(custom_id, problem) for one input line; problem is None when the line can run."""
    try:
        req = decode_input(raw)
    except ConfigError as exc:
        return None, f"Line {line}: {exc}."
    custom_id = req.custom_id
    if not isinstance(custom_id, str) or not custom_id:
        return None, f"Line {line}: custom_id must be a non-empty string, not {custom_id!r}."
    problem = _problem(req, model_override)
    if problem is None:
        return custom_id, None
    return custom_id, f"Line {line} (custom_id {custom_id!r}): {problem}"


def _insert(
    conn: sqlite3.Connection, line: int, custom_id: str | None, problem: str | None
) -> None:
    state = PENDING if problem is None else INVALID
    cur = conn.execute(
        "INSERT INTO requests(line, custom_id, state, problem) VALUES(?,?,?,?)"
        " ON CONFLICT(custom_id) DO NOTHING",
        (line, custom_id, state, problem),
    )
    if cur.rowcount == 0:  # the custom_id is taken by an earlier line
        (first,) = conn.execute(
            "SELECT line FROM requests WHERE custom_id=?", (custom_id,)
        ).fetchone()
        problem = (
            f"Line {line}: custom_id {custom_id!r} repeats line {first}; custom_ids must be "
            "unique within a batch."
        )
        conn.execute(
            "INSERT INTO requests(line, custom_id, state, problem) VALUES(?,NULL,?,?)",
            (line, INVALID, problem),
        )


async def validate_input(job: Job, db: JobDB, batch: Batch) -> None:
    """Record every line of the job's input in ``db`` and move the batch to ``in_progress``
    (or to ``failed`` when the input holds no request at all). Restarts from scratch when a
    previous validation was interrupted."""
    conn = db.conn
    fp = fingerprint(job.input_path)
    with db.transaction():
        conn.execute("DELETE FROM requests")
    total = line = 0
    with open(job.input_path, "rb") as f:  # noqa: ASYNC230 - read in chunks, with turns
        it: Any = iter(f)
        while True:
            with db.transaction():
                for raw in it:
                    line += 1
                    if not raw.strip():
                        continue
                    total += 1
                    _insert(conn, line, *check_line(raw, line, job.model))
                    if total % _CHUNK == 0:
                        break
                else:
                    break
            await asyncio.sleep(0)
    now = int(time.time())
    with db.transaction():
        batch.request_counts.total = total
        if total == 0:
            batch.status, batch.failed_at = "failed", now
            batch.errors = BatchErrors(
                data=[BatchError(code="empty_file", message="The input file holds no requests.")]
            )
        else:
            batch.status, batch.in_progress_at = "in_progress", now
        db.put("validated", 1)
        db.put("fingerprint", fp)
        db.put_batch(batch)
