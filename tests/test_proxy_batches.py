"""Files and batches through the proxy, driven by the OpenAI SDK (local engine underneath)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from salvo.testing import Behavior, FakeProvider
from test_proxy_support import UPSTREAM_KEY, Stack, _jsonl, stack


async def _job_finished(batch_id: str) -> None:
    """Wait for the local engine's task of ``batch_id`` (no polling, no sleeping)."""
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"salvo batch {batch_id}"]
    await asyncio.wait([task])


def _settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "store"), **extra}


async def test_files_and_a_local_batch_end_to_end(tmp_path: Path) -> None:
    async with stack(settings=_settings(tmp_path)) as s:
        s.fake.script("gpt-4o-mini", [Behavior(text="a"), Behavior(status=400), Behavior(text="c")])
        upload = await s.oai.files.create(file=("in.jsonl", _jsonl("fast", 3)), purpose="batch")
        assert upload.id.startswith("file-") and upload.bytes > 0
        assert upload.filename == "in.jsonl" and upload.purpose == "batch"
        assert (await s.oai.files.retrieve(upload.id)).id == upload.id

        batch = await s.oai.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "test"},
        )
        assert batch.model == "fast" and batch.metadata == {"job": "test"}
        await _job_finished(batch.id)

        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "completed"
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.failed) == (3, 1)
        assert done.output_file_id and done.error_file_id
        raw = await s.oai.files.with_raw_response.content(done.output_file_id)
        assert float(raw.headers["x-salvo-overhead-ms"]) >= 0
        out = raw.http_response.content
        results = {json.loads(line)["custom_id"] for line in out.splitlines()}
        assert len(results) == 2 and results <= {"req-0", "req-1", "req-2"}
        errors = (await s.oai.files.content(done.error_file_id)).content
        assert json.loads(errors)["response"]["status_code"] == 400

        page = await s.oai.batches.list(limit=5)
        assert [b.id for b in page.data] == [batch.id]
        files = [f.id for f in (await s.oai.files.list()).data]
        assert upload.id in files and done.output_file_id in files
        assert (await s.oai.batches.cancel(batch.id)).status == "completed"

        deleted = await s.oai.files.delete(upload.id)
        assert deleted.deleted is True
        with pytest.raises(openai.NotFoundError):
            await s.oai.files.retrieve(upload.id)
        # every upstream call of the batch went to the configured upstream, with its name
        assert {r.body["model"] for r in s.fake.records} == {"gpt-4o-mini"}


async def test_a_stopped_proxy_leaves_its_local_batch_resumable(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    async with stack(settings=settings) as s:
        s.fake.script("gpt-4o-mini", Behavior(latency=5.0))
        upload = await s.oai.files.create(file=("in.jsonl", _jsonl("fast", 2)), purpose="batch")
        batch = await s.oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert (await s.oai.batches.retrieve(batch.id)).status in ("validating", "in_progress")
    # the proxy stopped mid-batch; a new one on the same store resumes the job
    async with stack(settings=settings) as s:
        await _job_finished(batch.id)
        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "completed"
        assert done.request_counts is not None and done.request_counts.completed == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_native_batch_runs_on_the_providers_batch_api(
    tmp_path: Path, provider: str
) -> None:
    from salvo.testing._batches import batches_of
    from salvo.testing._files import files_of

    def native(fake: FakeProvider, config: dict[str, Any]) -> None:
        model = "openai/gpt-4o-mini" if provider == "openai" else "anthropic/claude-sonnet-4-5"
        base = fake.openai_base if provider == "openai" else fake.anthropic_base
        params = {"model": model, "api_base": base, "api_key": UPSTREAM_KEY, "batch": "native"}
        config["model_list"].append({"model_name": "nat", "params": params})

    async with stack(settings=_settings(tmp_path), configure=native, fake_batches=True) as s:
        upload = await s.oai.files.create(
            file=("in.jsonl", _jsonl("nat", 3, max_tokens=20)), purpose="batch"
        )
        batch = await s.oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.input_file_id != upload.id
        if provider == "openai":  # the provider got the file with its own model name
            sent = files_of(s.fake.state).files[batch.input_file_id].content
            models = {json.loads(line)["body"]["model"] for line in sent.splitlines()}
            assert models == {"gpt-4o-mini"}
        batches_of(s.fake).advance(3)
        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "completed" and done.output_file_id
        out = (await s.oai.files.content(done.output_file_id)).content
        ids = {json.loads(line)["custom_id"] for line in out.splitlines()}
        assert ids == {"req-0", "req-1", "req-2"}
        assert (await s.oai.batches.list()).data[0].id == batch.id
        assert s.fake.records and all(r.model != "nat" for r in s.fake.records)
        for record in s.fake.records:  # always the configured key, never the master key
            got = record.headers.get("authorization") or record.headers.get("x-api-key")
            assert got is not None and UPSTREAM_KEY in got


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        (_jsonl("fast", 1) + _jsonl("smart", 1), 400, "more than one model"),
        (_jsonl("fast", 1, api_base="http://evil.example"), 400, "'api_base'"),
        (_jsonl("nope", 2), 404, "'nope'"),
        (b"not json\n", 400, "names a model"),
    ],
)
async def test_batch_inputs_the_proxy_refuses(
    tmp_path: Path, data: bytes, status: int, fragment: str
) -> None:
    async with stack(settings=_settings(tmp_path)) as s:
        upload = await s.oai.files.create(file=("in.jsonl", data), purpose="batch")
        with pytest.raises(openai.APIStatusError) as info:
            await s.oai.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        assert info.value.status_code == status
        assert fragment in info.value.message
        assert s.fake.records == []


async def _get(s: Stack, path: str) -> tuple[int, dict[str, Any]]:
    async with s.http.get(s.url + path, headers=s.auth()) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/..%2F..%2Fetc%2Fpasswd",
        "/v1/files/../../etc/passwd",
        "/v1/files/file-..",
        "/v1/files/file-abc%2F..%2F..%2Findex.sqlite3/content",
        "/v1/files/index.sqlite3/content",
        "/v1/files/file-abc.json",
        "/v1/batches/batch_..%2F..%2Fx",
        "/v1/batches/..",
        "/v1/batches/batch_x.sqlite3",
        "/v1/files?after=../x",
    ],
)
async def test_path_traversal_attempts_are_404(tmp_path: Path, path: str) -> None:
    async with stack(settings=_settings(tmp_path)) as s:
        status, body = await _get(s, path)
        assert status == 404, body
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert "passwd" not in json.dumps(body) or "No file" in body["error"]["message"]


async def test_upload_limits_and_bad_uploads(tmp_path: Path) -> None:
    async with stack(settings=_settings(tmp_path, max_file_size_mb=0.001)) as s:  # ~1 KB
        with pytest.raises(openai.APIStatusError) as info:
            await s.oai.files.create(file=("big.jsonl", b"x" * 4000), purpose="batch")
        assert info.value.status_code == 413
        with pytest.raises(openai.BadRequestError, match="purpose"):
            await s.oai.files.create(file=("a.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
        async with s.http.post(s.url + "/v1/files", json={}, headers=s.auth()) as resp:
            assert resp.status == 400
        with pytest.raises(openai.NotFoundError):
            await s.oai.batches.retrieve("batch_doesnotexist")
        with pytest.raises(openai.NotFoundError):
            await s.oai.files.content("file-doesnotexist")
