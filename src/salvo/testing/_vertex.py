"""Vertex AI (protocols.md 15) for the fake, provider "vertex_ai".

Every route is under ``/{v1|v1beta1}/projects/{project}/locations/{location}/`` and needs a
live bearer token from the fake's token endpoint (`_google_oauth`), else 401
``UNAUTHENTICATED``.

- ``publishers/{publisher}/models/{model}:generateContent`` / ``:streamGenerateContent``
  (``?alt=sse``): the Gemini fake's answers, scripted by the model's Behavior.
- ``batchPredictionJobs`` (POST create, GET list with ``pageSize``/``pageToken``),
  ``batchPredictionJobs/{id}`` (GET) and ``batchPredictionJobs/{id}:cancel`` (POST, ``{}``).
  A job reads its ``{"request": GenerateContentRequest}`` lines from the fake's Cloud Storage
  (``inputConfig.gcsSource.uris``) and writes
  ``{outputUriPrefix}/prediction-model-<time>/predictions.jsonl``: one line per input line,
  ``{"status": "", "processed_time", "request", "response"}`` or ``{"status": "<error>",
  "request"}``, in shuffled order (the request, labels included, is echoed; join on it).

The clock is the test's: `VertexJobs.advance` moves every unfinished job one step
(``PENDING -> RUNNING -> SUCCEEDED``; a cancel makes it ``CANCELLING``, then ``CANCELLED``; a
missing input object makes it ``FAILED`` with ``error``), ``auto_advance`` steps per GET.
Job names use a project number (``projects/123456789012/...``) and a numeric id, as Vertex's do.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from . import _gemini
from ._faults import encode
from ._gcs import gcs_of
from ._gemini_batches import gemini_answer
from ._gemini_files import fail, ok, rfc3339
from ._google_oauth import check_bearer
from ._state import STATE_KEY, FakeState, read_json, route

__all__ = ["PROJECT_NUMBER", "VertexJob", "VertexJobs", "install", "vertex_jobs_of"]

PROJECT_NUMBER = "123456789012"
_ids = itertools.count(1)
_DECODE = msgspec.json.Decoder()
_DONE = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
                   "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"})  # fmt: skip


@dataclass(slots=True, eq=False)
class VertexJob:
    name: str
    body: dict[str, Any]
    model: str
    state: str = "JOB_STATE_PENDING"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    ended: float | None = None
    error: dict[str, Any] | None = None
    output_dir: str | None = None
    succeeded: int = 0
    failed: int = 0


def _split_gs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


class VertexJobs:
    """Every batch prediction job of one fake, and its clock."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.jobs: dict[str, VertexJob] = {}
        self.auto_advance = 0

    def clear(self) -> None:
        self.jobs.clear()
        self.auto_advance = 0

    def advance(self, steps: int = 1, name: str | None = None) -> None:
        targets = [self.jobs[name]] if name else list(self.jobs.values())
        for _ in range(steps):
            for job in targets:
                self._step(job)

    def _step(self, job: VertexJob) -> None:
        if job.state in _DONE:
            return
        now = time.time()
        job.updated = now
        if job.state == "JOB_STATE_CANCELLING":
            job.state, job.ended = "JOB_STATE_CANCELLED", now
        elif job.state == "JOB_STATE_PENDING":
            job.state = "JOB_STATE_RUNNING"
        else:
            problem = self._run(job)
            if problem is None:
                job.state = "JOB_STATE_SUCCEEDED"
            else:
                job.state, job.error = "JOB_STATE_FAILED", {"code": 3, "message": problem}
            job.ended = now

    def _run(self, job: VertexJob) -> str | None:
        gcs = gcs_of(self.state)
        uris = job.body["inputConfig"]["gcsSource"]["uris"]
        lines: list[bytes] = []
        for uri in uris:
            obj = gcs.get(*_split_gs(uri))
            if obj is None:
                return f"Input file {uri} does not exist."
            lines.extend(raw for raw in obj.data.splitlines() if raw.strip())
        out = []
        n0 = int(job.name.rsplit("/", 1)[-1]) * 1_000_000
        for i, raw in enumerate(lines):
            try:
                request = _DECODE.decode(raw).get("request")
            except (msgspec.DecodeError, AttributeError):
                request = None
            stamp = rfc3339(time.time())
            good, value = gemini_answer(self.state.behavior_for(job.model), job.model,
                                        request, n0 + i)  # fmt: skip
            line: dict[str, Any] = {"status": "" if good else value["message"],
                                    "processed_time": stamp, "request": request}  # fmt: skip
            if good:
                line["response"] = value
            job.succeeded += good
            job.failed += not good
            out.append(encode(line) + b"\n")
        random.Random(n0).shuffle(out)
        prefix = job.body["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        job.output_dir = f"{prefix}/prediction-model-{stamp}"
        bucket, name = _split_gs(f"{job.output_dir}/predictions.jsonl")
        gcs.put(bucket, name, b"".join(out), "application/jsonl")
        return None

    def resource(self, job: VertexJob) -> dict[str, Any]:
        b = job.body
        out: dict[str, Any] = {
            "name": job.name, "displayName": b.get("displayName"), "model": b.get("model"),
            "inputConfig": b.get("inputConfig"), "outputConfig": b.get("outputConfig"),
            "state": job.state, "createTime": rfc3339(job.created),
            "updateTime": rfc3339(job.updated),
        }  # fmt: skip
        if job.state != "JOB_STATE_PENDING":
            out["startTime"] = rfc3339(job.created)
        if job.ended is not None:
            out["endTime"] = rfc3339(job.ended)
        if job.error is not None:
            out["error"] = job.error
        if job.output_dir is not None:
            out["outputInfo"] = {"gcsOutputDirectory": job.output_dir}
            out["completionStats"] = {
                "successfulCount": str(job.succeeded),
                "failedCount": str(job.failed),
                "incompleteCount": "0",
            }
        if b.get("labels"):
            out["labels"] = b["labels"]
        return out


def vertex_jobs_of(owner: Any) -> VertexJobs:
    state: FakeState = getattr(owner, "state", owner)
    return state.ext_store("vertex_jobs", VertexJobs, VertexJobs)


@route
async def generate(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    model, method = request.match_info["model"], request.match_info["method"]
    body, bad = await read_json(request)
    stream = method == "streamGenerateContent"
    ex = state.begin(request, provider="vertex_ai", model=model, stream=stream, body=body)
    problem = check_bearer(request)
    if problem is not None:
        return await fail(ex, 401, problem)
    if bad is not None:
        return await fail(ex, 400, bad)
    if ex.problem is not None:
        return await fail(ex, *ex.problem)
    return await _gemini._generate(ex, body, method)


def _check_create(body: Any) -> str | None:
    try:
        if not body["displayName"]:
            return "displayName is required."
        if not str(body["model"]):
            return "model is required."
        uris = body["inputConfig"]["gcsSource"]["uris"]
        if body["inputConfig"].get("instancesFormat") != "jsonl":
            return "inputConfig.instancesFormat must be 'jsonl'."
        prefix = body["outputConfig"]["gcsDestination"]["outputUriPrefix"]
    except (KeyError, TypeError):
        return ("displayName, model, inputConfig.gcsSource.uris and "
                "outputConfig.gcsDestination.outputUriPrefix are required.")  # fmt: skip
    if not uris or not all(isinstance(u, str) and u.startswith("gs://") for u in uris):
        return "inputConfig.gcsSource.uris must be gs:// URIs."
    if not isinstance(prefix, str) or not prefix.startswith("gs://"):
        return "outputConfig.gcsDestination.outputUriPrefix must be a gs:// URI."
    return None


@route
async def jobs(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    store = vertex_jobs_of(state)
    body, bad = await read_json(request) if request.method == "POST" else (None, None)
    ex = state.begin(request, provider="vertex_ai", model="", stream=False, body=body)
    problem = check_bearer(request)
    if problem is not None:
        return await fail(ex, 401, problem)
    target = request.match_info.get("target")
    loc = request.match_info["location"]
    if target is None and request.method == "POST":
        if bad is not None:
            return await fail(ex, 400, bad)
        problem = _check_create(body)
        if problem is not None or not isinstance(body, dict):
            return await fail(ex, 400, problem or "The body must be a JSON object.")
        model = str(body["model"]).rsplit("/", 1)[-1]
        name = f"projects/{PROJECT_NUMBER}/locations/{loc}/batchPredictionJobs/{next(_ids)}"
        new = store.jobs[name] = VertexJob(name, body, model)
        return await ok(ex, store.resource(new))
    if target is None:
        try:
            size = max(1, min(int(request.query.get("pageSize", "100")), 100))
            start = int(request.query.get("pageToken") or 0)
        except ValueError:
            return await fail(ex, 400, "Invalid pageSize or pageToken.")
        items = sorted(store.jobs.values(), key=lambda j: j.created, reverse=True)
        page = [store.resource(j) for j in items[start : start + size]]
        out: dict[str, Any] = {"batchPredictionJobs": page}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return await ok(ex, out)
    job_id, _, action = target.partition(":")
    name = f"projects/{PROJECT_NUMBER}/locations/{loc}/batchPredictionJobs/{job_id}"
    job = store.jobs.get(name)
    if job is None or action not in ("", "cancel"):
        return await fail(ex, 404, f"The BatchPredictionJob {job_id} does not exist.")
    if action == "cancel":
        if request.method != "POST":
            return await fail(ex, 404, "cancel is a POST.")
        if job.state not in _DONE:
            job.state = "JOB_STATE_CANCELLING"
        return await ok(ex, {})
    if store.auto_advance:
        store.advance(store.auto_advance, job.name)
    return await ok(ex, store.resource(job))


def install(app: web.Application) -> None:
    vertex_jobs_of(app[STATE_KEY])
    root = "/{version:v1|v1beta1}/projects/{project}/locations/{location}"
    app.router.add_post(
        root + "/publishers/{publisher}/models/{model:[^/:]+}:"
        "{method:generateContent|streamGenerateContent}",
        generate,
    )
    app.router.add_route("*", root + "/batchPredictionJobs", jobs)
    app.router.add_route("*", root + "/batchPredictionJobs/{target}", jobs)
