"""Gemini Batch Mode through the fake: OpenAI-format JSONL in, OpenAI-format lines out, every
custom_id exactly once; inline and file (resumable upload) batches, embeddings, cancel, list,
and the hostile cases (broken result lines, lines Gemini has no batch for)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import chat_lines, results_of
from salvo import batches
from salvo.batches._gemini import GeminiBatches
from salvo.testing import Behavior, FakeProvider
from salvo.testing._gemini_batches import gemini_batches_of
from salvo.testing._gemini_files import gemini_files_of

MODEL = "gemini-2.5-flash"


pytestmark = pytest.mark.usefixtures("batch_dir")


@pytest.fixture
async def kw(fake: FakeProvider, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as client:
        yield {"client": client, "provider": "gemini", "api_key": "test-key",
               "api_base": fake.gemini_base, "store_dir": tmp_path / "store"}  # fmt: skip


async def test_inline_chat_batch_end_to_end(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fake.script(MODEL, [Behavior(text="one"), Behavior(status=429, error_message="slow down"),
                        Behavior(text="three")])  # fmt: skip
    f = await batches.acreate_file(chat_lines(3), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, metadata={"job": "nightly"}, **kw)
    assert (b.status, b.provider, b.metadata) == ("validating", "gemini", {"job": "nightly"})
    create = next(r for r in fake.records if r.path.endswith(":batchGenerateContent"))
    inline = create.body["batch"]["inputConfig"]["requests"]["requests"]
    assert [x["metadata"] for x in inline] == [{"key": f"req-{i}"} for i in range(3)]
    first = inline[0]["request"]  # the Gemini adapter's own mapping
    assert first["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert first["generationConfig"] == {"maxOutputTokens": 16}
    assert first["contents"] == [{"role": "user", "parts": [{"text": "question 0"}]}]

    gemini_batches_of(fake).auto_advance = 1
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert done.status == "completed"
    assert done.request_counts == batches.RequestCounts(total=3, completed=2, failed=1)
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1", "req-2"]
    by_id = {r.custom_id: r for r in results}
    assert by_id["req-0"].response.choices[0].message.content == "one"
    assert by_id["req-2"].response.choices[0].message.content == "three"
    bad = by_id["req-1"]
    assert not bad.ok and bad.status_code == 429 and bad.error.message == "slow down"
    again = await batches.aretrieve_batch(b.id, **kw)
    assert again.cost_usd is not None and again.cost_usd > 0  # priced at the batch discount
    one = by_id["req-0"].response
    assert one.cost_usd == pytest.approx(salvo.cost_usd("gemini", MODEL, one.usage, batch=True))


async def test_file_batch_uses_resumable_upload_and_result_file(
    fake: FakeProvider, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GeminiBatches, "inline_limit", 10)
    f = await batches.acreate_file(chat_lines(4), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    start, chunk = [r for r in fake.records if r.path == "/upload/v1beta/files"][:2]
    assert start.headers["x-goog-upload-command"] == "start"
    assert chunk.headers["x-goog-upload-command"] == "upload, finalize"
    uploaded = [x for x in gemini_files_of(fake).files.values() if x.source == "UPLOADED"]
    assert len(uploaded) == 1
    lines = [json.loads(x) for x in uploaded[0].data.splitlines()]
    assert [x["key"] for x in lines] == [f"req-{i}" for i in range(4)]
    assert int(start.headers["x-goog-upload-header-content-length"]) == len(uploaded[0].data)
    create = next(r for r in fake.records if r.path.endswith(":batchGenerateContent"))
    assert create.body["batch"]["inputConfig"] == {"fileName": uploaded[0].name}

    gemini_batches_of(fake).advance(2)
    done = await batches.aretrieve_batch(b.id, **kw)
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == [f"req-{i}" for i in range(4)]
    assert all(r.ok for r in results)


async def test_broken_result_line_gives_its_request_an_error_line(
    fake: FakeProvider, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GeminiBatches, "inline_limit", 10)
    f = await batches.acreate_file(chat_lines(3), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    store = gemini_batches_of(fake)
    store.advance(2)
    result = gemini_files_of(fake).files[store.batches[f"batches/{b.id}"].responses_file]
    lines = result.data.splitlines(keepends=True)
    result.data = lines[0] + b'{"key": "req-1", "respo\n' + lines[2] + b'{"key": "stranger"}\n'
    done = await batches.aretrieve_batch(b.id, **kw)
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1", "req-2"]
    lost = next(r for r in results if r.custom_id == "req-1")
    assert not lost.ok and lost.error.code == "missing_result"


async def test_embeddings_use_async_batch_embed(fake: FakeProvider, kw: dict[str, Any]) -> None:
    lines = b"".join(
        json.dumps({"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                    "body": {"model": "gemini/text-embedding-004", "input": f"text {i}",
                             "dimensions": 4}}).encode() + b"\n"
        for i in range(2)
    )  # fmt: skip
    f = await batches.acreate_file(lines, **kw)
    b = await batches.acreate_batch(input_file_id=f.id, endpoint="/v1/embeddings", **kw)
    create = next(r for r in fake.records if r.path.endswith(":asyncBatchEmbedContent"))
    req = create.body["batch"]["inputConfig"]["requests"]["requests"][0]["request"]
    assert req == {"content": {"parts": [{"text": "text 0"}]}, "outputDimensionality": 4}
    gemini_batches_of(fake).advance(2)
    done = await batches.aretrieve_batch(b.id, **kw)
    assert done.endpoint == "/v1/embeddings"
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["e0", "e1"]
    assert all(len(r.response.data[0].embedding) == 4 for r in results)


async def test_cancel_answers_cancelling_until_cancelled(
    fake: FakeProvider, kw: dict[str, Any]
) -> None:
    f = await batches.acreate_file(chat_lines(2), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    c = await batches.acancel_batch(b.id, **kw)
    assert c.status == "cancelling" and c.cancelling_at is not None
    assert (await batches.aretrieve_batch(b.id, **kw)).status == "cancelling"
    gemini_batches_of(fake).advance(1)
    done = await batches.aretrieve_batch(b.id, **kw)
    assert done.status == "cancelled" and done.output_file_id is None
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1"]
    assert {r.error.code for r in results} == {"batch_cancelled"}


async def test_list_pages_through_batches(fake: FakeProvider, kw: dict[str, Any]) -> None:
    ids = []
    for _ in range(3):
        f = await batches.acreate_file(chat_lines(1), **kw)
        ids.append((await batches.acreate_batch(input_file_id=f.id, **kw)).id)
    first = await batches.alist_batches(limit=2, **kw)
    assert [x.id for x in first.data] == ids[::-1][:2] and first.has_more
    rest = await batches.alist_batches(limit=2, after=first.last_id, **kw)
    assert [x.id for x in rest.data] == ids[:1] and not rest.has_more


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ({"url": "/v1/completions"}, "Line 2: gemini has no batch for url '/v1/completions'"),
        ({"body": {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]}},
         "Line 2: model 'openai/gpt-4o' is a openai model"),
        ({"body": {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "x"}]}},
         "Line 2: model 'gemini-2.5-pro' differs"),
        ({"custom_id": "req-0"}, "Line 2: custom_id 'req-0' repeats line 1"),
        ({"body": {"model": MODEL, "messages": []}}, "Line 2: messages must be"),
    ],
)  # fmt: skip
async def test_bad_line_rejected_before_anything_is_uploaded(
    fake: FakeProvider, kw: dict[str, Any], line: dict[str, Any], expect: str
) -> None:
    good = json.loads(chat_lines(1))
    bad = {**good, "custom_id": "req-1", **line}
    data = (json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode()
    f = await batches.acreate_file(data, **kw)
    with pytest.raises(salvo.ConfigError, match=expect.replace("(", r"\(")):
        await batches.acreate_batch(input_file_id=f.id, **kw)
    assert fake.records == []  # nothing reached Gemini
    assert gemini_batches_of(fake).batches == {}


async def test_endpoint_gemini_has_no_batch_for(kw: dict[str, Any]) -> None:
    f = await batches.acreate_file(chat_lines(1), **kw)
    with pytest.raises(salvo.ConfigError, match="/v1/responses"):
        await batches.acreate_batch(input_file_id=f.id, endpoint="/v1/responses", **kw)


async def test_results_before_the_end_are_refused(fake: FakeProvider, kw: dict[str, Any]) -> None:
    f = await batches.acreate_file(chat_lines(1), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    with pytest.raises(salvo.NotFoundError, match="not ready"):
        await batches.afile_content(f"{b.id}-output", **kw)


async def test_submit_batch_picks_gemini_for_a_gemini_model(
    fake: FakeProvider, tmp_path: Path
) -> None:
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as client:
        b = await batches.asubmit_batch(
            "gemini/gemini-2.5-flash", [[{"role": "user", "content": "hi"}]], client=client,
            api_key="k", store_dir=tmp_path / "s", provider="gemini",
            api_base=fake.gemini_base,
        )  # fmt: skip
        assert b.provider == "gemini" and b.status == "validating"


async def test_stopping_a_result_read_early_closes_the_download(
    fake: FakeProvider, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GeminiBatches, "inline_limit", 10)
    f = await batches.acreate_file(chat_lines(2), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    store = gemini_batches_of(fake)
    store.advance(2)
    result = gemini_files_of(fake).files[store.batches[f"batches/{b.id}"].responses_file]
    result.data += b" " * (16 << 20)  # far more than the socket buffers hold
    async with batches.aiter_file_content(f"{b.id}-output", **kw) as pieces:
        async for piece in pieces:
            assert b'"custom_id":"req-0"' in piece
            break
    download = next(r for r in fake.records if r.path.endswith(":download"))
    await fake.wait_until_closed(download, timeout=5)
    assert download.completed is None and download.disconnected is not None


async def test_a_file_over_geminis_limit_is_rejected_naming_the_line(
    fake: FakeProvider, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GeminiBatches, "inline_limit", 10)
    monkeypatch.setattr(GeminiBatches, "file_limit", 600)
    f = await batches.acreate_file(b"\n" + chat_lines(5), **kw)
    with pytest.raises(salvo.ConfigError, match=r"Line \d+ \(custom_id 'req-\d'\).*600 bytes"):
        await batches.acreate_batch(input_file_id=f.id, **kw)
    assert fake.records == []


async def test_upload_answers_that_break_the_protocol_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw-socket 'Gemini' whose upload start has no session URL, then one whose final
    chunk is not 'final': each a ResponseDecodeError, and no batch is created."""
    monkeypatch.setattr(GeminiBatches, "inline_limit", 10)
    seen: list[bytes] = []
    mode = {"start_url": False}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            seen.append(head.split(b" ")[1])
            port = writer.get_extra_info("sockname")[1]
            extra = b""
            if b"upload_id" in head:
                extra = b"X-Goog-Upload-Status: active\r\n"
            elif mode["start_url"]:
                extra = f"X-Goog-Upload-URL: http://127.0.0.1:{port}/s?upload_id=1\r\n".encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + extra + b"\r\n{}")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, salvo.Client() as client:
        kw = {"client": client, "provider": "gemini", "api_key": "k", "api_base": base,
              "store_dir": tmp_path}  # fmt: skip
        f = await batches.acreate_file(chat_lines(2), **kw)
        with pytest.raises(salvo.ResponseDecodeError, match="X-Goog-Upload-URL"):
            await batches.acreate_batch(input_file_id=f.id, **kw)
        mode["start_url"] = True
        with pytest.raises(salvo.ResponseDecodeError, match="not 'final'"):
            await batches.acreate_batch(input_file_id=f.id, **kw)
    assert not [p for p in seen if b"batchGenerateContent" in p]


async def test_an_upload_cut_midway_resumes_from_what_arrived(
    fake: FakeProvider, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GeminiBatches, "inline_limit", 10)
    files = gemini_files_of(fake)
    files.drop_upload_after = 700
    f = await batches.acreate_file(chat_lines(8), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    uploads = [r for r in fake.records if "upload_id=" in r.path or r.path.startswith("/upload/")]
    commands = [r.headers["x-goog-upload-command"] for r in uploads]
    assert commands[0] == "start" and "query" in commands
    assert [r.headers.get("x-goog-upload-offset") for r in uploads][-1] == "700"
    uploaded = next(x for x in files.files.values() if x.source == "UPLOADED")
    assert [json.loads(x)["key"] for x in uploaded.data.splitlines()] == [
        f"req-{i}" for i in range(8)
    ]
    gemini_batches_of(fake).advance(2)
    results = await results_of(await batches.aretrieve_batch(b.id, **kw), kw)
    assert sorted(r.custom_id for r in results) == [f"req-{i}" for i in range(8)]
