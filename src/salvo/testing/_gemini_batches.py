"""Gemini Batch Mode (protocols.md 14.2-14.4) for the fake, provider "gemini".

- ``POST /v1beta/models/{model}:batchGenerateContent`` and ``:asyncBatchEmbedContent`` with
  ``{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request",
  "metadata"}]}} | {"fileName": "files/..."}}}`` (a file holds ``{"key", "request"}`` lines)
  answer with the Operation, ``metadata.state = BATCH_STATE_PENDING``.
- ``GET /v1beta/batches/{id}``, ``GET /v1beta/batches?pageSize=&pageToken=`` (``operations``,
  newest first), ``POST /v1beta/batches/{id}:cancel`` (``{}``; the batch keeps its state until
  the next step makes it ``BATCH_STATE_CANCELLED``, as on the real API, which has no
  "cancelling" state), ``DELETE /v1beta/batches/{id}``.

The clock is the test's, as for the OpenAI batches: `GeminiBatches.advance` moves every
unfinished batch one step (``PENDING -> RUNNING -> SUCCEEDED``), or ``auto_advance`` steps per
retrieve. On success every request is answered with the fake's own answer under its model's
Behavior (an error Behavior, or a request without ``contents``, becomes an ``error`` item with
a gRPC code); inline batches get ``output.inlinedResponses.inlinedResponses`` in input order
with each request's ``metadata`` echoed, file batches a ``GENERATED`` result file
(``output.responsesFile``) of ``{"key", "response" | "error"}`` lines in input order.
``batchStats`` counts are int64 strings. `gemini_answer` is shared with the Vertex fake.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from ._behavior import Behavior
from ._content import DEFAULT_DIMENSIONS, answer_text, completion_tokens, embedding, prompt_tokens
from ._faults import encode
from ._gemini_files import fail, gemini_files_of, has_key, ok, rfc3339
from ._state import STATE_KEY, FakeState, route

__all__ = ["GRPC_CODES", "GeminiBatch", "GeminiBatches", "gemini_answer", "gemini_batches_of",
           "install"]  # fmt: skip

_ids = itertools.count(1)
_DECODE = msgspec.json.Decoder()
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 500: 13, 503: 14, 504: 4}
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main."


def _text(content: Any) -> str | None:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return None
    return " ".join(str(p.get("text", "")) for p in content["parts"] if isinstance(p, dict))


def gemini_answer(
    behavior: Behavior, model: str, request: Any, n: int, *, embed: bool = False
) -> tuple[bool, dict[str, Any]]:
    """(ok, GenerateContentResponse | EmbedContentResponse | google.rpc.Status) for one request."""
    if embed:
        text = _text(request.get("content")) if isinstance(request, dict) else None
        if text is None:
            return False, {"code": 3, "message": "* EmbedContentRequest.content: required"}
    elif not isinstance(request, dict) or not isinstance(request.get("contents"), list):
        return False, {"code": 3, "message": "* GenerateContentRequest.contents: contents is "
                       "not specified"}  # fmt: skip
    b = behavior
    if b.is_error:
        message = b.error_message or f"The request failed with status {b.status}."
        return False, {"code": GRPC_CODES.get(b.status, 13), "message": message}
    if embed:
        dims = request.get("outputDimensionality")
        size = dims if isinstance(dims, int) and dims > 0 else DEFAULT_DIMENSIONS
        return True, {"embedding": {"values": embedding(model, text, size)}}
    answer = answer_text(b, model)
    prompt, completion = prompt_tokens(b, request), completion_tokens(b, answer)
    return True, {
        "candidates": [{"content": {"role": "model", "parts": [{"text": answer}]},
                        "finishReason": b.finish_reason or "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": completion,
                          "totalTokenCount": prompt + completion},
        "modelVersion": model,
        "responseId": f"fakebatch{n}",
    }  # fmt: skip


@dataclass(slots=True, eq=False)
class GeminiBatch:
    name: str
    model: str
    display_name: str
    embed: bool
    items: list[tuple[Any, Any]]  # (metadata or key, request)
    file_input: bool
    state: str = "BATCH_STATE_PENDING"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    ended: float | None = None
    cancel_requested: bool = False
    output: list[dict[str, Any]] = field(default_factory=list)
    responses_file: str | None = None
    succeeded: int = 0
    failed: int = 0


_DONE = frozenset({"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED",
                   "BATCH_STATE_EXPIRED"})  # fmt: skip


class GeminiBatches:
    """Every Gemini batch of one fake, and its clock."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.batches: dict[str, GeminiBatch] = {}
        self.auto_advance = 0

    def clear(self) -> None:
        self.batches.clear()
        self.auto_advance = 0

    def advance(self, steps: int = 1, name: str | None = None) -> None:
        targets = [self.batches[name]] if name else list(self.batches.values())
        for _ in range(steps):
            for b in targets:
                self._step(b)

    def expire(self, name: str) -> None:
        b = self.batches[name]
        if b.state not in _DONE:
            b.state, b.ended = "BATCH_STATE_EXPIRED", time.time()

    def _step(self, b: GeminiBatch) -> None:
        if b.state in _DONE:
            return
        now = time.time()
        b.updated = now
        if b.cancel_requested:
            b.state, b.ended = "BATCH_STATE_CANCELLED", now
        elif b.state == "BATCH_STATE_PENDING":
            b.state = "BATCH_STATE_RUNNING"
        else:
            self._answer_all(b)
            b.state, b.ended = "BATCH_STATE_SUCCEEDED", now

    def _answer_all(self, b: GeminiBatch) -> None:
        n0 = int(b.name.rsplit("-", 1)[-1]) * 1_000_000
        lines = []
        for i, (tag, request) in enumerate(b.items):
            behavior = self.state.behavior_for(b.model)
            good, value = gemini_answer(behavior, b.model, request, n0 + i, embed=b.embed)
            b.succeeded += good
            b.failed += not good
            kind = "response" if good else "error"
            if b.file_input:
                lines.append(encode({"key": tag, kind: value}) + b"\n")
            else:
                item: dict[str, Any] = {kind: value}
                if tag is not None:
                    item["metadata"] = tag
                b.output.append(item)
        if b.file_input:
            f = gemini_files_of(self.state).add(
                b"".join(lines), name=f"files/batch-{b.name.split('/')[-1]}",
                display_name=f"{b.name} results", source="GENERATED")  # fmt: skip
            b.responses_file = f.name

    def operation(self, b: GeminiBatch) -> dict[str, Any]:
        total = len(b.items)
        meta: dict[str, Any] = {
            "@type": _TYPE + ("EmbedContentBatch" if b.embed else "GenerateContentBatch"),
            "model": f"models/{b.model}", "displayName": b.display_name, "name": b.name,
            "createTime": rfc3339(b.created), "updateTime": rfc3339(b.updated),
            "state": b.state,
            "batchStats": {"requestCount": str(total),
                           "successfulRequestCount": str(b.succeeded),
                           "failedRequestCount": str(b.failed),
                           "pendingRequestCount": str(total - b.succeeded - b.failed)},
        }  # fmt: skip
        out: dict[str, Any] = {"name": b.name, "metadata": meta, "done": b.state in _DONE}
        if b.ended is not None:
            meta["endTime"] = rfc3339(b.ended)
        if b.state == "BATCH_STATE_SUCCEEDED":
            if b.file_input:
                output: dict[str, Any] = {"responsesFile": b.responses_file}
            else:
                output = {"inlinedResponses": {"inlinedResponses": b.output}}
            meta["output"] = output
            out["response"] = {"@type": _TYPE + "GenerateContentBatchOutput", **output}
        elif b.state == "BATCH_STATE_CANCELLED":
            out["error"] = {"code": 1, "message": "The batch was cancelled."}
        return out


def gemini_batches_of(owner: Any) -> GeminiBatches:
    state: FakeState = getattr(owner, "state", owner)
    return state.ext_store("gemini_batches", GeminiBatches, GeminiBatches)


def _file_items(data: bytes) -> list[tuple[Any, Any]] | str:
    items = []
    for i, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = _DECODE.decode(raw)
        except msgspec.DecodeError:
            return f"Line {i} of the input file is not valid JSON."
        if not isinstance(line, dict) or "request" not in line:
            return f"Line {i} of the input file has no 'request'."
        items.append((line.get("key"), line["request"]))
    return items or "The input file holds no requests."


@route
async def create(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    store = gemini_batches_of(state)
    model, method = request.match_info["model"], request.match_info["method"]
    raw = await request.read()
    # model "": the batch's requests, not its creation, follow (and count in) the script
    ex = state.begin(request, provider="gemini", model="", stream=False, body=None)
    if not has_key(request):
        return await fail(ex, 401, "API key not valid. Please pass a valid API key.")
    try:
        body = _DECODE.decode(raw)
        batch = body["batch"]
        config = batch["inputConfig"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return await fail(ex, 400, "* batch.inputConfig: required")
    ex.record.body = body
    if isinstance(config.get("requests"), dict):
        inline = config["requests"].get("requests")
        if not isinstance(inline, list) or not inline:
            return await fail(ex, 400, "* batch.inputConfig.requests.requests: empty")
        items = [(r.get("metadata"), r.get("request")) if isinstance(r, dict) else (None, None)
                 for r in inline]  # fmt: skip
        file_input = False
    elif isinstance(config.get("fileName"), str):
        f = gemini_files_of(state).files.get(config["fileName"])
        if f is None:
            return await fail(ex, 400, f"File {config['fileName']} not found.")
        parsed = _file_items(f.data)
        if isinstance(parsed, str):
            return await fail(ex, 400, parsed)
        items, file_input = parsed, True
    else:
        return await fail(ex, 400, "* batch.inputConfig: requests or fileName is required")
    b = GeminiBatch(f"batches/fake-{next(_ids)}", model, str(batch.get("displayName") or ""),
                    method == "asyncBatchEmbedContent", items, file_input)  # fmt: skip
    store.batches[b.name] = b
    return await ok(ex, store.operation(b))


@route
async def batches(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    store = gemini_batches_of(state)
    ex = state.begin(request, provider="gemini", model="", stream=False, body=None)
    if not has_key(request):
        return await fail(ex, 401, "API key not valid. Please pass a valid API key.")
    target = request.match_info.get("target")
    if target is None:
        try:
            size = max(1, min(int(request.query.get("pageSize", "10")), 100))
            start = int(request.query.get("pageToken") or 0)
        except ValueError:
            return await fail(ex, 400, "Invalid pageSize or pageToken.")
        items = sorted(store.batches.values(), key=lambda b: b.created, reverse=True)
        out: dict[str, Any] = {"operations": [store.operation(b)
                                              for b in items[start : start + size]]}  # fmt: skip
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return await ok(ex, out)
    batch_id, _, action = target.partition(":")
    b = store.batches.get(f"batches/{batch_id}")
    if b is None or action not in ("", "cancel"):
        return await fail(ex, 404, f"Batch batches/{batch_id} not found.")
    if action == "cancel":
        if b.state not in _DONE:
            b.cancel_requested = True
        return await ok(ex, {})
    if request.method == "DELETE":
        del store.batches[b.name]
        return await ok(ex, {})
    if store.auto_advance:
        store.advance(store.auto_advance, b.name)
    return await ok(ex, store.operation(b))


def install(app: web.Application) -> None:
    gemini_batches_of(app[STATE_KEY])
    methods = "batchGenerateContent|asyncBatchEmbedContent"
    app.router.add_post(
        r"/{version:v1beta|v1}/models/{model:[^/:]+}:{method:" + methods + "}", create
    )
    app.router.add_get("/v1beta/batches", batches)
    app.router.add_route("*", "/v1beta/batches/{target}", batches)
