"""The fake's files and batch routes, checked with plain aiohttp against protocols.md 3, 4 and 6
(not through salvo's client, so a mistake in the client cannot hide one in the fake)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from _batch_helpers import jsonl
from salvo.testing import Behavior, FakeProvider
from salvo.testing._batches import batches_of

OAI = {"authorization": "Bearer k"}
ANT = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as resp:
        body = await resp.read()
        if resp.content_type == "application/json":
            return resp.status, json.loads(body)
        return resp.status, body


async def upload(http: aiohttp.ClientSession, fake: FakeProvider, data: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", data, filename="in.jsonl", content_type="application/jsonl")
    status, fo = await call(http, "POST", f"{fake.openai_base}/files", data=form, headers=OAI)
    assert status == 200
    return dict(fo)


async def test_openai_files_and_batch_shapes(
    fake: FakeProvider, http: aiohttp.ClientSession
) -> None:
    fake.script("gpt-4o-mini", lambda n: Behavior(status=500) if n == 0 else Behavior())
    fo = await upload(http, fake, jsonl("gpt-4o-mini", 30))
    assert set(fo) >= {"id", "object", "bytes", "created_at", "filename", "purpose", "status"}
    assert fo["object"] == "file" and isinstance(fo["created_at"], int)
    base = fake.openai_base
    body = {
        "input_file_id": fo["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    status, b = await call(http, "POST", f"{base}/batches", json=body, headers=OAI)
    assert status == 200 and b["status"] == "validating" and b["object"] == "batch"
    assert isinstance(b["created_at"], int) and b["in_progress_at"] is None
    assert b["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    batches_of(fake).advance(3)
    _, b = await call(http, "GET", f"{base}/batches/{b['id']}", headers=OAI)
    assert b["status"] == "completed" and b["request_counts"] == {
        "total": 30,
        "completed": 29,
        "failed": 1,
    }
    assert all(isinstance(b[k], int) for k in ("in_progress_at", "finalizing_at", "completed_at"))
    assert b["usage"]["input_tokens"] > 0 and b["model"] == "gpt-4o-mini"
    _, out = await call(http, "GET", f"{base}/files/{b['output_file_id']}/content", headers=OAI)
    lines = [json.loads(line) for line in out.splitlines()]
    ids = [line["custom_id"] for line in lines]
    assert sorted(ids, key=lambda c: int(c[4:])) != ids  # shuffled, as the real API may be
    first = lines[0]
    assert set(first) == {"id", "custom_id", "response", "error"} and first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["body"]["object"] == "chat.completion"
    _, err = await call(http, "GET", f"{base}/files/{b['error_file_id']}/content", headers=OAI)
    line = json.loads(err)
    assert line["response"]["status_code"] == 500 and "error" in line["response"]["body"]
    _, page = await call(http, "GET", f"{base}/files?limit=2&order=asc", headers=OAI)
    assert page["data"][0]["id"] == fo["id"] and page["has_more"] is True
    status, gone = await call(http, "DELETE", f"{base}/files/{fo['id']}", headers=OAI)
    assert gone == {"id": fo["id"], "object": "file", "deleted": True}
    status, _ = await call(http, "GET", f"{base}/files/{fo['id']}", headers=OAI)
    assert status == 404
    status, _ = await call(http, "GET", f"{base}/batches", headers={})
    assert status == 401


async def test_anthropic_batch_shapes(fake: FakeProvider, http: aiohttp.ClientSession) -> None:
    fake.script("claude-x", [Behavior(status=529), Behavior(text="fine")])
    url = f"{fake.anthropic_base}/v1/messages/batches"
    params = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    reqs = [{"custom_id": f"c{i}", "params": params} for i in range(12)]
    status, mb = await call(http, "POST", url, json={"requests": reqs}, headers=ANT)
    assert status == 200 and mb["type"] == "message_batch" and mb["results_url"] is None
    assert mb["request_counts"] == {"processing": 12, "succeeded": 0, "errored": 0,
                                    "canceled": 0, "expired": 0}  # fmt: skip
    assert dt.datetime.fromisoformat(mb["created_at"]).tzinfo is not None
    assert mb["created_at"].endswith("Z")
    status, _ = await call(http, "GET", f"{url}/{mb['id']}/results", headers=ANT)
    assert status == 400  # only once ended
    status, _ = await call(http, "DELETE", f"{url}/{mb['id']}", headers=ANT)
    assert status == 400
    batches_of(fake).advance()
    _, mb = await call(http, "GET", f"{url}/{mb['id']}", headers=ANT)
    assert mb["processing_status"] == "ended" and mb["ended_at"].endswith("Z")
    assert mb["results_url"] == f"{url}/{mb['id']}/results"
    assert (mb["request_counts"]["succeeded"], mb["request_counts"]["errored"]) == (11, 1)
    _, raw = await call(http, "GET", mb["results_url"], headers=ANT)
    results = [json.loads(line) for line in raw.splitlines()]
    assert [r["custom_id"] for r in results] != [f"c{i}" for i in range(12)]
    errored = next(r for r in results if r["custom_id"] == "c0")["result"]
    assert errored["type"] == "errored" and errored["error"]["error"]["type"] == "overloaded_error"
    ok = next(r for r in results if r["custom_id"] == "c1")["result"]
    assert ok["type"] == "succeeded" and ok["message"]["content"][0]["text"] == "fine"
    status, gone = await call(http, "DELETE", f"{url}/{mb['id']}", headers=ANT)
    assert gone == {"id": mb["id"], "type": "message_batch_deleted"}
    bad = [{"custom_id": "has space", "params": params}]
    status, err = await call(http, "POST", url, json={"requests": bad}, headers=ANT)
    assert status == 400 and err["error"]["type"] == "invalid_request_error"
    status, _ = await call(http, "GET", url, headers={"x-api-key": "k"})
    assert status == 400  # no anthropic-version


async def test_control_endpoints_and_reset(fake: FakeProvider, http: aiohttp.ClientSession) -> None:
    url = f"{fake.anthropic_base}/v1/messages/batches"
    params = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    _, mb = await call(http, "POST", url, json={"requests": [{"custom_id": "a", "params": params}]},
                       headers=ANT)  # fmt: skip
    await call(http, "POST", f"{fake.url}/_fake/batches/auto", json={"steps": 1})
    assert batches_of(fake).auto_advance == 1
    _, mb = await call(http, "GET", f"{url}/{mb['id']}", headers=ANT)
    assert mb["processing_status"] == "ended"
    _, page = await call(http, "GET", f"{url}?limit=1", headers=ANT)
    assert [b["id"] for b in page["data"]] == [mb["id"]] and page["has_more"] is False
    await call(http, "POST", f"{fake.url}/_fake/batches/advance", json={"steps": 2})
    fake.reset()
    assert batches_of(fake).batches == {} and batches_of(fake).auto_advance == 0
