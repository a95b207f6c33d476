"""The OpenAI (and Azure) Files + Batch workflow end to end, against the fake over real sockets:
prepare JSONL, upload (path, bytes, file object), create, poll to completion on the fake's clock,
read results by custom_id, list with pagination, cancel, delete; errors as ProviderErrors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import jsonl
from salvo import batches
from salvo.testing import Behavior, FakeProvider
from salvo.testing import _batches as fake_batches
from salvo.testing import _files as fake_files

pytestmark = pytest.mark.usefixtures("batch_dir")


@pytest.fixture
def kw(fake: FakeProvider, client: salvo.Client) -> dict[str, Any]:
    return {"client": client, "api_key": "sk-test", "api_base": fake.openai_base}


async def test_the_whole_workflow(fake: FakeProvider, kw: dict[str, Any], tmp_path: Path) -> None:
    fake.script("gpt-4o-mini", lambda n: Behavior(status=400) if n == 2 else Behavior(text=f"a{n}"))
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl("gpt-4o-mini", 5, max_tokens=10))
    fo = await batches.acreate_file(path, **kw)
    assert (fo.id, fo.filename, fo.bytes, fo.purpose) == (
        fo.id, "requests.jsonl", path.stat().st_size, "batch")  # fmt: skip
    assert await batches.afile_content(fo.id, **kw) == path.read_bytes()

    b = await batches.acreate_batch(input_file_id=fo.id, metadata={"job": "t"}, **kw)
    assert (b.status, b.endpoint, b.metadata, b.provider) == (
        "validating", "/v1/chat/completions", {"job": "t"}, "openai")  # fmt: skip
    clock = fake_batches.batches_of(fake)
    seen = []
    for _ in range(3):
        clock.advance()
        seen.append((await batches.aretrieve_batch(b.id, **kw)).status)
    assert seen == ["in_progress", "finalizing", "completed"]
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert done.request_counts.to_dict() == {"total": 5, "completed": 4, "failed": 1}
    assert isinstance(done.completed_at, int) and done.output_file_id and done.error_file_id
    assert done.cost_usd is not None and done.cost_usd > 0  # from the batch's usage, halved

    results = {r.custom_id: r async for r in batches.abatch_results(done, **kw)}
    assert sorted(results) == [f"req-{i}" for i in range(5)]
    bad = results["req-2"]
    assert not bad.ok and bad.status_code == 400 and bad.error is not None
    assert bad.error.code == "invalid_request_error"
    good = results["req-0"].response
    assert isinstance(good, salvo.ModelResponse) and good.content == "a0"
    # the fake answered each request as scripted, in the input's body
    assert [body["max_tokens"] for _, _, body in clock.get(b.id).requests] == [10] * 5

    ordered = [r.custom_id async for r in batches.abatch_results(done, ordered=True, **kw)]
    assert ordered == [f"req-{i}" for i in range(5)]


async def test_await_batch_polls_until_terminal(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fake_batches.batches_of(fake).auto_advance = 1  # each retrieve moves the batch one step
    fo = await batches.acreate_file(jsonl("gpt-4o-mini", 3), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    statuses: list[str] = []
    done = await batches.await_batch(
        b.id, poll_interval=0, on_progress=lambda x: statuses.append(x.status), **kw
    )
    assert statuses == ["in_progress", "finalizing", "completed"] and done.done


async def test_uploads_stream_from_file_objects_and_bytes(
    fake: FakeProvider, kw: dict[str, Any], tmp_path: Path
) -> None:
    data = jsonl("gpt-4o-mini", 4)
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    with open(path, "rb") as f:
        a = await batches.acreate_file(f, **kw)
    b = await batches.acreate_file(io.BytesIO(data), filename="mem.jsonl", **kw)
    c = await batches.acreate_file(data, **kw)
    for fo in (a, b, c):
        assert fake_files.files_of(fake.state).files[fo.id].content == data
    assert (a.filename, b.filename) == ("in.jsonl", "mem.jsonl")
    upload = next(r for r in fake.records if r.path == "/v1/files")
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert upload.headers["authorization"] == "Bearer sk-test"


async def test_lists_paginate(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fo = await batches.acreate_file(jsonl("gpt-4o-mini", 1), **kw)
    ids = [(await batches.acreate_batch(input_file_id=fo.id, **kw)).id for _ in range(5)]
    seen, after = [], None
    while True:
        page = await batches.alist_batches(limit=2, after=after, **kw)
        seen += [b.id for b in page.data]
        if not page.has_more:
            break
        after = page.last_id
    assert seen == ids[::-1]  # newest first
    files = await batches.alist_files(limit=10, **kw)
    assert [f.id for f in files.data] == [fo.id] and not files.has_more


async def test_cancel(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fo = await batches.acreate_file(jsonl("gpt-4o-mini", 3), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    cancelling = await batches.acancel_batch(b.id, **kw)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    fake_batches.batches_of(fake).advance()
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert done.status == "cancelled" and done.output_file_id is None
    assert [r async for r in batches.abatch_results(done, **kw)] == []


async def test_embeddings_and_failed_validation(fake: FakeProvider, kw: dict[str, Any]) -> None:
    clock = fake_batches.batches_of(fake)
    clock.auto_advance = 1
    emb = jsonl("text-embedding-3-small", 2, url="/v1/embeddings")
    fo = await batches.acreate_file(emb, **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, endpoint="/v1/embeddings", **kw)
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    results = [r async for r in batches.abatch_results(done, **kw)]
    assert all(isinstance(r.response, salvo.EmbeddingResponse) for r in results)
    # a chat file sent as an embeddings batch fails validation, naming the lines
    fo = await batches.acreate_file(jsonl("gpt-4o-mini", 2), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, endpoint="/v1/embeddings", **kw)
    failed = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert failed.status == "failed" and failed.errors is not None
    assert [e.line for e in failed.errors.data] == [1, 2]


async def test_errors_are_provider_errors(fake: FakeProvider, kw: dict[str, Any]) -> None:
    with pytest.raises(salvo.NotFoundError) as info:
        await batches.aretrieve_batch("batch_nope", **kw)
    assert info.value.status_code == 404 and info.value.provider == "openai"
    with pytest.raises(salvo.NotFoundError):
        await batches.afile_content("file-nope", **kw)
    with pytest.raises(salvo.BadRequestError):
        await batches.acreate_batch(input_file_id="file-nope", **kw)
    with pytest.raises(salvo.AuthenticationError):
        await batches.alist_batches(
            **{**kw, "api_key": ""},
        )
    uploads = len(fake.records)
    with pytest.raises(salvo.ConfigError, match="Line 1: custom_id"):
        await batches.acreate_file(b"{}\n", **kw)  # refused before the upload
    assert len(fake.records) == uploads
    other = await batches.acreate_file(b"{}\n", purpose="user_data", **kw)  # not a batch file
    deleted = await batches.adelete_file(other.id, **kw)
    assert deleted.deleted


async def test_content_stream_closes_early(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fo = await batches.acreate_file(jsonl("gpt-4o-mini", 2000), **kw)
    async with batches.aiter_file_content(fo.id, **kw) as pieces:
        first = await anext(pieces)
    assert first and len(first) < fo.bytes
    record = [r for r in fake.records if r.path.endswith("/content")][-1]
    await fake.wait_until_closed(record)


async def test_azure_paths(fake: FakeProvider, client: salvo.Client) -> None:
    kw = {"client": client, "api_key": "az", "api_base": fake.azure_base, "provider": "azure"}
    fake_batches.batches_of(fake).auto_advance = 1
    fo = await batches.acreate_file(jsonl("my-deployment", 2), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert done.provider == "azure" and done.request_counts.completed == 2
    paths = {r.path for r in fake.records}
    assert "/openai/files" in paths and f"/openai/batches/{b.id}" in paths
    assert all(r.headers.get("api-key") == "az" for r in fake.records)
