"""Edges of the local batch engine (``batches/_engine.py``) no other test pinned down: the
job's statistics, progress callbacks given a Batch every time, an invalid line not stopping a
lone worker, a cancelled job's timestamps, a cancel recorded before the run, one tag across a
resume, two jobs running at once, a line holding a carriage return as JSON whitespace, and the
cost and id of lines that fail unexpectedly.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11). The jobs run against the fake provider on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import salvo
from salvo.batches._engine import Job
from salvo.batches._state import JobDB
from salvo.batches._types import Batch
from salvo.testing import Behavior, FakeProvider
from test_batch_openai import jsonl

MODEL = "openai/m"  # unpriced: every answer costs nothing known


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[salvo.Client]:
    async with salvo.Client(max_retries=0) as c:
        yield c


def _paths(tmp_path: Path, data: bytes, name: str = "j") -> dict[str, Path]:
    src = tmp_path / f"{name}.in.jsonl"
    src.write_bytes(data)
    paths = {
        "state_path": tmp_path / f"{name}.sqlite3",
        "input_path": src,
        "output_path": tmp_path / f"{name}.out.jsonl",
        "error_path": tmp_path / f"{name}.err.jsonl",
    }
    Job.create(paths["state_path"], Batch(id=f"batch_{name}", provider="local"))
    return paths


def _job(client: salvo.Client, fake: FakeProvider, paths: dict[str, Path], **kw: Any) -> Job:
    over = {"api_key": "k", "api_base": fake.openai_base}
    return Job(client, **paths, overrides=over, **kw)  # type: ignore[arg-type]


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_bytes().splitlines()]


async def test_statistics_and_progress_of_a_run(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    fake.script("m", Behavior(latency=0.05))
    seen: list[Any] = []
    job = _job(client, fake, _paths(tmp_path, jsonl(MODEL, 5)), concurrency=1, flush_every=1,
               flush_interval=0.01, on_progress=seen.append)  # fmt: skip
    done = await job.run()
    assert done.status == "completed" and done.request_counts.completed == 5
    assert done.in_progress_at is not None and done.completed_at is not None
    stats = job.statistics()
    assert stats.sent == 5
    assert stats.flushes >= 5  # one a line (flush_every=1)
    assert 0 < stats.max_flush_seconds < stats.flush_seconds  # a sum of several flushes
    assert stats.flush_seconds <= stats.flushes * stats.max_flush_seconds
    # every progress report is the batch, including the ticks that found nothing new
    assert len(seen) > 5 and all(isinstance(b, Batch) for b in seen)


async def test_an_invalid_line_does_not_stop_a_lone_worker(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    data = b"{not json\n" + jsonl(MODEL, 3)
    done = await _job(client, fake, _paths(tmp_path, data), concurrency=1).run()
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 1)


async def test_a_job_cancelled_midway_says_when_cancelling_began(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    fake.script("m", Behavior(latency=0.05))
    job = _job(client, fake, _paths(tmp_path, jsonl(MODEL, 40)), concurrency=2, flush_every=2)
    task = asyncio.create_task(job.run())
    while job.statistics().flushes < 2:
        await asyncio.sleep(0.01)
    job.cancel()
    done = await task
    assert done.status == "cancelled"
    assert done.cancelling_at is not None and done.cancelled_at is not None
    assert done.cancelling_at <= done.cancelled_at


async def test_a_cancel_recorded_before_the_run_sends_nothing(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    paths = _paths(tmp_path, jsonl(MODEL, 5))
    with JobDB(paths["state_path"]) as db, db.transaction():
        db.put("cancel", 1)  # what acancel_batch records for a job nobody is running
    done = await _job(client, fake, paths).run()
    assert done.status == "cancelled"
    assert fake.records_for("m") == []


async def test_a_resumed_job_keeps_its_tag_in_every_line_id(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    fake.script("m", Behavior(latency=0.02))
    paths = _paths(tmp_path, jsonl(MODEL, 30))
    first = _job(client, fake, paths, concurrency=2, flush_every=2)
    task = asyncio.create_task(first.run())
    while first.statistics().flushes < 3:
        await asyncio.sleep(0.01)
    task.cancel()  # the runner stops; nobody cancelled the batch
    await asyncio.gather(task, return_exceptions=True)
    done = await _job(client, fake, paths, concurrency=2).run()
    assert done.status == "completed" and done.request_counts.completed == 30
    lines = _lines(paths["output_path"])
    tags = {line["id"].rsplit("_", 1)[0] for line in lines}
    assert len(tags) == 1, tags  # batch_req_<tag>: the same tag before and after the resume
    assert Counter(line["custom_id"] for line in lines) == Counter(f"req-{i}" for i in range(30))


async def test_two_jobs_run_at_once(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    fake.script("m", Behavior(latency=0.05))
    one = _job(client, fake, _paths(tmp_path, jsonl(MODEL, 4), "one"))
    two = _job(client, fake, _paths(tmp_path, jsonl(MODEL, 4), "two"))
    a, b = await asyncio.gather(one.run(), two.run())  # each job has a lock of its own
    assert (a.status, b.status) == ("completed", "completed")


async def test_a_carriage_return_between_json_tokens_is_one_line(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    good = jsonl(MODEL, 3).splitlines()
    cr = good[1].replace(b'", "method"', b'",\r"method"')  # JSON whitespace, not a line end
    assert b"\r" in cr
    data = b"\n".join([good[0], cr, good[2]]) + b"\n"
    done = await _job(client, fake, _paths(tmp_path, data), concurrency=1).run()
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    out = _lines(tmp_path / "j.out.jsonl")
    assert sorted(line["custom_id"] for line in out) == ["req-0", "req-1", "req-2"]


async def test_lines_that_fail_unexpectedly_cost_nothing_and_keep_their_id(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = client.complete_with

    async def buggy(opts: Any, messages: Any, params: Any, **kw: Any) -> Any:
        text = messages[0]["content"]
        if text == "question 1":
            raise RuntimeError("a bug in salvo")  # not a SalvoError
        if text == "question 2":  # a SalvoError whose body no JSON encoder takes
            raise salvo.BadRequestError(
                "no", status_code=400, provider="openai", model="m", body={"x": object()}
            )
        return await real(opts, messages, params, **kw)

    monkeypatch.setattr(client, "complete_with", buggy)
    paths = _paths(tmp_path, jsonl(MODEL, 4))
    done = await _job(client, fake, paths, concurrency=1).run()
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)
    assert not done.cost_usd  # unpriced answers and failures: nothing spent that is known
    bad = {line["custom_id"]: line for line in _lines(paths["error_path"])}
    assert sorted(bad) == ["req-1", "req-2"]
    for line_no, custom_id in ((2, "req-1"), (3, "req-2")):
        assert bad[custom_id]["error"]["code"] == "internal_error"
        assert bad[custom_id]["id"].startswith("batch_req_")
        assert bad[custom_id]["id"].endswith(f"_{line_no}")
