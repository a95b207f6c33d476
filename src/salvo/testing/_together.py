"""Together's files and batches (protocols.md 18.2) for the fake, under ``/together/v1``; and
Groq's OpenAI-compatible copy (18.1) under ``/groq/openai/v1``.

Together: files with purpose ``batch-api`` (plain multipart upload); ``POST /batches`` answers
``{"job": ..., "warning": null}``, ``GET /batches`` a JSON array; times are RFC 3339 strings;
no request counts (``progress`` 0-100 instead) and no cancelling status: a cancelled job shows
``IN_PROGRESS`` until the clock moves it to ``CANCELLED``. Errors are OpenAI-shaped.

Groq: OpenAI's files and batches routes (``_files``, ``_batches``) at Groq's paths, with Groq's
rules on create: only ``/v1/chat/completions``, a ``completion_window`` from 24h to 7d.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from typing import Any

from aiohttp import web

from . import _batches, _files
from ._files import read_upload, scripted_upload_failure
from ._jobs import FakeJob, JobFile, JobStore, begin, jobs_of
from ._state import STATE_KEY, Exchange, read_json, route

__all__ = ["GROQ_PREFIX", "PREFIX", "install", "job_object"]

PREFIX = "/together/v1"
GROQ_PREFIX = "/groq/openai/v1"
_PURPOSES = ("fine-tune", "eval", "calibration", "batch-api")
_ENDPOINTS = ("/v1/chat/completions", "/v1/audio/transcriptions", "/v1/audio/translations")
_STATUS = {"queued": "VALIDATING", "running": "IN_PROGRESS", "cancelling": "IN_PROGRESS",
           "done": "COMPLETED", "failed": "FAILED", "cancelled": "CANCELLED"}  # fmt: skip
_WINDOW = re.compile(r"^(\d+)([hd])$")
_groq_ids = itertools.count(1)


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_object(f: JobFile) -> dict[str, Any]:
    return {"id": f.id, "object": "file", "bytes": len(f.content), "created_at": f.created_at,
            "filename": f.filename, "FileType": "jsonl", "purpose": f.purpose,
            "processing_status": "completed"}  # fmt: skip


def job_object(job: FakeJob, store: JobStore) -> dict[str, Any]:
    f = store.files.get(job.input_file)
    progress = 100.0 if job.status in ("done", "cancelled") else 0.0
    return {
        "id": job.id, "user_id": "user-fake", "input_file_id": job.input_file,
        "file_size_bytes": len(f.content) if f else 0, "status": _STATUS[job.status],
        "job_deadline": _rfc3339(job.created_at + 86400), "created_at": _rfc3339(job.created_at),
        "completed_at": _rfc3339(job.ended_at), "endpoint": job.endpoint, "progress": progress,
        "model_id": job.model, "output_file_id": job.output_file,
        "error_file_id": job.error_file, "error": "; ".join(job.errors) or None,
    }  # fmt: skip


async def _fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    return await _files.fail(ex, status, message)


async def _begin(request: web.Request) -> tuple[Exchange, JobStore, web.StreamResponse | None]:
    return await begin(request, "together", _fail, "Invalid API key provided.")


@route
async def files(request: web.Request) -> web.StreamResponse:
    ex, store, failed = await _begin(request)
    if failed is not None:
        return failed
    file_id = request.match_info.get("file_id")
    if file_id is None:
        if request.method == "POST":
            if await scripted_upload_failure(request, store):
                return await _fail(ex, 500, "Internal server error (scripted by the fake).")
            purpose, content, filename = await read_upload(request)
            await store.held()
            if content is None or not filename:
                return await _fail(ex, 400, "A file part with a filename is required.")
            if purpose not in _PURPOSES:
                return await _fail(ex, 400, f"Invalid purpose {purpose!r}.")
            made = store.add_file(content, filename, purpose, "batch_request")
            return await _files.reply(ex, file_object(made))
        items = [file_object(f) for f in reversed(store.files.values())]
        return await _files.reply(ex, {"object": "list", "data": items})
    f = store.files.get(file_id)
    if f is None:
        return await _fail(ex, 404, f"File {file_id} not found.")
    if request.path.endswith("/content"):
        await store.held()
        return await _files.reply(ex, f.content, "application/octet-stream")
    if request.method == "DELETE":
        del store.files[file_id]
        return await _files.reply(ex, {"id": file_id, "object": "file", "deleted": True})
    return await _files.reply(ex, file_object(f))


@route
async def batches(request: web.Request) -> web.StreamResponse:
    ex, store, failed = await _begin(request)
    if failed is not None:
        return failed
    job_id = request.match_info.get("job_id")
    if job_id is None:
        if request.method == "POST":
            return await _create(request, ex, store)
        items = [job_object(j, store) for j in reversed(store.jobs.values())]
        return await _files.reply(ex, items)
    job = store.jobs.get(job_id)
    if job is None:
        return await _fail(ex, 404, f"Batch {job_id} not found.")
    if request.path.endswith("/cancel"):
        store.cancel(job)
    else:
        store.advance(store.auto_advance, job.id)
    return await _files.reply(ex, job_object(job, store))


async def _create(request: web.Request, ex: Exchange, store: JobStore) -> web.StreamResponse:
    body, bad = await read_json(request)
    if bad is not None:
        return await _fail(ex, 400, bad)
    endpoint = body.get("endpoint")
    if endpoint not in _ENDPOINTS:
        return await _fail(ex, 400, f"Unsupported endpoint {endpoint!r}.")
    f = store.files.get(str(body.get("input_file_id")))
    if f is None or f.purpose != "batch-api":
        return await _fail(ex, 400, "input_file_id must name a file with purpose 'batch-api'.")
    first = next((r for r in f.content.splitlines() if r.strip()), b"")
    model = re.search(rb'"model"\s*:\s*"([^"]*)"', first)
    job = store.new_job(f.id, endpoint, model.group(1).decode() if model else None, None)
    return await _files.reply(ex, {"job": job_object(job, store), "warning": None})


# -- Groq ---------------------------------------------------------------------------------------


@route
async def groq_create(request: web.Request) -> web.StreamResponse:
    ex, failed = await _files.begin_openai(request)
    if failed is not None:
        return failed
    state = request.app[STATE_KEY]
    body, bad = await read_json(request)
    if bad is not None:
        return await _fail(ex, 400, bad)
    window = _WINDOW.match(str(body.get("completion_window")))
    hours = int(window.group(1)) * (24 if window.group(2) == "d" else 1) if window else 0
    if not 24 <= hours <= 168:
        return await _fail(ex, 400, "completion_window must be between 24h and 7d.")
    if body.get("endpoint") != "/v1/chat/completions":
        return await _fail(ex, 400, "Only /v1/chat/completions is supported.")
    f = _files.files_of(state).files.get(str(body.get("input_file_id")))
    if f is None or f.purpose != "batch":
        return await _fail(ex, 400, "input_file_id must name a file with purpose 'batch'.")
    n = 10_000_000 + next(_groq_ids)
    b = _batches.FakeBatch(f"batch_groq{n:08d}", "groq", "validating", n,
                           endpoint=body["endpoint"], input_file_id=f.id,
                           metadata=body.get("metadata"),
                           times={"created_at": time.time()})  # fmt: skip
    store = _batches.batches_of(state)
    store.batches[b.id] = b
    obj = store.openai_object(b)
    obj.pop("model", None)
    obj.pop("usage", None)
    return await _files.reply(ex, obj)


def install(app: web.Application) -> None:
    jobs_of(app[STATE_KEY], "together")
    app.router.add_route("*", f"{PREFIX}/files", files)
    app.router.add_route("*", f"{PREFIX}/files/{{file_id}}", files)
    app.router.add_get(f"{PREFIX}/files/{{file_id}}/content", files)
    app.router.add_route("*", f"{PREFIX}/batches", batches)
    app.router.add_get(f"{PREFIX}/batches/{{job_id}}", batches)
    app.router.add_post(f"{PREFIX}/batches/{{job_id}}/cancel", batches)
    g = GROQ_PREFIX
    app.router.add_post(f"{g}/files", _files.upload)
    app.router.add_get(f"{g}/files", _files.list_files)
    app.router.add_get(f"{g}/files/{{file_id}}", _files.retrieve)
    app.router.add_get(f"{g}/files/{{file_id}}/content", _files.content)
    app.router.add_delete(f"{g}/files/{{file_id}}", _files.delete)
    app.router.add_post(f"{g}/batches", groq_create)
    app.router.add_get(f"{g}/batches", _batches.openai_list)
    app.router.add_get(f"{g}/batches/{{batch_id}}", _batches.openai_batch)
    app.router.add_post(f"{g}/batches/{{batch_id}}/cancel", _batches.openai_batch)
