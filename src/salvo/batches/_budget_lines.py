"""``max_cost_usd`` in the local batch engine: lines past the budget, and running them later.

A job run with ``max_cost_usd`` reserves each line's worst case from one budget for the whole
job (what earlier runs spent counts: the budget starts at the job's ``cost_usd``). A line that
does not fit is not sent: its row takes the state :data:`BUDGET` (deferred). When the run ends,
the deferred lines are written to the error file as error lines with code ``budget_exceeded``,
after every other line, and the error file's size before them is kept (``budget_tail``); all of
it in the engine's usual order (append the bytes, then commit the sizes in one transaction), so
a kill anywhere leaves the files and the state in agreement.

Running the job again (``salvo batch run`` with the same output, a larger ``--max-cost-usd`` or
none) reopens it: one transaction puts the deferred rows back to pending and the error file's
committed size back to ``budget_tail``; the engine's start-up reconciliation then cuts those
error lines off, and the lines run. Each ``custom_id`` still ends up exactly once in the output
and error files. (If the files were damaged so that the state had to be rebuilt from them, the
``budget_exceeded`` lines read back count as failed, not deferred.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ._lines import OutputLine, encode_line
from ._state import PENDING, JobDB
from ._types import Batch, BatchError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BUDGET", "reopen_deferred", "write_deferred"]

#: The state of a line deferred by the budget (neither pending nor done).
BUDGET = 4
_TAIL = "budget_tail"


def reopen_deferred(db: JobDB, batch: Batch) -> bool:
    """Put a finished job's deferred lines back to pending; False when it has none."""
    tail = db.get(_TAIL)
    if tail is None:
        return False
    (n,) = db.conn.execute("SELECT count(*) FROM requests WHERE state=?", (BUDGET,)).fetchone()
    if not n:
        return False
    sizes = list(msgspec.json.decode(db.get("sizes") or b"[0, 0]"))
    sizes[1] = int(tail)
    with db.transaction() as conn:
        conn.execute("UPDATE requests SET state=? WHERE state=?", (PENDING, BUDGET))
        conn.execute("DELETE FROM meta WHERE key=?", (_TAIL,))
        db.put("sizes", msgspec.json.encode(sizes))
        counts = batch.request_counts
        counts.failed = max(0, counts.failed - n)
        batch.status = "in_progress"
        batch.finalizing_at = batch.completed_at = None
        db.put_batch(batch)
    return True


def write_deferred(
    db: JobDB,
    batch: Batch,
    fd: int,
    sizes: list[int],
    tag: str,
    limit: float | None,
    write_all: Callable[[int, bytes], None],
) -> None:
    """Append the error lines of the deferred rows (their count is already in ``failed``),
    then commit the new error size and the size before them, at once."""
    rows = db.conn.execute(
        "SELECT line, custom_id FROM requests WHERE state=? ORDER BY line", (BUDGET,)
    ).fetchall()
    if not rows:
        return
    what = "the job's budget" if limit is None else f"max_cost_usd={limit:g}"
    message = (
        f"Not sent: its worst-case cost did not fit what was left of {what}. Run the job again "
        "with a larger --max-cost-usd (or none) to run it."
    )
    data = b"".join(
        encode_line(
            OutputLine(
                f"batch_req_{tag}_{line}",
                custom_id,
                None,
                BatchError(code="budget_exceeded", message=message),
            )
        )
        for line, custom_id in rows
    )
    tail = sizes[1]
    write_all(fd, data)
    sizes[1] += len(data)
    with db.transaction():
        db.put("sizes", msgspec.json.encode(sizes))
        db.put(_TAIL, tail)
        db.put_batch(batch)
