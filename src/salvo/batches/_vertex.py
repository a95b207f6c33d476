"""Vertex AI batch prediction (protocols.md 15.2-15.3) behind OpenAI's batch shapes,
``provider="vertex_ai"``.

- Files: OpenAI-format input files live in the local store.
- Create: every line is checked and translated first (``_google_lines``; chat only, one
  model), then streamed to Cloud Storage as ``gs://{GCS_BUCKET_NAME}/salvo/<file>-<hex>/
  input.jsonl`` (one ``{"request": GenerateContentRequest}`` per line, the line's position in
  ``request.labels.salvo_line``: a label value Vertex accepts whatever the custom_id looks
  like), and a ``batchPredictionJobs`` job is created with the output prefix beside it.
- Status: ``JOB_STATE_QUEUED`` / ``PENDING`` -> ``validating``; ``RUNNING`` / ``PAUSED`` /
  ``UPDATING`` -> ``in_progress``; ``SUCCEEDED`` / ``PARTIALLY_SUCCEEDED`` -> ``completed``;
  ``CANCELLING`` -> ``cancelling``; ``CANCELLED``, ``FAILED``, ``EXPIRED`` as named. After
  ``acancel_batch`` salvo answers ``cancelling`` until Vertex says the job is cancelled.
  Counts: total from the input, completed / failed from ``completionStats``.
- Results: every ``.jsonl`` object under ``outputInfo.gcsOutputDirectory`` is read (in
  pieces), each line joined to its custom_id through the echoed label; ``status: ""`` lines
  become output lines (parsed by the Gemini adapter, priced at the batch discount), others
  error lines with Vertex's text. Every custom_id appears exactly once: a request with no
  readable result line gets ``missing_result`` (completed job) or ``batch_cancelled`` /
  ``batch_failed`` / ``batch_expired``; what a cancelled job wrote before it stopped is kept.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from .._errors import ConfigError
from ._gcs import Gcs, split_uri
from ._google_batch import ENDED, count, page_params, result_file, settle, token_page
from ._google_lines import ended_line, input_ids, joined, log, rfc3339, translate_file
from ._lines import CHAT, ENDPOINTS, iter_lines
from ._rest import Rest, decoded
from ._store import LocalStore, StoreFiles, batch_info, not_ready
from ._types import TERMINAL_STATUSES, Batch, BatchError, BatchErrors, Page, RequestCounts

__all__ = ["VertexBatches"]

_ENCODE = msgspec.json.Encoder().encode
_STATUS = {
    "QUEUED": "validating",
    "PENDING": "validating",
    "RUNNING": "in_progress",
    "PAUSED": "in_progress",
    "UPDATING": "in_progress",
    "SUCCEEDED": "completed",
    "PARTIALLY_SUCCEEDED": "completed",
    "FAILED": "failed",
    "UNSPECIFIED": "failed",
    "CANCELLING": "cancelling",
    "CANCELLED": "cancelled",
    "EXPIRED": "expired",
}


class _Stats(msgspec.Struct, rename="camel"):
    successful_count: int | str = 0
    failed_count: int | str = 0


class _OutputInfo(msgspec.Struct, rename="camel"):
    gcs_output_directory: str | None = None


class _Job(msgspec.Struct, rename="camel"):
    name: str
    state: str = "JOB_STATE_UNSPECIFIED"
    model: str = ""
    create_time: str | None = None
    end_time: str | None = None
    update_time: str | None = None
    completion_stats: _Stats | None = None
    output_info: _OutputInfo | None = None
    error: Any = None


class _Jobs(msgspec.Struct, rename="camel"):
    batch_prediction_jobs: list[_Job] = msgspec.field(default_factory=list)
    next_page_token: str | None = None


class _Request(msgspec.Struct):
    labels: dict[str, str] | None = None


class _Line(msgspec.Struct):
    status: Any = ""
    request: _Request | None = None
    response: msgspec.Raw = msgspec.Raw(b"null")


_DECODE_JOB = msgspec.json.Decoder(_Job).decode
_DECODE_JOBS = msgspec.json.Decoder(_Jobs).decode
_DECODE_LINE = msgspec.json.Decoder(_Line).decode


class VertexBatches(StoreFiles):
    """Vertex AI batch prediction with the OpenAI-shaped calls; input files in the local
    ``store``, job files in the Cloud Storage bucket ``GCS_BUCKET_NAME``."""

    provider = "vertex_ai"

    def __init__(
        self, client: Any, store: LocalStore, *, api_base: str | None, bucket: str | None = None
    ) -> None:
        self.client = client
        self.store = store
        self.rest = Rest(client, "vertex_ai", api_key=None, api_base=api_base,
                               what="batches")  # fmt: skip
        self.jobs = f"{self.rest.ep.api_base}/batchPredictionJobs"
        self.gcs = Gcs(self.rest)
        self.bucket = bucket or os.environ.get("GCS_BUCKET_NAME") or None

    # -- create ------------------------------------------------------------------------------

    async def _lines(self, file_id: str) -> AsyncIterator[bytes]:
        n = 0
        async for t in translate_file(self.store, file_id, provider="vertex_ai", kind=CHAT):
            request = {**t.request, "labels": {**t.request.get("labels", {}), "salvo_line": str(n)}}
            n += 1
            yield _ENCODE({"request": request}) + b"\n"

    async def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str] | None,
    ) -> Batch:
        if ENDPOINTS.get(endpoint) != CHAT:
            raise ConfigError(
                f"Vertex AI batch prediction runs chat completions only in salvo; use endpoint "
                f"'/v1/chat/completions', not {endpoint!r} (or provider='local')."
            )
        self.store.get_file(input_file_id, "vertex_ai")
        size = count = 0
        model = ""
        async for line in self._lines(input_file_id):  # check every line before uploading
            size += len(line)
            count += 1
        if count == 0:
            raise ConfigError(f"The input file {input_file_id} holds no requests.")
        async for t in translate_file(self.store, input_file_id, provider="vertex_ai", kind=CHAT):
            model = t.model
            break
        if not self.bucket:
            raise ConfigError(
                "Vertex AI batch prediction reads its input from Cloud Storage: set "
                "GCS_BUCKET_NAME to a bucket the service account can write to."
            )
        root = f"salvo/{input_file_id}-{secrets.token_hex(4)}"
        await self.gcs.upload(self.bucket, f"{root}/input.jsonl",
                              lambda: self._lines(input_file_id), size)  # fmt: skip
        path = model if model.startswith(("publishers/", "projects/")) else (
            f"publishers/google/models/{model}")  # fmt: skip
        body = {
            "displayName": f"salvo-{input_file_id}",
            "model": path,
            "inputConfig": {"instancesFormat": "jsonl",
                            "gcsSource": {"uris": [f"gs://{self.bucket}/{root}/input.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": f"gs://{self.bucket}/{root}/output"}},
        }  # fmt: skip
        job = self._decode(await self.rest.call("POST", self.jobs, json=body))
        info = batch_info(
            input_file_id, endpoint, completion_window, metadata, model=model, count=count
        )
        self.store.remember("vertex_ai", _id(job.name), info)
        return self._batch(job)

    # -- status ------------------------------------------------------------------------------

    def _decode(self, raw: bytes) -> _Job:
        return decoded(_DECODE_JOB, raw, "vertex_ai", "batch prediction job", why=False)

    async def _get(self, batch_id: str) -> _Job:
        return self._decode(await self.rest.call("GET", f"{self.jobs}/{_id(batch_id)}"))

    def _batch(self, job: _Job) -> Batch:
        bid = _id(job.name)
        info, cost = self.store.recall("vertex_ai", bid)
        status = _STATUS.get(job.state.removeprefix("JOB_STATE_"), "in_progress")
        created = rfc3339(job.create_time) or 0
        ended = rfc3339(job.end_time) or rfc3339(job.update_time)
        stats = job.completion_stats or _Stats()
        batch = Batch(
            id=bid,
            endpoint=info.get("endpoint", "/v1/chat/completions"),
            input_file_id=info.get("input_file_id", ""),
            completion_window=info.get("completion_window", "24h"),
            created_at=created,
            request_counts=RequestCounts(
                total=int(info.get("count") or 0),
                completed=count(stats.successful_count),
                failed=count(stats.failed_count),
            ),
            metadata=info.get("metadata"),
            model=info.get("model") or job.model.rsplit("/", 1)[-1] or None,
            provider="vertex_ai",
            cost_usd=cost,
        )
        status = settle(batch, status, info, created, ended)
        if status in ENDED:
            if isinstance(job.error, dict) and job.error.get("message"):
                code = job.error.get("code")
                why = BatchError(code=None if code is None else str(code),
                                 message=str(job.error["message"]))  # fmt: skip
                batch.errors = BatchErrors(data=[why])
            has_output = job.output_info is not None and job.output_info.gcs_output_directory
            readable = bool(info.get("input_file_id"))
            batch.output_file_id = f"{bid}-output" if readable and has_output else None
        return batch

    async def retrieve_batch(self, batch_id: str) -> Batch:
        return self._batch(await self._get(batch_id))

    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]:
        params = page_params(limit, after)
        raw = await self.rest.call("GET", self.jobs, params=params)
        page = decoded(_DECODE_JOBS, raw, "vertex_ai", "batch prediction job list", why=False)
        data = [self._batch(job) for job in page.batch_prediction_jobs]
        return token_page(data, page.next_page_token)

    async def cancel_batch(self, batch_id: str) -> Batch:
        bid = _id(batch_id)
        await self.rest.call("POST", f"{self.jobs}/{bid}:cancel")
        self.store.ask_cancel("vertex_ai", bid)
        return await self.retrieve_batch(bid)

    # -- results -----------------------------------------------------------------------------

    async def _results(self, job: _Job, ids: list[str]) -> AsyncIterator[tuple[Any, bool, Any]]:
        out = job.output_info.gcs_output_directory if job.output_info else None
        if not out:
            return
        bucket, prefix = split_uri(out.rstrip("/") + "/")
        for name in await self.gcs.list(bucket, prefix):
            if not name.endswith(".jsonl"):
                continue
            async for raw in iter_lines(self.gcs.download(bucket, name)):
                one = _result(raw, ids)
                if one is not None:
                    yield one

    async def content(self, file_id: str) -> AsyncIterator[bytes]:
        found = result_file(self.store, "vertex_ai", file_id)
        if found is None:
            async for piece in self.store.iter_file(file_id, "vertex_ai"):
                yield piece
            return
        bid, info, want = found
        job = await self._get(bid)
        batch = self._batch(job)
        if batch.status not in TERMINAL_STATUSES:
            raise not_ready("vertex_ai", bid, batch.status)
        ids = [c async for c in input_ids(self.store, info["input_file_id"], "vertex_ai")]
        missing = None
        if batch.status in ENDED:
            code, message = ENDED[batch.status]

            def missing(custom_id: str) -> bytes:
                return ended_line(custom_id, code, message)

        results = self._results(job, ids)
        model = batch.model or ""
        async for ok, line in joined(
            results, ids, provider="vertex_ai", model=model, kind=CHAT, missing=missing
        ):
            if ok is want:
                yield line


def _id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _result(raw: bytes, ids: list[str]) -> tuple[Any, bool, Any] | None:
    try:
        line = _DECODE_LINE(raw)
    except msgspec.DecodeError:
        log.warning("vertex_ai: a prediction line is not JSON (%d bytes); its request gets "
                    "an error line", len(raw.rstrip(b"\n")))  # fmt: skip
        return None
    labels = (line.request.labels if line.request else None) or {}
    pos = labels.get("salvo_line", "")
    key = ids[int(pos)] if pos.isdigit() and int(pos) < len(ids) else None
    good = not line.status and bytes(line.response) != b"null"
    status = line.status if line.status else "Vertex AI returned no response for this request."
    return key, good, bytes(line.response) if good else status
