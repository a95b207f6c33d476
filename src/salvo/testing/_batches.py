"""OpenAI batches (protocols.md 4) and Anthropic Message Batches (6) for the fake.

The clock is the test's: a batch moves one step per `BatchStore.advance` (or per retrieve, with
``auto_advance = n``; or ``POST /_fake/batches/advance {"steps", "batch_id"}`` and
``POST /_fake/batches/auto {"steps"}`` from another process). Nothing moves on its own.

- OpenAI: ``validating`` -> ``in_progress`` (or ``failed``, with ``errors`` naming lines) ->
  ``finalizing`` (every request is answered) -> ``completed`` (output and error files written,
  ``usage`` and ``model`` set); a cancel moves ``validating``/``in_progress`` to ``cancelling``,
  then ``cancelled`` (no request answered).
- Anthropic: ``in_progress`` -> ``ended`` (answered; ``results_url`` set only now); a cancel
  moves it to ``canceling`` (``cancel_initiated_at``), then ``ended`` with every result
  ``canceled``. `BatchStore.expire` ends one with every result ``expired``.

Each request is answered with the fake's own chat answer for its model's Behavior (scripts count
these requests too); an error Behavior becomes an error line (OpenAI: ``response.status_code``
and the error body) or an ``errored`` result. Output lines are shuffled (seeded per batch).
Timestamps: unix ints for OpenAI, RFC 3339 strings for Anthropic. Store: `batches_of(fake)`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from . import _anthropic
from ._content import answer_text, completion_tokens, prompt_tokens
from ._faults import encode, send_json
from ._files import (
    PREFIXES,
    begin_openai,
    fail,
    files_of,
    openai_line,
    page_of,
    read_requests,
    reply,
    shim_exchange,
)
from ._state import STATE_KEY, Exchange, FakeState, read_json, route

__all__ = ["BatchStore", "FakeBatch", "batches_of", "install"]

_ids = itertools.count(1)
_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")
_OPENAI_STEPS = {"validating": "in_progress", "in_progress": "finalizing",
                 "finalizing": "completed", "cancelling": "cancelled"}  # fmt: skip


@dataclass(slots=True, eq=False)
class FakeBatch:
    id: str
    provider: str
    status: str
    n: int
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    endpoint: str = "/v1/chat/completions"
    input_file_id: str = ""
    metadata: dict[str, Any] | None = None
    times: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None
    counts: dict[str, int] = field(default_factory=dict)
    lines: list[tuple[bool, bytes]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_url: str | None = None
    usage: dict[str, int] | None = None


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BatchStore:
    """Every batch of one fake, and its clock."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.batches: dict[str, FakeBatch] = {}
        #: Steps a batch moves each time it is retrieved (0: only `advance` moves it).
        self.auto_advance = 0

    def clear(self) -> None:
        self.batches.clear()
        self.auto_advance = 0

    def get(self, batch_id: str) -> FakeBatch:
        return self.batches[batch_id]

    def advance(self, steps: int = 1, batch_id: str | None = None) -> None:
        """Move every unfinished batch (or one) ``steps`` steps along its lifecycle."""
        targets = [self.batches[batch_id]] if batch_id else list(self.batches.values())
        for _ in range(steps):
            for b in targets:
                self._step(b)

    def expire(self, batch_id: str) -> None:
        b = self.batches[batch_id]
        if b.provider == "anthropic" and b.status != "ended":
            b.lines = [(False, encode({"custom_id": c, "result": {"type": "expired"}}))
                       for c, _, _ in b.requests]  # fmt: skip
            b.counts = {"expired": len(b.requests)}
            self._end_anthropic(b)

    def _step(self, b: FakeBatch) -> None:
        now = time.time()
        if b.provider == "anthropic":
            if b.status == "canceling":
                b.lines = [(False, encode({"custom_id": c, "result": {"type": "canceled"}}))
                           for c, _, _ in b.requests]  # fmt: skip
                b.counts = {"canceled": len(b.requests)}
                self._end_anthropic(b)
            elif b.status == "in_progress":
                self._answer_all(b)
                self._end_anthropic(b)
            return
        nxt = _OPENAI_STEPS.get(b.status)
        if nxt is None:
            return
        if b.status == "validating":
            f = files_of(self.state).files.get(b.input_file_id)
            b.errors = read_requests(f, b.endpoint, b.requests)
            nxt = "failed" if b.errors else nxt
        elif nxt == "finalizing":
            self._answer_all(b)
        elif nxt == "completed":
            self._write_files(b)
        b.status = nxt
        b.times[f"{nxt}_at"] = now

    def _end_anthropic(self, b: FakeBatch) -> None:
        b.status = "ended"
        b.times["ended_at"] = time.time()
        b.results_url = f"{b.results_url}/v1/messages/batches/{b.id}/results"
        random.Random(b.n).shuffle(b.lines)

    def _answer_all(self, b: FakeBatch) -> None:
        counts = {"succeeded": 0, "errored": 0, "completed": 0, "failed": 0}
        usage = {"input_tokens": 0, "output_tokens": 0}
        for i, (custom_id, url, body) in enumerate(b.requests):
            model = str(body.get("model") or "")
            behavior = self.state.behavior_for(model)
            shim = shim_exchange(behavior, b.n * 1_000_000 + i, b.provider)
            if b.provider == "anthropic":
                ok, line = _anthropic_result(shim, custom_id, model, body)
                counts["succeeded" if ok else "errored"] += 1
            else:
                ok, line, used = openai_line(shim, custom_id, url, model, body)
                counts["completed" if ok else "failed"] += 1
                usage = {k: usage[k] + used.get(k, 0) for k in usage}
            b.lines.append((ok, line))
        b.counts, b.usage = counts, usage
        random.Random(b.n).shuffle(b.lines)

    def _write_files(self, b: FakeBatch) -> None:
        files = files_of(self.state)
        for ok, kind in ((True, "output"), (False, "error")):
            data = b"".join(line + b"\n" for good, line in b.lines if good is ok)
            if data:
                f = files.add(data, f"{b.id}_{kind}.jsonl", "batch_output")
                setattr(b, f"{kind}_file_id", f.id)

    # -- wire shapes -------------------------------------------------------------------------

    def openai_object(self, b: FakeBatch) -> dict[str, Any]:
        t = b.times
        ts = {k: (int(t[k]) if k in t else None) for k in (
            "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
            "cancelling_at", "cancelled_at")}  # fmt: skip
        done = b.status in ("completed", "cancelled")
        return {
            "id": b.id, "object": "batch", "endpoint": b.endpoint,
            "model": (b.requests[0][2].get("model") if b.requests else None),
            "errors": {"object": "list", "data": b.errors} if b.errors else None,
            "input_file_id": b.input_file_id, "completion_window": "24h", "status": b.status,
            "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
            "created_at": int(t["created_at"]), "expires_at": int(t["created_at"]) + 86400,
            **ts,
            "request_counts": {"total": len(b.requests), "completed": b.counts.get("completed", 0),
                               "failed": b.counts.get("failed", 0)},
            "metadata": b.metadata,
            "usage": {**b.usage, "total_tokens": sum(b.usage.values())}
            if done and b.usage else None,
        }  # fmt: skip

    def anthropic_object(self, b: FakeBatch) -> dict[str, Any]:
        ended = b.status == "ended"
        keys = ("succeeded", "errored", "canceled", "expired")
        counts = {k: (b.counts.get(k, 0) if ended else 0) for k in keys}
        return {
            "id": b.id, "type": "message_batch", "processing_status": b.status,
            "request_counts": {"processing": 0 if ended else len(b.requests), **counts},
            "ended_at": _rfc3339(b.times.get("ended_at")),
            "created_at": _rfc3339(b.times["created_at"]),
            "expires_at": _rfc3339(b.times["created_at"] + 86400),
            "cancel_initiated_at": _rfc3339(b.times.get("cancel_initiated_at")),
            "archived_at": None, "results_url": b.results_url if ended else None,
        }  # fmt: skip


def batches_of(owner: Any) -> BatchStore:
    """The BatchStore of a FakeProvider (or of its FakeState)."""
    state: FakeState = getattr(owner, "state", owner)
    return state.ext_store("batches", BatchStore, BatchStore)


def _anthropic_result(
    ex: Exchange, custom_id: str, model: str, params: dict[str, Any]
) -> tuple[bool, bytes]:
    b = ex.behavior
    if b.is_error:
        error = _anthropic.error_payload(b.status, b, f"req_fake{ex.record.id}")
        result: dict[str, Any] = {"type": "errored", "error": msgspec.Raw(error)}
    else:
        text = answer_text(b, model)
        message = _anthropic._message(
            ex, model, text, prompt_tokens(b, params), completion_tokens(b, text)
        )
        result = {"type": "succeeded", "message": msgspec.Raw(message)}
    return not b.is_error, encode({"custom_id": custom_id, "result": result})


# -- routes --------------------------------------------------------------------------------------


@route
async def openai_create(request: web.Request) -> web.StreamResponse:
    ex, failed = await begin_openai(request)
    if failed is not None:
        return failed
    state = request.app[STATE_KEY]
    body, bad = await read_json(request)
    if bad is not None:
        return await fail(ex, 400, bad)
    f = files_of(state).files.get(str(body.get("input_file_id")))
    if f is None or f.purpose != "batch":
        return await fail(ex, 400, "input_file_id must name a file uploaded with purpose 'batch'.",
                          param="input_file_id")  # fmt: skip
    if body.get("endpoint") not in _ENDPOINTS:
        return await fail(
            ex, 400, f"Unsupported endpoint {body.get('endpoint')!r}.", param="endpoint"
        )
    if body.get("completion_window") != "24h":
        return await fail(ex, 400, "completion_window must be '24h'.", param="completion_window")
    n = next(_ids)
    b = FakeBatch(f"batch_fake{n:08d}", "openai", "validating", n, endpoint=body["endpoint"],
                  input_file_id=f.id, metadata=body.get("metadata"),
                  times={"created_at": time.time()})  # fmt: skip
    batches_of(state).batches[b.id] = b
    return await reply(ex, batches_of(state).openai_object(b))


@route
async def openai_list(request: web.Request) -> web.StreamResponse:
    ex, failed = await begin_openai(request)
    if failed is not None:
        return failed
    store = batches_of(request.app[STATE_KEY])
    items = [store.openai_object(b) for b in reversed(store.batches.values())
             if b.provider != "anthropic"]  # fmt: skip
    page = page_of(items, request, 20, 100)
    return await (fail(ex, 400, page, param="limit") if isinstance(page, str) else reply(ex, page))


@route
async def openai_batch(request: web.Request) -> web.StreamResponse:
    """``GET {prefix}/batches/{id}`` and ``POST {prefix}/batches/{id}/cancel``."""
    ex, failed = await begin_openai(request)
    if failed is not None:
        return failed
    store = batches_of(request.app[STATE_KEY])
    b = store.batches.get(request.match_info["batch_id"])
    if b is None or b.provider == "anthropic":
        return await fail(ex, 404, f"No batch found with id '{request.match_info['batch_id']}'.")
    if request.method == "GET":
        store.advance(store.auto_advance, b.id)
    elif b.status not in ("validating", "in_progress", "cancelling"):
        return await fail(ex, 409, f"Cannot cancel a batch with status '{b.status}'.")
    elif b.status != "cancelling":
        b.status, b.times["cancelling_at"] = "cancelling", time.time()
    return await reply(ex, store.openai_object(b))


async def _anthropic_begin(request: web.Request) -> tuple[Exchange, web.StreamResponse | None]:
    ex = request.app[STATE_KEY].begin(request, provider="anthropic", model="", stream=False,
                                      body=None)  # fmt: skip
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not (request.headers.get("x-api-key", "").strip() or (scheme.lower() == "bearer" and token)):
        return ex, await _anthropic_fail(ex, 401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return ex, await _anthropic_fail(ex, 400, "anthropic-version: header is required")
    return ex, None


async def _anthropic_fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    body = _anthropic.error_payload(status, None, ex.request_id, message)
    return await send_json(ex, status, body, {"request-id": ex.request_id}, scripted=False)


@route
async def anthropic_batches(request: web.Request) -> web.StreamResponse:
    """Every ``/v1/messages/batches[/{id}[/cancel|/results]]`` request."""
    ex, failed = await _anthropic_begin(request)
    if failed is not None:
        return failed
    store = batches_of(request.app[STATE_KEY])
    batch_id, action = request.match_info.get("batch_id"), request.match_info.get("action")
    if batch_id is None:
        if request.method == "POST":
            return await _anthropic_create(request, ex, store)
        items = [store.anthropic_object(b) for b in reversed(store.batches.values())
                 if b.provider == "anthropic"]  # fmt: skip
        page = page_of(items, _anthropic_cursor(request), 20, 1000)
        if isinstance(page, str):
            return await _anthropic_fail(ex, 400, page)
        page.pop("object")
        return await reply(ex, page)
    b = store.batches.get(batch_id)
    if b is None or b.provider != "anthropic":
        return await _anthropic_fail(ex, 404, f"No message batch with id {batch_id!r}.")
    if action == "cancel":
        if b.status == "in_progress":
            b.status, b.times["cancel_initiated_at"] = "canceling", time.time()
    elif action == "results":
        if b.status != "ended":
            return await _anthropic_fail(ex, 400, f"Message batch {b.id} has not ended yet.")
        data = b"".join(line + b"\n" for _, line in b.lines)
        return await reply(ex, data, "application/binary")
    elif request.method == "DELETE":
        if b.status != "ended":
            return await _anthropic_fail(ex, 400, "Cancel the batch and wait for it to end first.")
        del store.batches[b.id]
        return await reply(ex, {"id": b.id, "type": "message_batch_deleted"})
    else:
        store.advance(store.auto_advance, b.id)
    return await reply(ex, store.anthropic_object(b))


def _anthropic_cursor(request: web.Request) -> web.Request:
    """Anthropic's ``after_id`` as the ``after`` that page_of reads (``before_id`` ignored)."""
    after = request.query.get("after_id")
    if after is None:
        return request
    return request.clone(rel_url=request.rel_url.update_query(after=after))


async def _anthropic_create(
    request: web.Request, ex: Exchange, store: BatchStore
) -> web.StreamResponse:
    body, bad = await read_json(request)
    if bad is not None:
        return await _anthropic_fail(ex, 400, bad)
    reqs = body.get("requests")
    if not isinstance(reqs, list) or not 1 <= len(reqs) <= 100_000:
        return await _anthropic_fail(ex, 400, "requests: must hold 1 to 100,000 items")
    seen: set[str] = set()
    n = next(_ids)
    origin = str(request.url.origin())
    b = FakeBatch(f"msgbatch_fake{n:08d}", "anthropic", "in_progress", n,
                  times={"created_at": time.time()}, results_url=origin)  # fmt: skip
    for i, item in enumerate(reqs):
        cid = item.get("custom_id") if isinstance(item, dict) else None
        params = item.get("params") if isinstance(item, dict) else None
        if not isinstance(cid, str) or not _ANTHROPIC_ID.match(cid) or cid in seen:
            return await _anthropic_fail(ex, 400, f"requests.{i}.custom_id: invalid or repeated")
        if not isinstance(params, dict) or not {"model", "max_tokens", "messages"} <= params.keys():
            return await _anthropic_fail(ex, 400, f"requests.{i}.params: model, max_tokens and "
                                         "messages are required")  # fmt: skip
        seen.add(cid)
        b.requests.append((cid, "/v1/messages", params))
    store.batches[b.id] = b
    return await reply(ex, store.anthropic_object(b))


async def _control(request: web.Request) -> web.Response:
    store = batches_of(request.app[STATE_KEY])
    data = await request.json() if request.can_read_body else {}
    steps = int(data.get("steps", 1))
    if request.path.endswith("/auto"):
        store.auto_advance = steps
    else:
        store.advance(steps, data.get("batch_id"))
    return web.Response(body=encode({"ok": True}), content_type="application/json")


def install(app: web.Application) -> None:
    batches_of(app[STATE_KEY])
    for prefix in PREFIXES:
        app.router.add_post(f"{prefix}/batches", openai_create)
        app.router.add_get(f"{prefix}/batches", openai_list)
        app.router.add_get(f"{prefix}/batches/{{batch_id}}", openai_batch)
        app.router.add_post(f"{prefix}/batches/{{batch_id}}/cancel", openai_batch)
    base = "/v1/messages/batches"
    app.router.add_route("*", base, anthropic_batches)
    app.router.add_route("*", f"{base}/{{batch_id}}", anthropic_batches)
    app.router.add_route("*", f"{base}/{{batch_id}}/{{action:cancel|results}}", anthropic_batches)
    app.router.add_post("/_fake/batches/advance", _control)
    app.router.add_post("/_fake/batches/auto", _control)
