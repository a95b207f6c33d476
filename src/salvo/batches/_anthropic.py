"""Anthropic Message Batches (protocols.md 6) behind OpenAI's batch shapes.

- Files: Anthropic has no files API, so files live in the local store.
- Create: each OpenAI-format line is checked (custom_id 1-64 of ``[a-zA-Z0-9_-]``, unique;
  ``/v1/chat/completions``; an Anthropic model) and translated with the Anthropic adapter's
  :func:`~salvo.providers.anthropic.to_anthropic_body`. A first pass raises ConfigError naming
  the first bad line before anything is sent; the second streams ``{"requests": [...]}`` to
  ``POST /v1/messages/batches`` with its length known (the file is never held in memory).
- Status: ``in_progress`` -> ``in_progress``; ``canceling`` -> ``cancelling``; ``ended`` ->
  ``cancelled`` (when a cancel was asked), ``expired`` (when requests expired), else
  ``completed``. Counts: completed = succeeded, failed = errored + canceled + expired (each of
  those has an error line), total = their sum. RFC 3339 times become unix seconds.
- Results: the batch's ``results_url`` JSONL is translated line by line into OpenAI output
  lines (``<batch id>-output``: succeeded, through ``from_anthropic_message``) and error lines
  (``<batch id>-errors``: errored with the HTTP status of the error type, canceled with code
  ``batch_cancelled``, expired with ``batch_expired``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from .._errors import ConfigError
from .._messages import CALL_KEYS, check_messages
from .._pricing import response_cost
from ..providers.anthropic import from_anthropic_message, to_anthropic_body
from ._backends import limits_for
from ._check import check_pieces
from ._lines import (
    CHAT,
    ENDPOINTS,
    OutputLine,
    ResponsePart,
    check_anthropic_custom_id,
    decode_input,
    encode_line,
    numbered_lines,
)
from ._rest import Rest, StreamedPayload
from ._store import LocalStore, StoreFiles, batch_info, not_ready
from ._types import Batch, BatchError, Page, RequestCounts

__all__ = ["AnthropicBatches", "translate_result"]

_ENCODE = msgspec.json.Encoder().encode
_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_KINDS = {"output": True, "errors": False}


class _Counts(msgspec.Struct):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class _MessageBatch(msgspec.Struct):
    id: str
    processing_status: str = "in_progress"
    request_counts: _Counts = msgspec.field(default_factory=_Counts)
    created_at: str | None = None
    expires_at: str | None = None
    ended_at: str | None = None
    cancel_initiated_at: str | None = None
    results_url: str | None = None


class _Result(msgspec.Struct):
    type: str
    message: msgspec.Raw = msgspec.Raw(b"null")
    error: Any = None


class _ResultLine(msgspec.Struct):
    custom_id: str
    result: _Result


_DECODE_BATCH = msgspec.json.Decoder(_MessageBatch).decode
_DECODE_PAGE = msgspec.json.Decoder(Page[_MessageBatch]).decode
_DECODE_RESULT = msgspec.json.Decoder(_ResultLine).decode


def _ts(value: str | None) -> int | None:
    if not value:
        return None
    return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def to_batch(mb: _MessageBatch, info: Mapping[str, Any], cost: float | None) -> Batch:
    c = mb.request_counts
    failed = c.errored + c.canceled + c.expired
    created = _ts(mb.created_at) or 0
    batch = Batch(
        id=mb.id,
        endpoint=info.get("endpoint", "/v1/chat/completions"),
        input_file_id=info.get("input_file_id", ""),
        completion_window=info.get("completion_window", "24h"),
        created_at=created,
        in_progress_at=created,
        expires_at=_ts(mb.expires_at),
        request_counts=RequestCounts(
            total=c.processing + c.succeeded + failed, completed=c.succeeded, failed=failed
        ),
        metadata=info.get("metadata"),
        provider="anthropic",
        cost_usd=cost,
    )
    ended, cancel = _ts(mb.ended_at), _ts(mb.cancel_initiated_at)
    status = mb.processing_status
    batch.cancelling_at = cancel
    if status == "canceling":
        batch.status = "cancelling"
    elif status == "ended":
        if cancel is not None:
            batch.status, batch.cancelled_at = "cancelled", ended
        elif c.expired:
            batch.status, batch.expired_at = "expired", ended
        else:
            batch.status, batch.finalizing_at, batch.completed_at = "completed", ended, ended
        batch.output_file_id = f"{mb.id}-output" if c.succeeded else None
        batch.error_file_id = f"{mb.id}-errors" if failed else None
    else:
        batch.status = "in_progress" if status == "in_progress" else status
    return batch


def translate_result(raw: bytes) -> tuple[bool, bytes, float | None]:
    """One results line as (succeeded, OpenAI-format output or error line, cost)."""
    line = _DECODE_RESULT(raw)
    result, custom_id = line.result, line.custom_id
    line_id = f"batch_req_{custom_id}"
    if result.type == "succeeded" and bytes(result.message) != b"null":
        resp = from_anthropic_message(bytes(result.message))
        cost = response_cost("anthropic", resp.usage, resp.model, batch=True)
        resp.cost_usd = cost
        part = ResponsePart(200, resp.id or None, resp)
        return True, encode_line(OutputLine(line_id, custom_id, part, None)), cost
    if result.type == "errored":
        err: dict[str, Any] = result.error if isinstance(result.error, dict) else {}
        inner: dict[str, Any] = err["error"] if isinstance(err.get("error"), dict) else {}
        kind = str(inner.get("type") or "api_error")
        body = {
            "error": {
                "message": inner.get("message") or kind,
                "type": kind,
                "param": None,
                "code": None,
            }
        }
        part = ResponsePart(_STATUS.get(kind, 500), err.get("request_id"), body)
        return False, encode_line(OutputLine(line_id, custom_id, part, None)), None
    if result.type == "canceled":
        code, msg = "batch_cancelled", "The request did not run: the batch was cancelled."
    elif result.type == "expired":
        code, msg = "batch_expired", "The request did not run before the batch expired."
    else:
        code, msg = result.type, f"Anthropic reported the result type {result.type!r}."
    error = BatchError(code=code, message=msg)
    return False, encode_line(OutputLine(line_id, custom_id, None, error)), None


class AnthropicBatches(StoreFiles):
    """Message Batches with the OpenAI-shaped calls; files in the local ``store``."""

    provider = "anthropic"

    def __init__(
        self,
        client: Any,
        store: LocalStore,
        *,
        api_key: str | None,
        api_base: str | None,
        provider: str = "anthropic",
    ) -> None:
        self.client = client
        self.store = store
        self.over = {k: v for k, v in (("api_key", api_key), ("api_base", api_base)) if v}
        self.rest = Rest(client, "anthropic", api_key=api_key, api_base=api_base, what="batches")
        base = self.rest.ep.api_base
        self.root = f"{base if base.endswith('/v1') else base + '/v1'}/messages/batches"

    # -- create ------------------------------------------------------------------------------

    def _request(self, raw: bytes, line: int, seen: dict[str, int]) -> bytes:
        try:
            req = decode_input(raw)
        except ConfigError as exc:
            raise ConfigError(f"Line {line}: {exc}.") from None
        custom_id = check_anthropic_custom_id(req.custom_id, line)
        if custom_id in seen:
            raise ConfigError(
                f"Line {line}: custom_id {custom_id!r} repeats line {seen[custom_id]}; "
                "custom_ids must be unique within a batch."
            )
        seen[custom_id] = line
        if ENDPOINTS.get(req.url) != CHAT or not isinstance(req.body, dict):
            raise ConfigError(
                f"Line {line}: Anthropic batches run chat completions only: the url must be "
                f"/v1/chat/completions (not {req.url!r}) and body a JSON object."
            )
        params = dict(req.body)
        messages = params.pop("messages", None)
        model = params.pop("model", None)
        params.pop("stream", None)
        try:
            check_messages(messages)
            opts = self.client.options(str(model), {**params, **self.over})
        except ConfigError as exc:
            raise ConfigError(f"Line {line}: {exc}") from None
        dep = opts.dep
        if dep.provider != "anthropic":
            raise ConfigError(
                f"Line {line}: model {model!r} is a {dep.provider} model; an Anthropic batch "
                "runs Anthropic models only."
            )
        params = {k: v for k, v in params.items() if k not in CALL_KEYS}
        body = to_anthropic_body(dep.endpoint.model, messages, {**dep.params, **params})
        return _ENCODE({"custom_id": custom_id, "params": body})

    async def _requests(self, file_id: str) -> AsyncIterator[bytes]:
        seen: dict[str, int] = {}
        async for line, raw in numbered_lines(self.store.iter_file(file_id, "anthropic")):
            yield self._request(raw, line, seen)

    async def _body(self, file_id: str) -> AsyncIterator[bytes]:
        first = True
        yield b'{"requests":['
        async for req in self._requests(file_id):
            yield req if first else b"," + req
            first = False
        yield b"]}"

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
                f"Anthropic Message Batches run chat completions only; use endpoint "
                f"'/v1/chat/completions', not {endpoint!r} (or provider='local')."
            )
        self.store.get_file(input_file_id, "anthropic")
        limits = limits_for("anthropic")
        if limits is not None:  # the provider's limits, before the line-by-line pass
            pieces = self.store.iter_file(input_file_id, "anthropic")
            await check_pieces("anthropic", limits, pieces, endpoint=endpoint)
        size, count = len(b'{"requests":[]}'), 0
        async for req in self._requests(input_file_id):  # validate everything first
            size += len(req) + (1 if count else 0)
            count += 1
        if count == 0:
            raise ConfigError(f"The input file {input_file_id} holds no requests.")

        def body() -> StreamedPayload:
            return StreamedPayload(
                lambda: self._body(input_file_id), size, content_type="application/json"
            )

        raw = await self.rest.call("POST", self.root, body=body)
        mb = _DECODE_BATCH(raw)
        info = batch_info(input_file_id, endpoint, completion_window, metadata)
        self.store.remember("anthropic", mb.id, info)
        return to_batch(mb, info, None)

    # -- the rest ----------------------------------------------------------------------------

    async def _get(self, batch_id: str) -> _MessageBatch:
        return _DECODE_BATCH(await self.rest.call("GET", f"{self.root}/{batch_id}"))

    def _batch(self, mb: _MessageBatch) -> Batch:
        info, cost = self.store.recall("anthropic", mb.id)
        return to_batch(mb, info, cost)

    async def retrieve_batch(self, batch_id: str) -> Batch:
        return self._batch(await self._get(batch_id))

    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]:
        params = {"limit": str(limit)}
        if after is not None:
            params["after_id"] = after
        page = _DECODE_PAGE(await self.rest.call("GET", self.root, params=params))
        data = [self._batch(mb) for mb in page.data]
        return Page(data=data, has_more=page.has_more, first_id=page.first_id,
                    last_id=page.last_id)  # fmt: skip

    async def cancel_batch(self, batch_id: str) -> Batch:
        return self._batch(
            _DECODE_BATCH(await self.rest.call("POST", f"{self.root}/{batch_id}/cancel"))
        )

    async def content(self, file_id: str) -> AsyncIterator[bytes]:
        batch_id, _, kind = file_id.rpartition("-")
        if not batch_id.startswith("msgbatch_") or kind not in _KINDS:
            async for piece in self.store.iter_file(file_id, "anthropic"):
                yield piece
            return
        mb = await self._get(batch_id)
        if mb.results_url is None:
            raise not_ready("anthropic", batch_id, mb.processing_status)
        want = _KINDS[kind]
        tail = b""
        async for piece in self.rest.stream(
            mb.results_url, headers={"accept": "application/binary"}
        ):
            lines = (tail + piece).split(b"\n")
            tail = lines.pop()
            out = [
                line
                for ok, line, _ in map(translate_result, filter(bytes.strip, lines))
                if ok is want
            ]
            if out:
                yield b"".join(out)
        if tail.strip():
            ok, line, _ = translate_result(tail)
            if ok is want:
                yield line
