"""Together batches (protocols.md 18.2) behind OpenAI's batch shapes.

- Files in the local store; at create the lines become ``{"custom_id", "body"}`` (the model
  stays in the body), uploaded with a plain multipart ``POST {base}/files`` and purpose
  ``batch-api``; the batch made with ``POST {base}/batches`` (answered ``{"job", "warning"}``;
  a warning is kept in the Batch's ``errors`` with code ``warning``).
- Status: the upper-case names lower-cased. Together has no cancelling status: once a cancel
  was asked the Batch says ``cancelling`` until Together says ``CANCELLED`` (or the batch
  ended some other way first).
- Counts: Together reports none. The total is the line count salvo sent; completed and failed
  are counted from the output and error files once the batch has ended (``_jobs``).
- List: ``GET {base}/batches`` is one JSON array; salvo pages it (newest first).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._check import Checked
from ._jobs import JobBatches, ended_at, parse_time
from ._store import paginate
from ._types import Batch, BatchError, BatchErrors, Page

__all__ = ["TogetherBatches", "to_batch"]


class _Job(msgspec.Struct):
    id: str
    status: str = "VALIDATING"
    input_file_id: str = ""
    endpoint: str = "/v1/chat/completions"
    model_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: Any = None
    created_at: Any = None
    completed_at: Any = None
    job_deadline: Any = None


class _Created(msgspec.Struct):
    job: _Job
    warning: str | None = None


_DECODE_JOB = msgspec.json.Decoder(_Job).decode
_DECODE_JOBS = msgspec.json.Decoder(list[_Job]).decode
_DECODE_CREATED = msgspec.json.Decoder(_Created).decode


def to_batch(job: _Job) -> Batch:
    status = job.status.lower()
    created = parse_time(job.created_at) or 0
    batch = Batch(
        id=job.id,
        endpoint=job.endpoint,
        input_file_id=job.input_file_id,
        status=status,
        output_file_id=job.output_file_id,
        error_file_id=job.error_file_id,
        created_at=created,
        in_progress_at=created if status != "validating" else None,
        expires_at=parse_time(job.job_deadline),
        model=job.model_id,
        provider="together",
    )
    if job.error:
        batch.errors = BatchErrors(data=[BatchError(code="batch_error", message=str(job.error))])
    ended_at(batch, parse_time(job.completed_at))
    return batch


class TogetherBatches(JobBatches):
    """Together batches with the OpenAI-shaped calls; files in the local store."""

    purpose = "batch-api"
    keep_model = True

    async def create_job(
        self, remote_file: str, endpoint: str, checked: Checked, info: dict[str, Any]
    ) -> Batch:
        body = {
            "endpoint": "/v1" + endpoint.removeprefix("/v1"),
            "input_file_id": remote_file,
            "completion_window": info["completion_window"],
        }
        raw = await self.rest.call("POST", f"{self.base}/batches", json=body)
        created = self.decoded(_DECODE_CREATED, raw, "batch")
        batch = self.finish_batch(to_batch(created.job), info)
        if created.warning:
            warning = BatchError(code="warning", message=created.warning)
            batch.errors = BatchErrors(data=[*(batch.errors.data if batch.errors else ()), warning])
        return batch

    def _job(self, raw: bytes) -> _Job:
        return self.decoded(_DECODE_JOB, raw, "batch")

    async def retrieve_batch(self, batch_id: str) -> Batch:
        job = self._job(await self.rest.call("GET", f"{self.base}/batches/{batch_id}"))
        batch = self.finish_batch(to_batch(job), self.info(batch_id))
        return await self.count_results(batch)

    async def cancel_batch(self, batch_id: str) -> Batch:
        self.store.ask_cancel(self.provider, batch_id)
        raw = await self.rest.call("POST", f"{self.base}/batches/{batch_id}/cancel")
        return self.finish_batch(to_batch(self._job(raw)), self.info(batch_id))

    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]:
        raw = await self.rest.call("GET", f"{self.base}/batches")
        jobs = self.decoded(_DECODE_JOBS, raw, "batch list")
        jobs.sort(key=lambda j: parse_time(j.created_at) or 0, reverse=True)
        page: Page[_Job] = paginate(jobs, limit, after)
        data = []
        for job in page.data:  # counts of ended batches salvo made (counted once, then kept)
            info = self.info(job.id)
            batch = self.finish_batch(to_batch(job), info)
            data.append(await self.count_results(batch) if info else batch)
        return Page(data=data, has_more=page.has_more, first_id=page.first_id,
                    last_id=page.last_id)  # fmt: skip
