"""Making a job's output files and its state agree before it resumes (see ``_engine``).

The state records, in the same transaction as the lines it marks done, the committed size of
each file. A file longer than that holds lines appended after the last commit (the process
died in between) or a torn line: it is cut back, and those lines, still pending, run again. A
file shorter than that lost committed lines (a power loss, a hand edit): the state is rebuilt
from what the files hold, reading each line's number back from its ``id``
(``batch_req_<tag>_<line>``), and whatever is missing runs again.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from ._lines import decode_result
from ._state import FAILED, INVALID, OK, PENDING, JobDB
from ._types import Batch

__all__ = ["reconcile"]


def reconcile(db: JobDB, batch: Batch, output: Path, errors: Path) -> list[int]:
    """Cut or rebuild so that the files hold exactly the committed lines; returns the sizes."""
    sizes: list[int] = list(msgspec.json.decode(db.get("sizes") or b"[0, 0]"))
    short = False
    for i, path in enumerate((output, errors)):
        actual = path.stat().st_size if path.exists() else 0
        if actual > sizes[i]:
            os.truncate(path, sizes[i])
        elif actual < sizes[i]:
            short = True
    if short:
        sizes = _rescan(db, batch, output, errors)
    return sizes


def _rescan(db: JobDB, batch: Batch, output: Path, errors: Path) -> list[int]:
    done: list[tuple[int, int]] = []
    sizes = [0, 0]
    cost = 0.0
    for i, path in enumerate((output, errors)):
        if not path.exists():
            continue
        size = 0
        with open(path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a torn last line
                try:
                    result = decode_result(raw)
                    line = int((result.id or "").rsplit("_", 1)[1])
                except (msgspec.DecodeError, ValueError, IndexError):
                    break
                done.append((OK if i == 0 else FAILED, line))
                if result.response is not None and result.response.cost_usd:
                    cost += result.response.cost_usd
                size += len(raw)
        os.truncate(path, size)
        sizes[i] = size
    with db.transaction() as conn:
        conn.execute(
            "UPDATE requests SET state=CASE WHEN problem IS NULL THEN ? ELSE ? END",
            (PENDING, INVALID),
        )
        conn.executemany("UPDATE requests SET state=? WHERE line=?", done)
        counts = db.counts()
        batch.request_counts.completed = counts.get(OK, 0)
        batch.request_counts.failed = counts.get(FAILED, 0)
        batch.cost_usd = round(cost, 10) or None
        db.put("sizes", msgspec.json.encode(sizes))
        db.put_batch(batch)
    return sizes
