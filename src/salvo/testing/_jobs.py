"""The store and clock behind the fake's Mistral and Together batches (protocols.md 17, 18).

Each provider's files and jobs live in a `JobStore` (``jobs_of(fake, "mistral")``), separate
from OpenAI's (their ids and list shapes differ). The clock is the test's, as for OpenAI
batches: a job moves one step per `JobStore.advance` (or per retrieve with ``auto_advance``;
or ``POST /_fake/jobs/{provider}/advance {"steps", "job_id"}`` from another process):
``queued -> running -> (answered) done``; a cancel asked moves a job to ``cancelling``
(Mistral shows it; Together keeps showing the running status), then ``cancelled`` with the
requests answered so far (half of them, rounded down) in the result files.

Every request line ``{"custom_id", "body"}`` is answered with the fake's own answer for its
model's Behavior (OpenAI's output-line shape); an error Behavior gives an error line with the
status and error body; a line that is not a request gives an error line whose ``error`` is a
bare string (as Mistral writes some). Lines are shuffled (seeded per job).

Faults for hostile tests: ``fail_uploads = n`` answers the next n uploads 500;
``broken_results = True`` writes one line that is not JSON into the next output file;
``hold = asyncio.Event()`` keeps uploads and downloads waiting until it is set.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from ._faults import encode
from ._files import openai_line, shim_exchange
from ._state import STATE_KEY, Exchange, FakeState

__all__ = ["FakeJob", "JobFile", "JobStore", "begin", "control", "install", "jobs_of"]

_DECODE = msgspec.json.Decoder()
_seq = itertools.count(1)


@dataclass(slots=True)
class JobFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))
    kind: str = "batch_request"


@dataclass(slots=True, eq=False)
class FakeJob:
    id: str
    n: int
    status: str  # queued, running, cancelling, done, failed, cancelled
    input_file: str
    endpoint: str
    model: str | None
    metadata: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    output_file: str | None = None
    error_file: str | None = None
    errors: list[str] = field(default_factory=list)
    cancel_asked: bool = False


class JobStore:
    """One provider's fake files and jobs, and their clock."""

    def __init__(self, state: FakeState, provider: str) -> None:
        self.state = state
        self.provider = provider
        self.files: dict[str, JobFile] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.auto_advance = 0
        self.fail_uploads = 0
        self.broken_results = False
        #: When set, uploads and file downloads wait for it before answering (a test cancels
        #: the client meanwhile and reads the connection's record).
        self.hold: asyncio.Event | None = None

    def clear(self) -> None:
        self.files.clear()
        self.jobs.clear()
        self.auto_advance = self.fail_uploads = 0
        self.broken_results = False
        self.hold = None

    def cancel(self, job: FakeJob) -> None:
        """A cancel asked: a queued or running job is cancelling until the clock moves on."""
        if job.status in ("queued", "running"):
            job.status, job.cancel_asked = "cancelling", True

    async def held(self) -> None:
        if self.hold is not None:
            await self.hold.wait()

    def new_file_id(self) -> str:
        return str(uuid.uuid4()) if self.provider == "mistral" else f"file-{uuid.uuid4()}"

    def add_file(self, content: bytes, filename: str, purpose: str, kind: str) -> JobFile:
        f = JobFile(self.new_file_id(), filename, purpose, content, kind=kind)
        self.files[f.id] = f
        return f

    def new_job(
        self, input_file: str, endpoint: str, model: str | None, metadata: dict[str, Any] | None
    ) -> FakeJob:
        job = FakeJob(str(uuid.uuid4()), next(_seq), "queued", input_file, endpoint, model,
                      metadata)  # fmt: skip
        f = self.files.get(input_file)
        job.total = sum(1 for raw in f.content.splitlines() if raw.strip()) if f else 0
        self.jobs[job.id] = job
        return job

    def advance(self, steps: int = 1, job_id: str | None = None) -> None:
        targets = [self.jobs[job_id]] if job_id else list(self.jobs.values())
        for _ in range(steps):
            for job in targets:
                self._step(job)

    def _step(self, job: FakeJob) -> None:
        now = time.time()
        if job.status == "queued":
            if self.files.get(job.input_file) is None:
                job.status, job.ended_at = "failed", now
                job.errors.append(f"Input file {job.input_file} not found.")
            else:
                job.status, job.started_at = "running", now
        elif job.status == "running":
            self._answer(job, None)
            job.status, job.ended_at = "done", now
        elif job.status == "cancelling":
            self._answer(job, job.total // 2)
            job.status, job.ended_at = "cancelled", now

    def _answer(self, job: FakeJob, most: int | None) -> None:
        f = self.files[job.input_file]
        lines: list[tuple[bool, bytes]] = []
        for i, raw in enumerate(r for r in f.content.splitlines() if r.strip()):
            if most is not None and i >= most:
                break
            lines.append(self._line(job, i, raw))
        random.Random(job.n).shuffle(lines)
        job.succeeded = sum(ok for ok, _ in lines)
        job.failed = len(lines) - job.succeeded
        for ok, kind in ((True, "output"), (False, "error")):
            part = [line + b"\n" for good, line in lines if good is ok]
            if ok and part and self.broken_results:
                self.broken_results = False
                part.insert(len(part) // 2, b'{"custom_id": "broken", "response": {"sta\n')
            if part:
                made = self.add_file(b"".join(part), f"{job.id}_{kind}.jsonl", "batch",
                                     f"batch_{'result' if ok else 'error'}")  # fmt: skip
                setattr(job, f"{kind}_file", made.id)

    def _line(self, job: FakeJob, i: int, raw: bytes) -> tuple[bool, bytes]:
        try:
            line = _DECODE.decode(raw)
        except msgspec.DecodeError:
            line = None
        cid = line.get("custom_id") if isinstance(line, dict) else None
        body = line.get("body") if isinstance(line, dict) else None
        if not isinstance(cid, str) or not isinstance(body, dict):
            bad = {"id": f"fake-{job.n}-{i}", "custom_id": cid if isinstance(cid, str) else None,
                   "response": None, "error": "Invalid request line: custom_id and body "
                   "are required."}  # fmt: skip
            return False, encode(bad)
        model = str(job.model or body.get("model") or "")
        behavior = self.state.behavior_for(model)
        shim = shim_exchange(behavior, job.n * 1_000_000 + i, self.provider)
        ok, out, _ = openai_line(shim, cid, job.endpoint, model, body)
        return ok, out


def jobs_of(owner: Any, provider: str) -> JobStore:
    """The JobStore of ``provider`` (``"mistral"``, ``"together"``) of a FakeProvider."""
    state: FakeState = getattr(owner, "state", owner)
    return state.ext_store(f"jobs:{provider}", JobStore, lambda s: JobStore(s, provider))


Fail = Callable[[Exchange, int, str], Awaitable[web.StreamResponse]]


async def begin(
    request: web.Request, provider: str, fail: Fail, unauthorized: str
) -> tuple[Exchange, JobStore, web.StreamResponse | None]:
    """Record a files/jobs request of ``provider`` and check its bearer token; the third item
    is the 401 sent (``fail(ex, 401, unauthorized)``) when there is none."""
    state = request.app[STATE_KEY]
    ex = state.begin(request, provider=provider, model="", stream=False, body=None)
    store = jobs_of(state, provider)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ex, store, await fail(ex, 401, unauthorized)
    return ex, store, None


async def control(request: web.Request) -> web.Response:
    """``POST /_fake/jobs/{provider}/advance|auto`` ``{"steps", "job_id"}``."""
    store = jobs_of(request.app[STATE_KEY], request.match_info["provider"])
    data = await request.json() if request.can_read_body else {}
    steps = int(data.get("steps", 1))
    if request.match_info["action"] == "auto":
        store.auto_advance = steps
    else:
        store.advance(steps, data.get("job_id"))
    return web.Response(body=encode({"ok": True}), content_type="application/json")


def install(app: web.Application) -> None:
    app.router.add_post("/_fake/jobs/{provider}/{action:advance|auto}", control)
