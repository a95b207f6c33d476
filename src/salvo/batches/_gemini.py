"""Gemini Batch Mode (protocols.md 14) behind OpenAI's batch shapes, ``provider="gemini"``.

- Files: OpenAI-format input files live in the local store (they are translated at create).
- Create: every line is checked and translated first (``_google_lines``: a bad line is a
  ConfigError naming it, before anything is uploaded); one batch runs one model and one
  endpoint: chat (``models/{m}:batchGenerateContent``) or embeddings
  (``models/{m}:asyncBatchEmbedContent``). Requests up to :attr:`GeminiBatches.inline_limit`
  bytes go inline, keyed by ``metadata.key = custom_id``; larger ones are streamed as a JSONL
  file of ``{"key", "request"}`` lines through the Files API's resumable upload
  (``_gemini_upload``: a broken upload resumes from the bytes the session received).
- Status: ``BATCH_STATE_PENDING`` -> ``validating``, ``RUNNING`` -> ``in_progress``,
  ``SUCCEEDED`` -> ``completed``, ``FAILED`` / ``CANCELLED`` / ``EXPIRED`` -> ``failed`` /
  ``cancelled`` / ``expired``. Gemini has no cancelling state (a cancelled batch stays
  running until it stops), so after ``acancel_batch`` salvo answers ``cancelling`` until
  Gemini says ``CANCELLED``. Counts come from ``batchStats``.
- Results: ``<id>-output`` and ``<id>-errors`` are translated on the fly from the inline
  responses or the result file: responses through the Gemini adapter (priced at the batch
  discount), ``google.rpc.Status`` errors as error lines with the HTTP status of their gRPC
  code. A completed batch always has an errors file (it may be empty), so a request whose
  result is missing or unreadable still gets its line; a cancelled, expired or failed batch
  gives every request an error line (``batch_cancelled``, ``batch_expired``,
  ``batch_failed``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from .._errors import ConfigError
from ._gemini_upload import upload_jsonl
from ._google_batch import ENDED, count, page_params, result_file, settle, token_page
from ._google_lines import (
    ended_line,
    input_ids,
    joined,
    log,
    rfc3339,
    translate_file,
)
from ._lines import CHAT, EMBEDDINGS, ENDPOINTS, iter_lines
from ._rest import Rest, decoded
from ._store import LocalStore, StoreFiles, batch_info, not_ready
from ._types import Batch, Page, RequestCounts

__all__ = ["GeminiBatches"]

_ENCODE = msgspec.json.Encoder().encode
_STATUS = {
    "PENDING": "validating",
    "RUNNING": "in_progress",
    "SUCCEEDED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "EXPIRED": "expired",
}


class _Stats(msgspec.Struct, rename="camel"):
    request_count: int | str = 0
    successful_request_count: int | str = 0
    failed_request_count: int | str = 0


class _Item(msgspec.Struct):
    response: msgspec.Raw = msgspec.Raw(b"null")
    error: Any = None
    metadata: Any = None


class _Inlined(msgspec.Struct, rename="camel"):
    inlined_responses: list[_Item] = msgspec.field(default_factory=list)


class _Output(msgspec.Struct, rename="camel"):
    responses_file: str | None = None
    inlined_responses: _Inlined | None = None


class _Meta(msgspec.Struct, rename="camel"):
    type: str = msgspec.field(default="", name="@type")
    model: str = ""
    state: str = "BATCH_STATE_UNSPECIFIED"
    create_time: str | None = None
    update_time: str | None = None
    end_time: str | None = None
    batch_stats: _Stats | None = None
    output: _Output | None = None


class _Operation(msgspec.Struct):
    name: str
    metadata: _Meta = msgspec.field(default_factory=_Meta)


class _OpPage(msgspec.Struct, rename="camel"):
    operations: list[_Operation] = msgspec.field(default_factory=list)
    next_page_token: str | None = None


class _ResultLine(msgspec.Struct):
    key: Any = None
    response: msgspec.Raw = msgspec.Raw(b"null")
    error: Any = None


_DECODE_OP = msgspec.json.Decoder(_Operation).decode
_DECODE_PAGE = msgspec.json.Decoder(_OpPage).decode
_DECODE_LINE = msgspec.json.Decoder(_ResultLine).decode


class GeminiBatches(StoreFiles):
    """Gemini Batch Mode with the OpenAI-shaped calls; input files in the local ``store``."""

    provider = "gemini"
    #: Requests up to this many bytes (encoded) are sent inline; larger ones as a file.
    inline_limit = 4 << 20
    #: The largest input file Gemini takes (its batch guide: 2 GB).
    file_limit = 2_000_000_000

    def __init__(
        self, client: Any, store: LocalStore, *, api_key: str | None, api_base: str | None
    ) -> None:
        self.client = client
        self.store = store
        self.rest = Rest(client, "gemini", api_key=api_key, api_base=api_base,
                               what="batches")  # fmt: skip
        base = self.rest.ep.api_base
        self.v = f"{base}/v1beta"
        self.upload_url = f"{base}/upload/v1beta/files"

    # -- create ------------------------------------------------------------------------------

    def _encoded(self, file_id: str, kind: str, inline: bool) -> AsyncIterator[bytes]:
        async def lines() -> AsyncIterator[bytes]:
            async for t in translate_file(self.store, file_id, provider="gemini", kind=kind):
                if inline:
                    yield _ENCODE({"request": t.request, "metadata": {"key": t.custom_id}})
                else:
                    yield _ENCODE({"key": t.custom_id, "request": t.request}) + b"\n"

        return lines()

    async def _upload(self, file_id: str, kind: str, size: int) -> str:
        return await upload_jsonl(
            self.rest, self.upload_url, lambda: self._encoded(file_id, kind, False), size,
            f"salvo-{file_id}",
        )  # fmt: skip

    async def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str] | None,
    ) -> Batch:
        kind = ENDPOINTS.get(endpoint)
        if kind not in (CHAT, EMBEDDINGS):
            raise ConfigError(
                f"Gemini batches run chat completions and embeddings; use endpoint "
                f"'/v1/chat/completions' or '/v1/embeddings', not {endpoint!r}."
            )
        self.store.get_file(input_file_id, "gemini")
        size = count = 0
        model = ""
        async for t in translate_file(self.store, input_file_id, provider="gemini", kind=kind):
            size += len(_ENCODE({"key": t.custom_id, "request": t.request})) + 1
            count += 1
            model = t.model
            if size > self.file_limit:
                raise ConfigError(
                    f"Line {t.line} (custom_id {t.custom_id!r}) takes the translated batch past "
                    f"Gemini's input file limit of {self.file_limit} bytes; split the file."
                )
        if count == 0:
            raise ConfigError(f"The input file {input_file_id} holds no requests.")
        if size <= self.inline_limit:
            items = [msgspec.Raw(x) async for x in self._encoded(input_file_id, kind, True)]
            config: dict[str, Any] = {"requests": {"requests": items}}
        else:
            config = {"fileName": await self._upload(input_file_id, kind, size)}
        method = "batchGenerateContent" if kind == CHAT else "asyncBatchEmbedContent"
        body = {"batch": {"displayName": f"salvo-{input_file_id}", "inputConfig": config}}
        raw = await self.rest.call("POST", f"{self.v}/models/{model}:{method}", json=body)
        op = self._decode_op(raw)
        info = batch_info(input_file_id, endpoint, completion_window, metadata, model=model)
        self.store.remember("gemini", _id(op.name), info)
        return self._batch(op)

    # -- status ------------------------------------------------------------------------------

    def _decode_op(self, raw: bytes) -> _Operation:
        return decoded(_DECODE_OP, raw, "gemini", "batch operation", why=False)

    async def _get(self, batch_id: str) -> _Operation:
        return self._decode_op(await self.rest.call("GET", f"{self.v}/batches/{_id(batch_id)}"))

    def _batch(self, op: _Operation) -> Batch:
        bid = _id(op.name)
        info, cost = self.store.recall("gemini", bid)
        meta = op.metadata
        state = meta.state.removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_")
        status = _STATUS.get(state, "in_progress")
        created = rfc3339(meta.create_time) or 0
        ended = rfc3339(meta.end_time) or rfc3339(meta.update_time)
        stats = meta.batch_stats or _Stats()
        embed = "Embed" in meta.type or info.get("endpoint") in ("/v1/embeddings", "/embeddings")
        batch = Batch(
            id=bid,
            endpoint=info.get("endpoint")
            or ("/v1/embeddings" if embed else "/v1/chat/completions"),
            input_file_id=info.get("input_file_id", ""),
            completion_window=info.get("completion_window", "24h"),
            created_at=created,
            request_counts=RequestCounts(
                total=count(stats.request_count),
                completed=count(stats.successful_request_count),
                failed=count(stats.failed_request_count),
            ),
            metadata=info.get("metadata"),
            model=info.get("model") or meta.model.removeprefix("models/") or None,
            provider="gemini",
            cost_usd=cost,
        )
        settle(batch, status, info, created, ended)
        return batch

    async def retrieve_batch(self, batch_id: str) -> Batch:
        return self._batch(await self._get(batch_id))

    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]:
        params = page_params(limit, after)
        raw = await self.rest.call("GET", f"{self.v}/batches", params=params)
        page = decoded(_DECODE_PAGE, raw, "gemini", "batch list", why=False)
        return token_page([self._batch(op) for op in page.operations], page.next_page_token)

    async def cancel_batch(self, batch_id: str) -> Batch:
        bid = _id(batch_id)
        await self.rest.call("POST", f"{self.v}/batches/{bid}:cancel")
        self.store.ask_cancel("gemini", bid)
        return await self.retrieve_batch(bid)

    # -- results -----------------------------------------------------------------------------

    async def _results(
        self, op: _Operation, ids: list[str]
    ) -> AsyncIterator[tuple[Any, bool, Any]]:
        output = op.metadata.output or _Output()
        if output.inlined_responses is not None:
            for i, item in enumerate(output.inlined_responses.inlined_responses):
                meta = item.metadata
                key = (
                    meta.get("key")
                    if isinstance(meta, dict)
                    else (ids[i] if i < len(ids) else None)
                )
                good = item.error is None and bytes(item.response) != b"null"
                yield key, good, bytes(item.response) if good else item.error
            return
        if output.responses_file is None:
            return
        url = f"{self.v}/{output.responses_file}:download"
        async for raw in iter_lines(self.rest.stream(url, params={"alt": "media"})):
            one = _result(raw)
            if one is not None:
                yield one

    async def content(self, file_id: str) -> AsyncIterator[bytes]:
        found = result_file(self.store, "gemini", file_id)
        if found is None:
            async for piece in self.store.iter_file(file_id, "gemini"):
                yield piece
            return
        bid, info, want = found
        op = await self._get(bid)
        batch = self._batch(op)
        ids = [c async for c in input_ids(self.store, info["input_file_id"], "gemini")]
        if batch.status in ENDED:
            if not want:
                code, message = ENDED[batch.status]
                for custom_id in ids:
                    yield ended_line(custom_id, code, message)
            return
        if batch.status != "completed":
            raise not_ready("gemini", bid, batch.status)
        kind_ = EMBEDDINGS if batch.endpoint in ("/v1/embeddings", "/embeddings") else CHAT
        async for ok, line in joined(self._results(op, ids), ids, provider="gemini",
                                     model=batch.model or "", kind=kind_):  # fmt: skip
            if ok is want:
                yield line


def _id(name: str) -> str:
    return name.removeprefix("batches/")


def _result(raw: bytes) -> tuple[Any, bool, Any] | None:
    try:
        line = _DECODE_LINE(raw)
    except msgspec.DecodeError:
        log.warning("gemini: a result line is not JSON (%d bytes); its request gets an error "
                    "line", len(raw.rstrip(b"\n")))  # fmt: skip
        return None
    good = line.error is None and bytes(line.response) != b"null"
    return line.key, good, bytes(line.response) if good else line.error
