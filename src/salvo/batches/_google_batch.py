"""What the two Google batch backends (``_gemini.py``, ``_vertex.py``) share around the Batch.

- :data:`ENDED`: the error code and message of a request that never ran, per early end.
- :data:`KINDS`: the result file ids ``<batch id>-output`` / ``-errors`` (True: output lines).
- :func:`count`: a count Google may send as a string (int64 in JSON), 0 if unreadable.
- :func:`settle`: the Batch's status and times from Google's mapped state and salvo's note of
  a cancel asked (``cancelling`` until Google says the batch ended), with its result files.
- :func:`result_file`: which batch and which half a result file id names.
- :func:`page_params`, :func:`token_page`: list paging by ``pageSize`` / ``pageToken``.
"""

from __future__ import annotations

from typing import Any

from ._store import LocalStore
from ._types import TERMINAL_STATUSES, Batch, Page

__all__ = ["ENDED", "KINDS", "count", "page_params", "result_file", "settle", "token_page"]

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


def result_file(
    store: LocalStore, provider: str, file_id: str
) -> tuple[str, dict[str, Any], bool] | None:
    """(batch id, what the store keeps of it, True for the output half) when ``file_id`` is
    ``<batch id>-output`` or ``-errors`` of a batch made through this store; else None (a
    file of the local store)."""
    bid, _, kind = file_id.rpartition("-")
    info, _ = store.recall(provider, bid) if bid else ({}, None)
    if kind not in KINDS or not info.get("input_file_id"):
        return None
    return bid, info, KINDS[kind]


def page_params(limit: int, after: str | None) -> dict[str, str]:
    """A list call's query: ``pageSize``, and salvo's ``after`` as the ``pageToken``."""
    params = {"pageSize": str(limit)}
    if after is not None:
        params["pageToken"] = after
    return params


def token_page(data: list[Batch], next_token: str | None) -> Page[Batch]:
    """A page whose ``last_id`` is Google's next page token (None on the last page)."""
    token = next_token or None
    return Page(data=data, has_more=token is not None,
                first_id=data[0].id if data else None, last_id=token)  # fmt: skip
