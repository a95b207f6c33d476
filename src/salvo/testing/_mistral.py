"""Mistral's files and batch jobs (protocols.md 17) for the fake, under ``/mistral/v1``.

Point the official client at ``fake.mistral_server`` (``Mistral(server_url=...)``) or salvo at
``fake.mistral_base``. Routes: ``POST|GET /files``, ``GET|DELETE /files/{id}``,
``GET /files/{id}/content``; ``POST|GET /batch/jobs``, ``GET|DELETE /batch/jobs/{id}``,
``POST /batch/jobs/{id}/cancel``. Ids are UUIDs; times unix seconds; lists are
``{"data", "object": "list", "total"}`` paged by ``page`` / ``page_size``; a job body that
misses a field is a 422 ``{"detail": [...]}``. The job clock and answers: ``_jobs``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._faults import encode, send_json
from ._files import read_upload, scripted_upload_failure
from ._jobs import FakeJob, JobFile, JobStore, begin, jobs_of
from ._state import STATE_KEY, Exchange, read_json, route

__all__ = ["PREFIX", "install", "job_object"]

PREFIX = "/mistral/v1"
_PURPOSES = ("fine-tune", "batch", "ocr", "agentic_safety")
_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/fim/completions",
              "/v1/moderations", "/v1/chat/moderations", "/v1/ocr", "/v1/classifications",
              "/v1/chat/classifications", "/v1/conversations",
              "/v1/audio/transcriptions")  # fmt: skip
_STATUS = {"queued": "QUEUED", "running": "RUNNING", "done": "SUCCESS", "failed": "FAILED",
           "cancelling": "CANCELLATION_REQUESTED", "cancelled": "CANCELLED"}  # fmt: skip


def file_object(f: JobFile) -> dict[str, Any]:
    return {
        "id": f.id, "object": "file", "bytes": len(f.content), "created_at": f.created_at,
        "filename": f.filename, "purpose": f.purpose, "sample_type": f.kind, "source": "upload",
        "num_lines": f.content.count(b"\n"), "mimetype": "application/jsonl",
        "signature": None, "expires_at": None, "visibility": "workspace",
    }  # fmt: skip


def job_object(job: FakeJob) -> dict[str, Any]:
    done = job.status in ("done", "failed", "cancelled")
    return {
        "id": job.id, "object": "batch", "input_files": [job.input_file],
        "metadata": job.metadata, "endpoint": job.endpoint, "model": job.model,
        "agent_id": None, "output_file": job.output_file, "error_file": job.error_file,
        "errors": [{"message": e, "count": 1} for e in job.errors], "outputs": None,
        "status": _STATUS[job.status], "created_at": int(job.created_at),
        "total_requests": job.total, "completed_requests": job.succeeded + job.failed,
        "succeeded_requests": job.succeeded, "failed_requests": job.failed,
        "started_at": int(job.started_at) if job.started_at else None,
        "completed_at": int(job.ended_at) if done and job.ended_at else None,
    }  # fmt: skip


async def _fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    body: dict[str, Any]
    if status == 422:
        body = {"detail": [{"loc": ["body"], "msg": message, "type": "value_error"}]}
    elif status == 401:
        body = {"message": "Unauthorized", "request_id": ex.request_id}
    else:
        kind = "internal_server_error" if status >= 500 else "invalid_request_error"
        body = {"object": "error", "message": message, "type": kind, "param": None, "code": None}
    return await send_json(ex, status, encode(body), {"x-request-id": ex.request_id},
                           scripted=False)  # fmt: skip


async def _reply(
    ex: Exchange, payload: Any, content_type: str = "application/json"
) -> web.StreamResponse:
    body = payload if isinstance(payload, bytes) else encode(payload)
    return await send_json(ex, 200, body, {"x-request-id": ex.request_id}, scripted=False,
                           content_type=content_type)  # fmt: skip


async def _begin(request: web.Request) -> tuple[Exchange, JobStore, web.StreamResponse | None]:
    return await begin(request, "mistral", _fail, "Unauthorized")


def _paged(request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any] | str:
    try:
        page = int(request.query.get("page", 0))
        size = int(request.query.get("page_size", 100))
    except ValueError:
        return "page and page_size must be integers."
    if page < 0 or size < 1:
        return "page must be >= 0 and page_size >= 1."
    return {"data": items[page * size : (page + 1) * size], "object": "list", "total": len(items)}


@route
async def files(request: web.Request) -> web.StreamResponse:
    """``/files``, ``/files/{id}`` and ``/files/{id}/content``."""
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
                return await _fail(ex, 422, "file: a file part with a filename is required")
            purpose = purpose or "fine-tune"
            if purpose not in _PURPOSES:
                return await _fail(ex, 422, f"purpose: {purpose!r} is not one of {_PURPOSES}")
            kind = "batch_request" if purpose == "batch" else "instruct"
            return await _reply(ex, file_object(store.add_file(content, filename, purpose, kind)))
        want = request.query.get("purpose")
        items = [file_object(f) for f in reversed(store.files.values())
                 if want is None or f.purpose == want]  # fmt: skip
        page = _paged(request, items)
        return await (_fail(ex, 422, page) if isinstance(page, str) else _reply(ex, page))
    f = store.files.get(file_id)
    if f is None:
        return await _fail(ex, 404, f"File {file_id} not found.")
    if request.path.endswith("/content"):
        await store.held()
        return await _reply(ex, f.content, "application/octet-stream")
    if request.method == "DELETE":
        del store.files[file_id]
        return await _reply(ex, {"id": file_id, "object": "file", "deleted": True})
    return await _reply(ex, {**file_object(f), "deleted": False})


@route
async def jobs(request: web.Request) -> web.StreamResponse:
    """``/batch/jobs``, ``/batch/jobs/{id}`` and ``/batch/jobs/{id}/cancel``."""
    ex, store, failed = await _begin(request)
    if failed is not None:
        return failed
    job_id = request.match_info.get("job_id")
    if job_id is None:
        if request.method == "POST":
            return await _create(request, ex, store)
        items = [job_object(j) for j in reversed(store.jobs.values())
                 if request.query.get("status") in (None, _STATUS[j.status])]  # fmt: skip
        page = _paged(request, items)
        return await (_fail(ex, 422, page) if isinstance(page, str) else _reply(ex, page))
    job = store.jobs.get(job_id)
    if job is None:
        return await _fail(ex, 404, f"Batch job {job_id} not found.")
    if request.path.endswith("/cancel"):
        store.cancel(job)
    elif request.method == "DELETE":
        del store.jobs[job_id]
        return await _reply(ex, {"id": job_id, "object": "batch", "deleted": True})
    else:
        store.advance(store.auto_advance, job.id)
    return await _reply(ex, job_object(job))


async def _create(request: web.Request, ex: Exchange, store: JobStore) -> web.StreamResponse:
    body, bad = await read_json(request)
    if bad is not None:
        return await _fail(ex, 422, bad)
    inputs, endpoint, model = body.get("input_files"), body.get("endpoint"), body.get("model")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], str):
        return await _fail(ex, 422, "input_files: one file id (the fake takes exactly one)")
    if endpoint not in _ENDPOINTS:
        return await _fail(ex, 422, f"endpoint: {endpoint!r} is not a batch endpoint")
    if not isinstance(model, str) or not model:
        return await _fail(ex, 422, "model: required (or agent_id)")
    f = store.files.get(inputs[0])
    if f is None or f.purpose != "batch":
        return await _fail(ex, 404, f"File {inputs[0]} not found or not a batch file.")
    meta = body.get("metadata")
    job = store.new_job(f.id, endpoint, model, meta if isinstance(meta, dict) else None)
    return await _reply(ex, job_object(job))


def install(app: web.Application) -> None:
    jobs_of(app[STATE_KEY], "mistral")
    app.router.add_route("*", f"{PREFIX}/files", files)
    app.router.add_route("*", f"{PREFIX}/files/{{file_id}}", files)
    app.router.add_get(f"{PREFIX}/files/{{file_id}}/content", files)
    app.router.add_route("*", f"{PREFIX}/batch/jobs", jobs)
    app.router.add_route("*", f"{PREFIX}/batch/jobs/{{job_id}}", jobs)
    app.router.add_post(f"{PREFIX}/batch/jobs/{{job_id}}/cancel", jobs)
