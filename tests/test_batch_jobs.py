"""Mistral, Together and Groq batches end to end against the fake over real sockets: create
from an OpenAI-format JSONL file, poll to completion on the fake's clock, every custom_id
exactly once in the OpenAI-format output, errors as error lines, cancel, list; and hostile
cases: a broken result line, an upload answered 500 then retried, a cancel mid-run, files the
provider cannot take refused before anything is sent."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import jsonl
from salvo import batches
from salvo.batches import _backends
from salvo.testing import Behavior, FakeProvider
from salvo.testing._batches import batches_of
from salvo.testing._files import files_of
from salvo.testing._jobs import jobs_of

MODELS = {"mistral": "mistral-small-latest", "together": "meta-llama/Llama-3-8b-chat-hf",
          "groq": "llama-3.1-8b-instant"}  # fmt: skip
ALL = sorted(MODELS)


pytestmark = pytest.mark.usefixtures("batch_dir")


def base(fake: FakeProvider, provider: str) -> str:
    return {"mistral": fake.mistral_base, "together": fake.together_base,
            "groq": fake.groq_base}[provider]  # fmt: skip


def kw_for(fake: FakeProvider, client: salvo.Client, provider: str) -> dict[str, Any]:
    return {"client": client, "api_key": "sk-test", "api_base": base(fake, provider),
            "provider": provider}  # fmt: skip


def advance(fake: FakeProvider, provider: str, steps: int = 1) -> None:
    if provider == "groq":
        batches_of(fake).advance(steps)
    else:
        jobs_of(fake, provider).advance(steps)


def auto(fake: FakeProvider, provider: str, steps: int = 1) -> None:
    if provider == "groq":
        batches_of(fake).auto_advance = steps
    else:
        jobs_of(fake, provider).auto_advance = steps


@pytest.mark.parametrize("provider", ALL)
async def test_the_whole_workflow(
    fake: FakeProvider, client: salvo.Client, provider: str, tmp_path: Path
) -> None:
    model = MODELS[provider]
    fake.script(model, lambda n: Behavior(status=400) if n == 2 else Behavior(text=f"a{n}"))
    kw = kw_for(fake, client, provider)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl(model, 5, max_tokens=10))
    fo = await batches.acreate_file(path, **kw)
    assert fo.provider == provider and fo.bytes == path.stat().st_size
    b = await batches.acreate_batch(input_file_id=fo.id, metadata={"job": "t"}, **kw)
    assert (b.status, b.provider, b.input_file_id) == ("validating", provider, fo.id)
    seen = []
    steps = 3 if provider == "groq" else 2
    for _ in range(steps):
        advance(fake, provider)
        seen.append((await batches.aretrieve_batch(b.id, **kw)).status)
    want = ["in_progress", "completed"]
    assert seen == (["in_progress", "finalizing", "completed"] if provider == "groq" else want)
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert done.request_counts.to_dict() == {"total": 5, "completed": 4, "failed": 1}
    assert done.completed_at and done.output_file_id and done.error_file_id
    assert done.metadata == {"job": "t"} or provider == "together"  # Together keeps none
    results = [r async for r in batches.abatch_results(done, **kw)]
    assert sorted(r.custom_id or "" for r in results) == [f"req-{i}" for i in range(5)]
    failed = [r for r in results if not r.ok]
    assert len(failed) == 1 and failed[0].status_code == 400 and failed[0].error is not None
    ok = [r for r in results if r.ok]
    assert all(isinstance(r.response, salvo.ModelResponse) for r in ok)
    assert {r.response.choices[0].message.content for r in ok if r.response} <= {
        f"a{i}" for i in range(5)
    }
    ordered = [r.custom_id async for r in batches.abatch_results(done, ordered=True, **kw)]
    assert ordered == [f"req-{i}" for i in range(5)]
    page = await batches.alist_batches(**kw)
    assert b.id in [x.id for x in page.data]


async def test_mistral_lines_are_translated_and_embeddings_run(
    fake: FakeProvider, client: salvo.Client
) -> None:
    kw = kw_for(fake, client, "mistral")
    auto(fake, "mistral")
    fo = await batches.acreate_file(jsonl("mistral/mistral-embed", 3, url="/v1/embeddings"), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, endpoint="/v1/embeddings", **kw)
    jobs = jobs_of(fake, "mistral")
    job = jobs.jobs[b.id]
    assert (job.model, job.endpoint) == ("mistral-embed", "/v1/embeddings")
    sent = [json.loads(x) for x in jobs.files[job.input_file].content.splitlines()]
    assert sent[0] == {"custom_id": "req-0", "body": {"input": "text 0"}}  # no model, no url
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    results = [r async for r in batches.abatch_results(done, **kw)]
    assert sorted(r.custom_id or "" for r in results) == ["req-0", "req-1", "req-2"]
    assert all(isinstance(r.response, salvo.EmbeddingResponse) for r in results)


async def test_mistral_bare_string_errors_and_finish_reasons(
    fake: FakeProvider, client: salvo.Client
) -> None:
    """A Mistral error line whose ``error`` is a bare string becomes an OpenAI error line."""
    kw = kw_for(fake, client, "mistral")
    backend = await _backends.backend_for("mistral", client=client, api_key="k",
                                          api_base=fake.mistral_base)  # fmt: skip
    translate = backend.translate  # type: ignore[attr-defined]
    line = translate(b'{"id": "x", "custom_id": "c", "response": null, "error": "boom"}', "f", 1)
    assert json.loads(line)["error"] == {"code": "error", "message": "boom", "param": None,
                                         "line": None}  # fmt: skip
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                         "finish_reason": "model_length"}]}  # fmt: skip
    raw = json.dumps({"custom_id": "c", "response": {"status_code": 200, "body": body}})
    out = json.loads(translate(raw.encode(), "f", 2))
    assert out["response"]["body"]["choices"][0]["finish_reason"] == "length"
    assert kw["provider"] == "mistral"


@pytest.mark.parametrize("provider", ALL)
async def test_cancel_mid_run_answers_cancelling_until_cancelled(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    kw = kw_for(fake, client, provider)
    fo = await batches.acreate_file(jsonl(MODELS[provider], 6), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    advance(fake, provider)  # running
    c = await batches.acancel_batch(b.id, **kw)
    assert c.status == "cancelling"
    assert (await batches.aretrieve_batch(b.id, **kw)).status == "cancelling"
    advance(fake, provider)
    done = await batches.aretrieve_batch(b.id, **kw)
    assert done.status == "cancelled" and done.done
    counts = done.request_counts
    assert counts.total == 6
    results = [r async for r in batches.abatch_results(done, **kw)]
    ran = [r for r in results if not (r.error and r.error.code == "batch_cancelled")]
    assert counts.completed + counts.failed == len(ran)  # counted from the result files
    if provider == "groq":  # OpenAI's shape: what never ran is not in the files
        assert len({r.custom_id for r in results}) == len(results)
    else:  # every custom_id exactly once: those that never ran as batch_cancelled errors
        assert sorted(r.custom_id or "" for r in results) == [f"req-{i}" for i in range(6)]
        assert 0 < len(ran) < 6


@pytest.mark.parametrize("provider", ["mistral", "together"])
async def test_a_broken_result_line_is_an_error_naming_it(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    kw = kw_for(fake, client, provider)
    jobs_of(fake, provider).broken_results = True
    auto(fake, provider)
    fo = await batches.acreate_file(jsonl(MODELS[provider], 4), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    with pytest.raises(salvo.ResponseDecodeError, match=r"line 3 is not a result line"):
        _ = [r async for r in batches.abatch_results(done, **kw)]


async def test_a_groq_upload_answered_500_is_retried_from_the_first_byte(
    fake: FakeProvider, client: salvo.Client
) -> None:
    kw = kw_for(fake, client, "groq")
    files_of(fake.state).fail_uploads = 1
    data = jsonl(MODELS["groq"], 300)
    fo = await batches.acreate_file(io.BytesIO(data), **kw)
    uploads = [r for r in fake.records if r.path.endswith("/files")]
    assert [r.status for r in uploads] == [500, 200]
    assert files_of(fake.state).files[fo.id].content == data


@pytest.mark.parametrize("provider", ["mistral", "together"])
async def test_an_upload_answered_500_is_retried_from_the_first_byte(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    kw = kw_for(fake, client, provider)
    jobs = jobs_of(fake, provider)
    jobs.fail_uploads = 1
    fo = await batches.acreate_file(jsonl(MODELS[provider], 300), **kw)
    assert not fake.records  # create_file keeps the file locally
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    uploads = [r for r in fake.records if r.path.endswith("/files")]
    assert [r.status for r in uploads] == [500, 200]
    job = jobs.jobs[b.id]
    assert len(jobs.files[job.input_file].content.splitlines()) == 300


@pytest.mark.parametrize("provider", ALL)
async def test_what_a_provider_cannot_take_is_refused_before_upload(
    fake: FakeProvider, client: salvo.Client, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = kw_for(fake, client, provider)
    model = MODELS[provider]
    if provider != "mistral":  # no embeddings batches on Together or Groq
        with pytest.raises(salvo.ConfigError, match=r"Line 1: .*no batch for url '/v1/embeddings'"):
            await batches.acreate_file(jsonl(model, 2, url="/v1/embeddings"), **kw)
    entry = _backends.BACKENDS[provider]
    small = dataclasses.replace(entry.limits, max_lines=3, max_bytes=2000)
    monkeypatch.setitem(_backends.BACKENDS, provider, dataclasses.replace(entry, limits=small))
    with pytest.raises(salvo.ConfigError, match="Line 4: the file holds more than 3 requests"):
        await batches.acreate_file(jsonl(model, 4), **kw)
    big = jsonl(model, 3, max_tokens=10, user="x" * 1000)
    with pytest.raises(salvo.ConfigError, match=r"2000 bytes, .*batch limit"):
        await batches.acreate_file(big, **kw)
    mixed = jsonl(model, 1) + jsonl(model, 2, url="/v1/completions").split(b"\n", 1)[1]
    with pytest.raises(salvo.ConfigError, match="Line 2: "):
        await batches.acreate_file(mixed, **kw)
    if provider == "groq":
        assert [r.path for r in fake.records] == []
        return
    other = jsonl(model, 1) + jsonl("another-model", 2).split(b"\n", 1)[1]
    with pytest.raises(salvo.ConfigError, match="Line 2: model 'another-model' differs"):
        await batches.acreate_file(other, **kw)
    assert fake.records == []  # nothing was sent


async def test_together_custom_id_limit_and_groq_files_are_remote(
    fake: FakeProvider, client: salvo.Client
) -> None:
    line = {"custom_id": "x" * 65, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    with pytest.raises(salvo.ConfigError, match="65 characters; together's batch limit"):
        await batches.acreate_file(json.dumps(line).encode(), **kw_for(fake, client, "together"))
    kw = kw_for(fake, client, "groq")
    fo = await batches.acreate_file(jsonl(MODELS["groq"], 2), **kw)
    assert fo.id in files_of(fake.state).files  # Groq keeps files itself
    with pytest.raises(salvo.ConfigError, match="no batch for endpoint"):
        await batches.acreate_batch(
            input_file_id="file-000000000000000000000000",
            endpoint="/v1/embeddings",
            **kw_for(fake, client, "mistral") | {"provider": "together"},
        )


async def test_submit_batch_uses_the_native_api(fake: FakeProvider, client: salvo.Client) -> None:
    auto(fake, "mistral")
    b = await batches.asubmit_batch(
        "mistral/mistral-small-latest",
        [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]],
        client=client,
        api_key="k",
        api_base=fake.mistral_base,
        provider="mistral",
    )
    assert b.provider == "mistral"
    done = await batches.await_batch(b.id, provider="mistral", poll_interval=0, client=client,
                                     api_key="k", api_base=fake.mistral_base)  # fmt: skip
    assert done.request_counts.completed == 2


@pytest.mark.parametrize("provider", ["openai", "azure", "anthropic"])
async def test_the_first_providers_refuse_before_upload_too(
    fake: FakeProvider, client: salvo.Client, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = "claude-3-5-haiku-20241022" if provider == "anthropic" else "gpt-4o-mini"
    bases = {"openai": fake.openai_base, "azure": fake.url + "/openai/v1",
             "anthropic": fake.anthropic_base}  # fmt: skip
    kw = {"client": client, "api_key": "k", "api_base": bases[provider], "provider": provider}
    entry = _backends.BACKENDS[provider]
    small = dataclasses.replace(entry.limits, max_lines=2)
    monkeypatch.setitem(_backends.BACKENDS, provider, dataclasses.replace(entry, limits=small))
    call = batches.acreate_file(jsonl(model, 3), **kw)
    if provider == "anthropic":  # files are kept locally; the upload is the create
        fo = await call
        call = batches.acreate_batch(input_file_id=fo.id, **kw)
    with pytest.raises(salvo.ConfigError, match="Line 3: the file holds more than 2 requests"):
        await call
    if provider != "anthropic":
        with pytest.raises(salvo.ConfigError, match="no batch for endpoint '/v1/images'"):
            await batches.acreate_batch(input_file_id="file-x", endpoint="/v1/images", **kw)
    assert fake.records == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_first_providers_answer_cancelling_until_cancelled(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    model = "claude-3-5-haiku-20241022" if provider == "anthropic" else "gpt-4o-mini"
    base_url = fake.anthropic_base if provider == "anthropic" else fake.openai_base
    kw = {"client": client, "api_key": "k", "api_base": base_url, "provider": provider}
    fo = await batches.acreate_file(jsonl(model, 3), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    if provider == "openai":
        batches_of(fake).advance()
    assert (await batches.acancel_batch(b.id, **kw)).status == "cancelling"
    assert (await batches.aretrieve_batch(b.id, **kw)).status == "cancelling"
    batches_of(fake).advance()
    done = await batches.aretrieve_batch(b.id, **kw)
    assert done.status == "cancelled" and done.request_counts.total == 3


@pytest.mark.parametrize("provider", ["mistral", "together"])
@pytest.mark.parametrize("where", ["upload", "results"])
async def test_cancelled_calls_close_their_connection(
    fake: FakeProvider, client: salvo.Client, provider: str, where: str
) -> None:
    """Cancelling the caller while the upload or the result download waits closes that
    connection (the fake records the disconnect) and leaves no task behind."""
    kw = kw_for(fake, client, provider)
    jobs = jobs_of(fake, provider)
    fo = await batches.acreate_file(jsonl(MODELS[provider], 50), **kw)
    if where == "results":
        auto(fake, provider)
        b = await batches.acreate_batch(input_file_id=fo.id, **kw)
        done = await batches.await_batch(b.id, poll_interval=0, **kw)

        async def work() -> Any:
            return [r async for r in batches.abatch_results(done, **kw)]
    else:

        async def work() -> Any:
            return await batches.acreate_batch(input_file_id=fo.id, **kw)

    jobs.hold = asyncio.Event()
    seen = len(fake.records)
    task = asyncio.create_task(work())
    while len(fake.records) == seen or fake.records[-1].path.endswith("/batch/jobs"):
        await asyncio.sleep(0.01)
    record = fake.records[-1]
    assert record.path.endswith("/files" if where == "upload" else "/content")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    closed = await fake.wait_until_closed(record, timeout=5)
    assert closed.disconnected is not None and closed.completed is None
    jobs.hold.set()
    assert not jobs.jobs or where == "results"  # the cancelled create made no job


class _Pipe(io.RawIOBase):
    """A file object that cannot seek (like a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        piece = self._data.read(len(b))
        b[: len(piece)] = piece
        return len(piece)


@pytest.mark.parametrize("provider", ["openai", "mistral"])
async def test_file_objects_are_checked_then_uploaded_whole(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    """A seekable file object is put back after the check; one that cannot seek is copied to
    a temporary file first; either way the bytes uploaded are the bytes given."""
    b = fake.openai_base if provider == "openai" else fake.mistral_base
    kw = {"client": client, "api_key": "k", "api_base": b, "provider": provider}
    data = jsonl(MODELS.get(provider, "gpt-4o-mini"), 40)
    seekable = io.BytesIO(b"xx" + data)
    seekable.read(2)
    for source in (seekable, _Pipe(data)):
        fo = await batches.acreate_file(source, **kw)
        assert fo.bytes == len(data)
        assert await batches.afile_content(fo.id, **kw) == data
    with pytest.raises(salvo.ConfigError, match="Line 2: custom_id 'req-0' repeats line 1"):
        await batches.acreate_file(_Pipe(data[: data.index(b"\n") + 1] * 2), **kw)
    if provider == "mistral":  # the refused file is not kept either
        assert len((await batches.alist_files(**kw)).data) == 2


@pytest.mark.parametrize("provider", ["mistral", "together"])
async def test_a_failed_job_says_why_and_lists_show_counts(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    kw = kw_for(fake, client, provider)
    jobs = jobs_of(fake, provider)
    fo = await batches.acreate_file(jsonl(MODELS[provider], 2), **kw)
    ok = await batches.acreate_batch(input_file_id=fo.id, **kw)
    bad = await batches.acreate_batch(input_file_id=fo.id, **kw)
    del jobs.files[jobs.jobs[bad.id].input_file]  # the provider lost the uploaded file
    jobs.advance(2)
    failed = await batches.aretrieve_batch(bad.id, **kw)
    assert failed.status == "failed" and failed.failed_at and failed.errors is not None
    assert "not found" in (failed.errors.data[0].message or "")
    unrun = [r async for r in batches.abatch_results(failed, **kw)]  # each custom_id once
    assert sorted(r.custom_id or "" for r in unrun) == ["req-0", "req-1"]
    assert {r.error.code for r in unrun if r.error} == {"batch_failed"}
    page = await batches.alist_batches(limit=1, **kw)
    assert [b.id for b in page.data] == [bad.id] and page.has_more
    rest = await batches.alist_batches(limit=5, after=bad.id, **kw)
    assert [b.id for b in rest.data] == [ok.id] and not rest.has_more
    assert rest.data[0].request_counts.to_dict() == {"total": 2, "completed": 2, "failed": 0}


async def test_the_job_clock_from_another_process(fake: FakeProvider, client: salvo.Client) -> None:
    """``/_fake/jobs/{provider}/advance|auto`` move the clock as the methods do."""
    import aiohttp

    kw = kw_for(fake, client, "together")
    fo = await batches.acreate_file(jsonl(MODELS["together"], 2), **kw)
    b = await batches.acreate_batch(input_file_id=fo.id, **kw)
    async with aiohttp.ClientSession() as http:
        url = f"{fake.url}/_fake/jobs/together"
        async with http.post(f"{url}/advance", json={"steps": 1, "job_id": b.id}) as resp:
            assert resp.status == 200
        assert (await batches.aretrieve_batch(b.id, **kw)).status == "in_progress"
        async with http.post(f"{url}/auto", json={"steps": 1}) as resp:
            assert resp.status == 200
    assert (await batches.aretrieve_batch(b.id, **kw)).status == "completed"
