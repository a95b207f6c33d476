"""The shared half of the providers whose batch lines need translating (Mistral, Together).

- Files live in the local store (like Anthropic's): ``create_file`` checks the OpenAI-format
  JSONL against the provider's :class:`~salvo.batches._backends.Limits` and keeps it.
- ``create_batch`` checks it again against the batch's endpoint, then uploads the provider's
  own lines (``{"custom_id", "body"}``: salvo's call keys and ``stream`` dropped; the model
  kept in the body or taken out as the job's, per provider) as one multipart upload whose
  body is made afresh for each attempt (a retried upload starts from the first byte, and the
  file is never held in memory), and creates the provider's job. What the Batch needs later
  (the local input file id, the line count, a cancel asked) is kept in the store's index.
- ``content`` of an id the store does not hold reads the provider's result file and writes
  each line in OpenAI's output-line shape; an ``error`` that is a bare string becomes
  ``{"code": "error", "message": ...}``; a finish reason the provider names differently is
  put in OpenAI's words. A line that is not JSON raises ResponseDecodeError naming the file
  and the line (a custom_id is never silently dropped).
- Counts: a provider that reports none (Together) has them counted from its result files
  once the batch has ended, once, and kept in the index.
- A batch that ended early (cancelled, expired, failed) gets one error line per custom_id
  that is in neither result file (code ``batch_<status>``), after the provider's own error
  lines (or in an error file ``<batch id>-unrun`` when the provider wrote none).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from .._errors import ConfigError, NotFoundError, ResponseDecodeError
from .._messages import CALL_KEYS
from ..providers import PROVIDERS
from ._backends import Limits, limits_for
from ._check import Checked, check_pieces
from ._lines import OutputLine, ResponsePart, encode_line, iter_lines
from ._rest import Rest, StreamedPayload, decoded
from ._store import FileSource, LocalStore, StoreFiles, batch_info
from ._types import TERMINAL_STATUSES, Batch, BatchError, FileObject, RequestCounts

__all__ = ["JobBatches", "ended_at", "parse_time"]

T = TypeVar("T")
_ENCODE = msgspec.json.Encoder().encode
_DROP = CALL_KEYS | {"stream", "stream_options"}
_LOCAL_ID = "file-"
_UNRUN = "-unrun"  # the error file salvo writes for a batch that ended early without one
_EARLY = ("cancelled", "expired", "failed")


class _Response(msgspec.Struct):
    status_code: int | None = None
    request_id: str | None = None
    body: msgspec.Raw = msgspec.Raw(b"null")


class _ResultLine(msgspec.Struct):
    custom_id: Any = None
    id: Any = None
    response: _Response | None = None
    error: Any = None


class _Input(msgspec.Struct):
    custom_id: str
    body: dict[str, Any]


_DECODE_RESULT = msgspec.json.Decoder(_ResultLine).decode
_DECODE_INPUT = msgspec.json.Decoder(_Input).decode
_DECODE_FILE = msgspec.json.Decoder(FileObject).decode


def parse_time(value: Any) -> int | None:
    """Unix seconds from unix seconds or an RFC 3339 string (None for anything else)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value:
        try:
            return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return None


def ended_at(batch: Batch, when: int | None) -> None:
    """Set an ended batch's end time under its status's name (``completed_at`` and
    ``finalizing_at`` for a completed one); nothing for a batch still running."""
    if batch.status in TERMINAL_STATUSES:
        setattr(batch, f"{batch.status}_at", when)
        if batch.status == "completed":
            batch.finalizing_at = when


def _error(value: Any) -> BatchError:
    if isinstance(value, dict):
        code = value.get("code") or value.get("type") or "error"
        msg = value.get("message")
        return BatchError(code=str(code), message=msg if isinstance(msg, str) else str(value))
    return BatchError(code="error", message=str(value))


class JobBatches(StoreFiles, ABC):
    """Subclasses set ``purpose`` and ``keep_model``, and write the job calls and
    ``to_batch``; see the module docstring."""

    purpose = "batch"
    keep_model = True

    def __init__(
        self,
        *,
        client: Any,
        provider: str,
        store: LocalStore,
        api_key: str | None,
        api_base: str | None,
    ) -> None:
        self.client = client
        self.provider = provider
        self.store = store
        self.rest = Rest(client, provider, api_key=api_key, api_base=api_base, what="batches")
        self.base = self.rest.ep.api_base.rstrip("/")
        limits = limits_for(provider)
        if limits is None:  # pragma: no cover - the factory only builds registered ones
            raise ConfigError(f"{provider} has no batch backend.")
        self.limits: Limits = limits
        self.finish = PROVIDERS[provider].finish_reasons if provider in PROVIDERS else {}

    # -- to write per provider ---------------------------------------------------------------

    @abstractmethod
    async def create_job(
        self, remote_file: str, endpoint: str, checked: Checked, info: dict[str, Any]
    ) -> Batch:
        """Create the provider's job for an uploaded, checked file (each provider's own)."""

    # -- files -------------------------------------------------------------------------------

    async def create_file(
        self, source: FileSource, *, purpose: str, filename: str | None
    ) -> FileObject:
        fo = await super().create_file(source, purpose=purpose, filename=filename)
        if purpose == "batch":  # checked from the local copy (any source, read once)
            try:
                pieces = self.store.iter_file(fo.id, self.provider)
                await check_pieces(self.provider, self.limits, pieces)
            except BaseException:
                self.store.delete_file(fo.id, self.provider)
                raise
        return fo

    def content(self, file_id: str) -> AsyncIterator[bytes]:
        if file_id.startswith(_LOCAL_ID):
            try:
                local = self.store.file_path(file_id).with_suffix(".json").exists()
            except NotFoundError:  # not an id of the store's shape: the provider's
                local = False
            if local:
                return self.store.iter_file(file_id, self.provider)
        if file_id.endswith(_UNRUN):
            return self._with_unrun(file_id.removesuffix(_UNRUN), None)
        ended = self.store.recall(self.provider, f"errors:{file_id}")[0].get("batch_id")
        if isinstance(ended, str):
            return self._with_unrun(ended, file_id)
        return self._results(file_id)

    async def _with_unrun(self, batch_id: str, errors: str | None) -> AsyncIterator[bytes]:
        """The error lines of a batch that ended early (cancelled, expired, failed): the
        provider's, then one per custom_id that appears in neither result file, so every
        custom_id of the input comes back exactly once."""
        info = self.info(batch_id)
        seen: set[str] = set()
        output = info.get("output_file")
        if isinstance(output, str):
            async for raw in self._results(output):
                seen.add(str(msgspec.json.decode(raw).get("custom_id")))
        if errors is not None:
            async for raw in self._results(errors):
                seen.add(str(msgspec.json.decode(raw).get("custom_id")))
                yield raw
        status = str(info.get("ended", "cancelled"))
        error = BatchError(
            code=f"batch_{status}",
            message=f"The request did not run: the batch was {status} first.",
        )
        inp = self.store.iter_file(str(info["input_file_id"]), self.provider)
        async for raw in iter_lines(inp):
            cid = _DECODE_INPUT(raw).custom_id
            if cid not in seen:
                yield encode_line(OutputLine(f"batch_req_{cid}", cid, None, error))

    async def _results(self, file_id: str) -> AsyncIterator[bytes]:
        n = 0
        pieces = self.rest.stream(f"{self.base}/files/{file_id}/content")
        try:
            async for raw in iter_lines(pieces):
                n += 1
                yield self.translate(raw, file_id, n)
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]

    def translate(self, raw: bytes, file_id: str, n: int) -> bytes:
        """One result line of the provider's as an OpenAI output or error line."""
        try:
            line = _DECODE_RESULT(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            err = ResponseDecodeError(
                f"{self.provider} sent a result file {file_id} whose line {n} is not a result "
                f"line ({exc}); it began with {raw[:120].decode('utf-8', 'replace')!r}."
            )
            err.provider = self.provider
            raise err from None
        cid = line.custom_id if isinstance(line.custom_id, str) else None
        line_id = line.id if isinstance(line.id, str) else f"batch_req_{cid}"
        resp = line.response
        if line.error is not None and (resp is None or (resp.status_code or 0) < 300):
            return encode_line(OutputLine(line_id, cid, None, _error(line.error)))
        if resp is None:
            error = BatchError(code="error", message="The provider gave no response.")
            return encode_line(OutputLine(line_id, cid, None, error))
        body: Any = resp.body
        if self.finish and (resp.status_code or 200) < 300 and b'"choices"' in bytes(body):
            body = self._finish_reasons(bytes(body))
        part = ResponsePart(resp.status_code or 200, resp.request_id, body)
        return encode_line(OutputLine(line_id, cid, part, None))

    def _finish_reasons(self, body: bytes) -> Any:
        data = msgspec.json.decode(body)
        for choice in data.get("choices") or () if isinstance(data, dict) else ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str) and reason in self.finish:
                choice["finish_reason"] = self.finish[reason]
        return data

    # -- create ------------------------------------------------------------------------------

    def _line(self, raw: bytes) -> bytes:
        req = _DECODE_INPUT(raw)
        body = {k: v for k, v in req.body.items() if k not in _DROP}
        if not self.keep_model:
            body.pop("model", None)
        elif isinstance(body.get("model"), str):
            body["model"] = body["model"].removeprefix(f"{self.provider}/")
        return _ENCODE({"custom_id": req.custom_id, "body": body}) + b"\n"

    async def _lines(self, file_id: str) -> AsyncIterator[bytes]:
        async for raw in iter_lines(self.store.iter_file(file_id, self.provider)):
            yield self._line(raw)

    async def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str] | None,
    ) -> Batch:
        if endpoint not in self.limits.urls:
            known = ", ".join(sorted(self.limits.urls))
            raise ConfigError(
                f"{self.provider} has no batch for endpoint {endpoint!r}; it takes {known}. "
                "Nothing was uploaded."
            )
        self.store.get_file(input_file_id, self.provider)
        pieces = self.store.iter_file(input_file_id, self.provider)
        checked = await check_pieces(self.provider, self.limits, pieces, endpoint=endpoint)
        size = 0
        async for line in self._lines(input_file_id):
            size += len(line)
        name = f"{input_file_id}.jsonl"

        def body() -> aiohttp.MultipartWriter:
            form = aiohttp.MultipartWriter("form-data")
            form.append(self.purpose).set_content_disposition("form-data", name="purpose")
            part = StreamedPayload(
                lambda: self._lines(input_file_id),
                size,
                content_type="application/jsonl",
                filename=name,
            )
            part.set_content_disposition("form-data", name="file", filename=name)
            form.append_payload(part)
            return form

        raw = await self.rest.call("POST", f"{self.base}/files", body=body)
        remote = self.decoded(_DECODE_FILE, raw, "file object").id
        more = {"remote_file": remote, "lines": checked.lines, "model": checked.model}
        info = batch_info(input_file_id, endpoint, completion_window, metadata, **more)
        batch = await self.create_job(remote, endpoint, checked, info)
        self.store.remember(self.provider, batch.id, info)
        return batch

    def decoded(self, decode: Callable[[bytes], T], raw: bytes, what: str) -> T:
        """``decode(raw)``, or a ResponseDecodeError naming the provider and ``what``."""
        return decoded(decode, raw, self.provider, what)

    # -- the shared parts of the Batch -------------------------------------------------------

    def info(self, batch_id: str) -> dict[str, Any]:
        return self.store.recall(self.provider, batch_id)[0]

    def finish_batch(self, batch: Batch, info: Mapping[str, Any]) -> Batch:
        """Fill what the provider left out from what salvo kept: the local input file, the
        endpoint and metadata, the cancel asked (``cancelling`` until the provider says
        the batch is cancelled), and the total when the provider reports none."""
        batch.provider = self.provider
        batch.input_file_id = info.get("input_file_id") or batch.input_file_id
        batch.endpoint = info.get("endpoint") or batch.endpoint
        batch.completion_window = info.get("completion_window") or batch.completion_window
        batch.metadata = batch.metadata or info.get("metadata")
        asked = info.get("cancelling_at")
        if asked is not None:
            batch.cancelling_at = batch.cancelling_at or int(asked)
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.status = "cancelling"
        if batch.request_counts.total == 0 and info.get("lines"):
            batch.request_counts = RequestCounts(total=int(info["lines"]))
        if batch.status in _EARLY and info.get("input_file_id") and "ended" not in info:
            self._ended_early(batch, dict(info))
        if batch.status in _EARLY and info.get("input_file_id"):
            batch.error_file_id = batch.error_file_id or f"{batch.id}{_UNRUN}"
        return batch

    def _ended_early(self, batch: Batch, info: dict[str, Any]) -> None:
        """Keep what ``content`` needs to add the requests that never ran (once)."""
        info.update(ended=batch.status, output_file=batch.output_file_id)
        self.store.remember(self.provider, batch.id, info)
        if batch.error_file_id is not None:
            key = f"errors:{batch.error_file_id}"
            self.store.remember(self.provider, key, {"batch_id": batch.id})

    async def count_results(self, batch: Batch) -> Batch:
        """Counts from the result files of an ended batch whose provider reports none;
        counted once, then kept in the store's index."""
        if not batch.done:
            return batch
        info = self.info(batch.id)
        counts = info.get("counts")
        if not isinstance(counts, list):
            counts = [0, 0]
            for i, file_id in enumerate((batch.output_file_id, batch.error_file_id)):
                if file_id is not None and not file_id.endswith(_UNRUN):
                    url = f"{self.base}/files/{file_id}/content"
                    async for _ in iter_lines(self.rest.stream(url)):
                        counts[i] += 1
            info["counts"] = counts
            self.store.remember(self.provider, batch.id, info)
        total = max(batch.request_counts.total, int(info.get("lines") or 0), sum(counts))
        batch.request_counts = RequestCounts(total=total, completed=counts[0], failed=counts[1])
        return batch
