"""The local engine through the public API: the same workflow as the providers', bad lines,
cancellation (proven from the fake's records), mixed endpoints, resuming, and reconciling an
output file that lost its tail."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import jsonl
from salvo import batches
from salvo.batches._engine import Job
from salvo.batches._state import JobDB
from salvo.batches._types import Batch
from salvo.testing import Behavior, FakeProvider

MODEL = "openai/gpt-4o-mini"


pytestmark = pytest.mark.usefixtures("batch_dir")


@pytest.fixture
def kw(fake: FakeProvider, client: salvo.Client, tmp_path: Path) -> dict[str, Any]:
    return {"client": client, "api_key": "sk-test", "api_base": fake.openai_base,
            "store_dir": tmp_path / "store", "provider": "local"}  # fmt: skip


async def run(data: bytes, kw: dict[str, Any], **extra: Any) -> Batch:
    fo = await batches.acreate_file(data, **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw, **extra)
    return await batches.await_batch(b.id, **kw)


def custom_ids(*blobs: bytes) -> Counter[str]:
    return Counter(json.loads(line)["custom_id"] for blob in blobs for line in blob.splitlines())


async def test_the_whole_workflow(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fake.script("gpt-4o-mini", lambda n: Behavior(status=400) if n == 3 else Behavior(text=f"l{n}"))
    fo = await batches.acreate_file(jsonl(MODEL, 6), **kw)
    assert fo.provider == "local" and fo.id.startswith("file-")
    b = await batches.acreate_batch(input_file_id=fo.id, metadata={"m": "1"}, **kw)
    assert b.status == "validating" and b.id.startswith("batch_")
    done = await batches.await_batch(b.id, **kw)
    assert done.status == "completed" and done.metadata == {"m": "1"}
    assert done.request_counts.to_dict() == {"total": 6, "completed": 5, "failed": 1}
    # priced at list price: local calls are ordinary calls, with no batch discount
    assert done.cost_usd is not None and done.cost_usd > 0
    results = {r.custom_id: r async for r in batches.abatch_results(done, **kw)}
    assert sorted(results) == [f"req-{i}" for i in range(6)]
    failed = [r for r in results.values() if not r.ok]
    assert len(failed) == 1 and failed[0].status_code == 400
    assert {r.response.content for r in results.values() if r.response} == {
        f"l{n}" for n in (0, 1, 2, 4, 5)}  # fmt: skip
    ordered = [r.custom_id async for r in batches.abatch_results(done, ordered=True, **kw)]
    assert ordered == [f"req-{i}" for i in range(6)]
    out = await batches.aretrieve_file(done.output_file_id or "", **kw)
    assert out.purpose == "batch_output" and out.bytes > 0

    more = [await run(jsonl(MODEL, 1), kw) for _ in range(2)]
    page = await batches.alist_batches(limit=2, **kw)
    assert [x.id for x in page.data] == [more[1].id, more[0].id] and page.has_more
    rest = await batches.alist_batches(limit=2, after=page.last_id, **kw)
    assert [x.id for x in rest.data] == [done.id] and not rest.has_more
    assert (await batches.adelete_file(fo.id, **kw)).deleted
    with pytest.raises(salvo.NotFoundError):
        await batches.aretrieve_file(fo.id, **kw)
    with pytest.raises(salvo.NotFoundError):
        await batches.aretrieve_batch("batch_missing", **kw)


async def test_bad_lines_become_error_lines_naming_them(kw: dict[str, Any]) -> None:
    good = jsonl(MODEL, 3).splitlines()
    data = b"\n".join([
        good[0],
        b"{not json",
        b"",  # blank lines are skipped, but still counted for line numbers
        json.dumps({"custom_id": "x", "url": "/v1/moderations", "body": {}}).encode(),
        good[1],
        good[1],  # the same custom_id again
        json.dumps({"custom_id": "nomsg", "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "messages": []}}).encode(),
        good[2],
    ]) + b"\n"  # fmt: skip
    done = await run(data, kw)
    assert done.request_counts.to_dict() == {"total": 7, "completed": 3, "failed": 4}
    errors = {r.error.line: r async for r in batches.abatch_results(done, **kw) if r.error}
    assert sorted(errors) == [2, 4, 6, 7]
    messages = {line: r.error.message or "" for line, r in errors.items() if r.error}
    assert messages[2].startswith("Line 2: not valid JSON")
    assert "Line 4 (custom_id 'x'): url '/v1/moderations'" in messages[4]
    assert messages[6] == (
        "Line 6: custom_id 'req-1' repeats line 5; custom_ids must be unique within a batch."
    )
    assert messages[7].startswith("Line 7 (custom_id 'nomsg'): messages must be a non-empty")
    assert errors[6].custom_id is None and errors[4].custom_id == "x"


async def test_a_cancelled_job_stops_sending(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fake.script("gpt-4o-mini", Behavior(latency=0.05))
    fo = await batches.acreate_file(jsonl(MODEL, 200), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, concurrency=4, **kw)
    while len(fake.records_for("gpt-4o-mini")) < 10:
        await asyncio.sleep(0.01)
    assert (await batches.acancel_batch(b.id, **kw)).status == "cancelling"
    done = await batches.await_batch(b.id, **kw)
    assert done.status == "cancelled" and done.cancelled_at is not None
    sent = fake.records_for("gpt-4o-mini")
    for record in sent:  # nothing is left open: in-flight requests were closed, not drained
        await fake.wait_until_closed(record)
    assert 10 <= len(sent) < 20
    assert [r for r in sent if r.disconnected is not None]  # the in-flight ones were cut
    answered = [r async for r in batches.abatch_results(done, **kw)]
    assert len(answered) == done.request_counts.completed
    assert done.request_counts.completed <= sum(r.completed is not None for r in sent)
    await asyncio.sleep(0.1)  # real time passes: still no new request
    assert len(fake.records_for("gpt-4o-mini")) == len(sent)


async def test_mixed_endpoints_aliases_and_overrides(fake: FakeProvider, tmp_path: Path) -> None:
    config = {"model_list": [{"model_name": "fast", "params": {
        "model": "openai/gpt-4o-mini", "api_base": fake.openai_base, "api_key": "k"}}]}  # fmt: skip
    async with salvo.Client(config=config) as client:
        kw = {"client": client, "store_dir": tmp_path, "provider": "local"}
        data = jsonl("fast", 2) + jsonl(MODEL, 1, url="/v1/embeddings").replace(b"req-0", b"emb")
        done = await run(data, {**kw, "api_key": "k", "api_base": fake.openai_base})
        kinds = {
            r.custom_id: type(r.response).__name__ async for r in batches.abatch_results(done, **kw)
        }
        assert kinds == {
            "req-0": "ModelResponse",
            "req-1": "ModelResponse",
            "emb": "EmbeddingResponse",
        }
        # model= runs every line on one model; a provider without a batch API runs locally
        done = await run(jsonl("whatever", 2), {**kw, "provider": "deepseek", "api_key": "g",
                         "api_base": fake.openai_base}, model="llama-3.1-8b")  # fmt: skip
        assert done.provider == "deepseek" and done.request_counts.completed == 2
    assert {r.model for r in fake.records if r.path.endswith("completions")} == {
        "gpt-4o-mini", "llama-3.1-8b"}  # fmt: skip


async def test_retryable_errors_are_retried(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fake.script("gpt-4o-mini", [Behavior(status=429, headers={"retry-after": "0"}), Behavior()])
    done = await run(jsonl(MODEL, 3), kw)
    assert done.request_counts.completed == 3 and len(fake.records_for("gpt-4o-mini")) == 4


async def test_submit_builds_the_jsonl(fake: FakeProvider, kw: dict[str, Any]) -> None:
    prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(3)]
    sub = {k: kw[k] for k in ("client", "api_key", "api_base", "store_dir")}
    b = await batches.asubmit_batch(MODEL, prompts, max_tokens=7, **sub)  # custom base: local
    assert b.provider == "local"
    done = await batches.await_batch(b.id, **kw)
    ids = [r.custom_id async for r in batches.abatch_results(done, ordered=True, **kw)]
    assert ids == ["request-0", "request-1", "request-2"]
    assert {r.body["max_tokens"] for r in fake.records_for("gpt-4o-mini")} == {7}
    native = await batches.asubmit_batch(
        MODEL, prompts, provider="openai", custom_ids=["a", "b", "c"], **sub
    )
    assert native.provider == "openai" and native.status == "validating"


async def test_resume_after_the_runner_stopped(fake: FakeProvider, kw: dict[str, Any]) -> None:
    # The first dozen answers come at once, the rest hang: the job is certainly unfinished
    # when it is stopped, however fast this machine is (no race with the flush interval).
    fake.script("gpt-4o-mini", lambda n: Behavior(latency=0.0 if n < 12 else 60.0))
    fo = await batches.acreate_file(jsonl(MODEL, 60), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, concurrency=3, **kw)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"salvo batch {b.id}"]
    while (await batches.aretrieve_batch(b.id, **kw)).request_counts.completed < 6:
        await asyncio.sleep(0.01)
    task.cancel()  # what a stopped process leaves: an unfinished job, nobody running it
    await asyncio.gather(task, return_exceptions=True)
    stopped = await batches.aretrieve_batch(b.id, **kw)
    assert stopped.status == "in_progress" and 6 <= stopped.request_counts.completed <= 12
    fake.script("gpt-4o-mini", Behavior(latency=0.01))
    done = await batches.await_batch(b.id, **kw)  # resumes it
    assert done.request_counts.completed == 60
    out = await batches.afile_content(done.output_file_id or "", **kw)
    assert custom_ids(out) == Counter(f"req-{i}" for i in range(60))


async def test_output_shorter_than_the_state_is_rebuilt(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    fake.script("gpt-4o-mini", Behavior(latency=0.01))
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl(MODEL, 40))
    paths = {
        "state_path": tmp_path / "s.sqlite3",
        "input_path": src,
        "output_path": tmp_path / "out.jsonl",
        "error_path": tmp_path / "err.jsonl",
    }
    Job.create(paths["state_path"], Batch(id="batch_t", provider="local"))

    def job() -> Job:
        over = {"api_key": "k", "api_base": fake.openai_base}
        return Job(client, **paths, overrides=over, concurrency=2, flush_every=4)

    first = job()
    task = asyncio.create_task(first.run())
    while first.statistics().flushes < 3 or not paths["output_path"].stat().st_size:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    data = paths["output_path"].read_bytes()
    paths["output_path"].write_bytes(data[: len(data) - 30])  # a lost, torn tail
    done = await job().run()
    assert done.status == "completed" and done.request_counts.completed == 40
    assert custom_ids(paths["output_path"].read_bytes()) == Counter(f"req-{i}" for i in range(40))


async def test_an_input_replaced_mid_job_is_refused(
    fake: FakeProvider, client: salvo.Client, tmp_path: Path
) -> None:
    src, state = tmp_path / "in.jsonl", tmp_path / "s.sqlite3"
    src.write_bytes(jsonl(MODEL, 3))
    Job.create(state, Batch(id="batch_t", provider="local"))

    def job() -> Job:
        over = {"api_key": "k", "api_base": fake.openai_base}
        return Job(client, state_path=state, input_path=src, output_path=tmp_path / "o",
                   error_path=tmp_path / "e", overrides=over)  # fmt: skip

    assert (await job().run()).status == "completed"
    assert (await job().run()).status == "completed"  # finished: returns at once
    with JobDB(state) as db, db.transaction():  # as if it had stopped half-way
        db.put_batch(Batch(id="batch_t", status="in_progress", provider="local"))
    src.write_bytes(jsonl(MODEL, 4))
    with pytest.raises(salvo.ConfigError, match="changed since this batch job started"):
        await job().run()


async def test_a_batch_whose_input_vanished_fails_saying_why(
    kw: dict[str, Any], tmp_path: Path
) -> None:
    fo = await batches.acreate_file(jsonl(MODEL, 2), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    (tmp_path / "store" / "files" / fo.id).unlink()  # before the job's task first runs
    done = await batches.await_batch(b.id, **kw)
    assert done.status == "failed" and done.failed_at is not None and done.errors is not None
    assert done.errors.data[0].code == "invalid_input"
    assert "No such file" in (done.errors.data[0].message or "")
    running = Batch(id=b.id, status="in_progress", provider="local")
    with pytest.raises(salvo.SalvoError, match="results come once it has ended"):
        await anext(batches.abatch_results(running, **kw))
