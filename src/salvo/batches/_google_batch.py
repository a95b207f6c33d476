"""What the two Google batch backends (``_gemini.py``, ``_vertex.py``) share around the Batch.

- :data:`ENDED`: the error code and message of a request that never ran, per early end.
- :data:`KINDS`: the result file ids ``<batch id>-output`` / ``-errors`` (True: output lines).
- :func:`count`: a count Google may send as a string (int64 in JSON), 0 if unreadable.
- :func:`settle`: the Batch's status and times from Google's mapped state and salvo's note of
  a cancel asked (``cancelling`` until Google says the batch ended), with its result files.
"""

from __future__ import annotations

from typing import Any

from ._types import TERMINAL_STATUSES, Batch

__all__ = ["ENDED", "KINDS", "count", "settle"]

ENDED = {
    "cancelled": ("batch_cancelled", "The request did not run: the batch was cancelled."),
    "expired": ("batch_expired", "The request did not run before the batch expired."),
    "failed": ("batch_failed", "The request did not run: the batch failed."),
}
KINDS = {"output": True, "errors": False}


def count(value: int | str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def settle(batch: Batch, status: str, info: dict[str, Any], created: int, ended: int | None) -> str:
    """Set ``batch``'s status, times and result file ids; the status it ends with."""
    if status != "validating":
        batch.in_progress_at = created
    batch.cancelling_at = info.get("cancelling_at")
    if status not in TERMINAL_STATUSES and batch.cancelling_at is not None:
        status = "cancelling"
    batch.status = status
    if status == "completed":
        batch.finalizing_at = batch.completed_at = ended
        batch.output_file_id = f"{batch.id}-output"
        batch.error_file_id = f"{batch.id}-errors"
    elif status in ENDED:
        setattr(batch, f"{status}_at", ended)
        batch.error_file_id = f"{batch.id}-errors" if info.get("input_file_id") else None
    return status
