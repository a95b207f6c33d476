"""Mistral batch jobs (protocols.md 17) behind OpenAI's batch shapes.

- Files in the local store; at create the lines become ``{"custom_id", "body"}`` without the
  model (Mistral takes one model per job, a job field), uploaded to ``POST {base}/files`` with
  purpose ``batch``, and the job made with ``POST {base}/batch/jobs`` (``input_files``,
  ``endpoint``, ``model``, ``metadata``, ``timeout_hours`` from the completion window).
- Status: QUEUED validating, RUNNING in_progress, SUCCESS completed, FAILED failed,
  TIMEOUT_EXCEEDED expired, CANCELLATION_REQUESTED cancelling, CANCELLED cancelled.
- Counts: total_requests, succeeded_requests (completed), failed_requests (failed).
- ``output_file`` / ``error_file`` are the Batch's ``output_file_id`` / ``error_file_id``;
  their content comes back as OpenAI output lines (``_jobs``).
- List: Mistral pages by number; ``after`` is found by walking the pages (newest first).
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._errors import ConfigError
from ._check import Checked
from ._jobs import JobBatches, ended_at, parse_time
from ._types import Batch, BatchError, BatchErrors, Page, RequestCounts

__all__ = ["MistralBatches", "to_batch"]

STATUS = {
    "QUEUED": "validating",
    "RUNNING": "in_progress",
    "SUCCESS": "completed",
    "FAILED": "failed",
    "TIMEOUT_EXCEEDED": "expired",
    "CANCELLATION_REQUESTED": "cancelling",
    "CANCELLED": "cancelled",
}


class _Job(msgspec.Struct):
    id: str
    status: str = "QUEUED"
    input_files: list[str] = msgspec.field(default_factory=list)
    endpoint: str = "/v1/chat/completions"
    model: str | None = None
    metadata: dict[str, Any] | None = None
    output_file: str | None = None
    error_file: str | None = None
    errors: list[Any] = msgspec.field(default_factory=list)
    created_at: Any = None
    started_at: Any = None
    completed_at: Any = None
    total_requests: int = 0
    succeeded_requests: int = 0
    failed_requests: int = 0


class _Jobs(msgspec.Struct):
    data: list[_Job] = msgspec.field(default_factory=list)
    total: int = 0


_DECODE_JOB = msgspec.json.Decoder(_Job).decode
_DECODE_JOBS = msgspec.json.Decoder(_Jobs).decode


def to_batch(job: _Job) -> Batch:
    status = STATUS.get(job.status, job.status.lower())
    errors = [
        BatchError(code="batch_error", message=str(e.get("message") if isinstance(e, dict) else e))
        for e in job.errors
    ]
    batch = Batch(
        id=job.id,
        endpoint=job.endpoint,
        input_file_id=job.input_files[0] if job.input_files else "",
        status=status,
        output_file_id=job.output_file,
        error_file_id=job.error_file,
        created_at=parse_time(job.created_at) or 0,
        in_progress_at=parse_time(job.started_at),
        request_counts=RequestCounts(
            total=job.total_requests,
            completed=job.succeeded_requests,
            failed=job.failed_requests,
        ),
        errors=BatchErrors(data=errors) if errors else None,
        metadata={str(k): str(v) for k, v in job.metadata.items()} if job.metadata else None,
        model=job.model,
        provider="mistral",
    )
    ended_at(batch, parse_time(job.completed_at))
    return batch


def _hours(window: str) -> int:
    """``24h`` -> 24, ``7d`` -> 168 (Mistral's ``timeout_hours``)."""
    unit = window[-1:]
    try:
        value = int(window[:-1])
    except ValueError:
        value = 0
    hours = value * 24 if unit == "d" else value if unit == "h" else 0
    if hours <= 0:
        raise ConfigError(
            f"completion_window must look like '24h' or '7d' (Mistral's timeout_hours), not "
            f"{window!r}."
        )
    return hours


class MistralBatches(JobBatches):
    """Mistral batch jobs with the OpenAI-shaped calls; files in the local store."""

    purpose = "batch"
    keep_model = False

    async def create_job(
        self, remote_file: str, endpoint: str, checked: Checked, info: dict[str, Any]
    ) -> Batch:
        body: dict[str, Any] = {
            "input_files": [remote_file],
            "endpoint": "/v1" + endpoint.removeprefix("/v1"),
            "model": (checked.model or "").removeprefix("mistral/"),
            "timeout_hours": _hours(info["completion_window"]),
        }
        if info.get("metadata"):
            body["metadata"] = info["metadata"]
        raw = await self.rest.call("POST", f"{self.base}/batch/jobs", json=body)
        return self.finish_batch(self._job(raw), info)

    def _job(self, raw: bytes) -> Batch:
        return to_batch(self.decoded(_DECODE_JOB, raw, "batch job"))

    async def retrieve_batch(self, batch_id: str) -> Batch:
        raw = await self.rest.call("GET", f"{self.base}/batch/jobs/{batch_id}")
        return self.finish_batch(self._job(raw), self.info(batch_id))

    async def cancel_batch(self, batch_id: str) -> Batch:
        self.store.ask_cancel(self.provider, batch_id)
        raw = await self.rest.call("POST", f"{self.base}/batch/jobs/{batch_id}/cancel")
        return self.finish_batch(self._job(raw), self.info(batch_id))

    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]:
        found = after is None
        out: list[Batch] = []
        page, size = 0, max(limit, 1)
        while len(out) <= limit:
            params = {"page": str(page), "page_size": str(size), "order_by": "-created"}
            raw = await self.rest.call("GET", f"{self.base}/batch/jobs", params=params)
            jobs = self.decoded(_DECODE_JOBS, raw, "batch job list")
            for job in jobs.data:
                if found:
                    out.append(self.finish_batch(to_batch(job), self.info(job.id)))
                elif job.id == after:
                    found = True
            page += 1
            if not jobs.data or page * size >= jobs.total:
                break
        data = out[:limit]
        return Page(
            data=data,
            has_more=len(out) > limit,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )
