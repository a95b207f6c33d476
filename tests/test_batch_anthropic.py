"""The same OpenAI-format workflow on Anthropic Message Batches: requests translated in, status
and counts mapped onto OpenAI's lifecycle, results translated back (errored, canceled and
expired become error lines), custom_id rules checked before anything is sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import jsonl
from salvo import batches
from salvo.batches._anthropic import to_batch, translate_result
from salvo.testing import Behavior, FakeProvider
from salvo.testing import _batches as fake_batches

MODEL = "claude-sonnet-4-5"


pytestmark = pytest.mark.usefixtures("batch_dir")


@pytest.fixture
async def kw(fake: FakeProvider, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as client:
        yield {
            "client": client,
            "api_key": "sk-ant",
            "api_base": fake.anthropic_base,
            "store_dir": tmp_path / "store",
            "provider": "anthropic",
        }


async def test_the_whole_workflow(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fake.script(MODEL, lambda n: Behavior(status=529) if n == 1 else Behavior(text=f"c{n}"))
    data = jsonl(MODEL, 4, max_tokens=50, stop="END", temperature=0.5)
    first = json.loads(data.splitlines()[0])
    first["body"]["messages"].insert(0, {"role": "system", "content": "Be brief."})
    data = b"\n".join([json.dumps(first).encode(), *data.splitlines()[1:]]) + b"\n"
    fo = await batches.acreate_file(data, **kw)
    assert fo.provider == "anthropic" and fo.id.startswith("file-")
    assert await batches.afile_content(fo.id, **kw) == data  # kept in the local store

    b = await batches.acreate_batch(input_file_id=fo.id, metadata={"k": "v"}, **kw)
    assert (b.status, b.input_file_id, b.metadata) == ("in_progress", fo.id, {"k": "v"})
    assert b.id.startswith("msgbatch_") and b.request_counts.total == 4
    assert isinstance(b.created_at, int) and b.expires_at == b.created_at + 86400
    sent = fake_batches.batches_of(fake).get(b.id).requests
    params = sent[0][2]
    assert params["system"] == "Be brief." and params["stop_sequences"] == ["END"]
    assert params["max_tokens"] == 50 and params["messages"][0]["role"] == "user"
    assert [custom_id for custom_id, _, _ in sent] == [f"req-{i}" for i in range(4)]
    record = next(r for r in fake.records if r.path == "/v1/messages/batches")
    assert record.headers["x-api-key"] == "sk-ant" and "anthropic-version" in record.headers

    fake_batches.batches_of(fake).advance()
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert done.status == "completed" and done.completed_at is not None
    assert done.request_counts.to_dict() == {"total": 4, "completed": 3, "failed": 1}
    assert (done.output_file_id, done.error_file_id) == (f"{b.id}-output", f"{b.id}-errors")

    results = {r.custom_id: r async for r in batches.abatch_results(done, **kw)}
    assert sorted(results) == [f"req-{i}" for i in range(4)]
    assert results["req-0"].response is not None
    assert results["req-0"].response.content == "c0"
    assert results["req-0"].response.choices[0].finish_reason == "stop"
    err = results["req-1"]
    assert err.status_code == 529 and err.error is not None and err.error.code == "overloaded_error"
    # the batch price (half the list price) was computed on that pass and is stored
    again = await batches.aretrieve_batch(b.id, **kw)
    assert again.cost_usd is not None and again.cost_usd > 0
    out = await batches.afile_content(done.output_file_id or "", **kw)
    assert len(out.splitlines()) == 3 and b'"chat.completion"' in out


async def test_cancel_and_expiry_become_error_lines(fake: FakeProvider, kw: dict[str, Any]) -> None:
    clock = fake_batches.batches_of(fake)
    fo = await batches.acreate_file(jsonl(MODEL, 2), **kw)
    a = await batches.acreate_batch(input_file_id=fo.id, **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    assert (await batches.acancel_batch(a.id, **kw)).status == "cancelling"
    with pytest.raises(salvo.NotFoundError, match="not ready"):
        await batches.afile_content(f"{a.id}-errors", **kw)
    clock.advance(batch_id=a.id)
    clock.expire(b.id)
    cancelled = await batches.aretrieve_batch(a.id, **kw)
    assert cancelled.status == "cancelled" and cancelled.output_file_id is None
    assert cancelled.cancelled_at is not None and cancelled.request_counts.failed == 2
    codes = [r.error.code async for r in batches.abatch_results(cancelled, **kw) if r.error]
    assert codes == ["batch_cancelled", "batch_cancelled"]
    expired = await batches.aretrieve_batch(b.id, **kw)
    assert expired.status == "expired" and expired.expired_at is not None
    codes = [r.error.code async for r in batches.abatch_results(expired, **kw) if r.error]
    assert codes == ["batch_expired", "batch_expired"]


async def test_lists_paginate(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fo = await batches.acreate_file(jsonl(MODEL, 1), **kw)
    ids = [(await batches.acreate_batch(input_file_id=fo.id, **kw)).id for _ in range(5)]
    seen, after = [], None
    while True:
        page = await batches.alist_batches(limit=2, after=after, **kw)
        seen += [b.id for b in page.data]
        assert all(b.input_file_id == fo.id for b in page.data)
        if not page.has_more:
            break
        after = page.last_id
    assert seen == ids[::-1]
    files = await batches.alist_files(**kw)
    assert [f.id for f in files.data] == [fo.id]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"custom_id": "has space"}, "Line 2: custom_id 'has space' cannot be sent to Anthropic"),
        ({"custom_id": "x" * 65}, "Line 2: custom_id 'xxxx"),
        ({"custom_id": "req-0"}, "Line 2: custom_id 'req-0' repeats line 1"),
        ({"url": "/v1/embeddings"}, "Line 2: anthropic has no batch for url '/v1/embeddings'"),
        ({"body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}},
         "Line 2: model 'gpt-4o-mini' is a openai model"),
    ],
)  # fmt: skip
async def test_bad_lines_are_refused_before_sending(
    fake: FakeProvider, kw: dict[str, Any], line: dict[str, Any], message: str
) -> None:
    base = json.loads(jsonl(MODEL, 2).splitlines()[1])
    data = jsonl(MODEL, 1) + json.dumps({**base, **line}).encode() + b"\n"
    fo = await batches.acreate_file(data, **kw)
    with pytest.raises(salvo.ConfigError, match=message.replace("(", r"\(")[:60]):
        await batches.acreate_batch(input_file_id=fo.id, **kw)
    assert not [r for r in fake.records if r.path.startswith("/v1/messages")]


def test_status_and_result_mapping_from_bytes() -> None:
    raw = {
        "id": "msgbatch_1",
        "type": "message_batch",
        "processing_status": "ended",
        "request_counts": {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 1,
                           "expired": 0},
        "created_at": "2024-09-24T18:37:24.100435Z",
        "ended_at": "2024-09-24T19:00:00Z",
        "expires_at": "2024-09-25T18:37:24.100435Z",
        "cancel_initiated_at": "2024-09-24T18:50:00Z",
        "results_url": "https://x/results",
    }  # fmt: skip
    from salvo.batches._anthropic import _DECODE_BATCH

    batch = to_batch(_DECODE_BATCH(json.dumps(raw).encode()), {}, None)
    assert batch.status == "cancelled" and batch.created_at == 1727203044
    assert batch.cancelled_at == 1727204400 and batch.request_counts.failed == 2
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"},
             "request_id": "r1"}  # fmt: skip
    line = {"custom_id": "a", "result": {"type": "errored", "error": error}}
    ok, out, cost = translate_result(json.dumps(line).encode())
    decoded = json.loads(out)
    assert not ok and cost is None and decoded["response"]["status_code"] == 400
    assert decoded["response"]["body"]["error"]["message"] == "bad"
    assert decoded["response"]["request_id"] == "r1"
