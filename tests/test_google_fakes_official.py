"""The Google fakes against Google's own clients: google-genai (Gemini Batch Mode and Files
API) and google-cloud-storage (the Cloud Storage JSON API via STORAGE_EMULATOR_HOST), so the
fakes cannot drift from the real wire formats. The clients are blocking, so each runs in a
worker thread while the fake answers on the test's loop."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from salvo.testing import Behavior, FakeProvider
from salvo.testing._gcs import gcs_of
from salvo.testing._gemini_batches import gemini_batches_of

genai = pytest.importorskip("google.genai")
storage = pytest.importorskip("google.cloud.storage")
from google.genai import types  # noqa: E402


def _client(fake: FakeProvider) -> object:
    return genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(base_url=fake.url, api_version="v1beta"),
    )


async def test_genai_inline_batch_create_get_list_cancel() -> None:
    async with FakeProvider() as fake:
        fake.script(
            "gemini-2.5-flash",
            [Behavior(text="first answer"), Behavior(status=429), Behavior(text="third")],
        )
        client = _client(fake)
        reqs = [
            types.InlinedRequest(
                contents=[types.Content(role="user", parts=[types.Part(text=f"q{i}")])],
                metadata={"key": f"q{i}"},
            )
            for i in range(3)
        ]
        job = await asyncio.to_thread(
            client.batches.create,
            model="gemini-2.5-flash",
            src=reqs,
            config={"display_name": "nightly"},
        )
        assert job.name.startswith("batches/")
        assert job.state == types.JobState.JOB_STATE_PENDING
        gemini_batches_of(fake).advance(2)
        job = await asyncio.to_thread(client.batches.get, name=job.name)
        assert job.state == types.JobState.JOB_STATE_SUCCEEDED
        assert job.display_name == "nightly"
        inl = job.dest.inlined_responses
        assert [r.metadata for r in inl] == [{"key": "q0"}, {"key": "q1"}, {"key": "q2"}]
        assert inl[0].response.text == "first answer"
        assert inl[1].error is not None and inl[1].error.code == 8
        assert inl[2].response.text == "third"

        other = await asyncio.to_thread(
            client.batches.create, model="gemini-2.5-flash", src=reqs[:1]
        )
        await asyncio.to_thread(client.batches.cancel, name=other.name)
        still = await asyncio.to_thread(client.batches.get, name=other.name)
        assert still.state == types.JobState.JOB_STATE_PENDING  # no "cancelling" on Gemini
        gemini_batches_of(fake).advance(1)
        done = await asyncio.to_thread(client.batches.get, name=other.name)
        assert done.state == types.JobState.JOB_STATE_CANCELLED

        names = await asyncio.to_thread(
            lambda: [b.name for b in client.batches.list(config={"page_size": 1})]
        )
        assert names == [other.name, job.name]


async def test_genai_file_upload_batch_and_download(tmp_path: Path) -> None:
    async with FakeProvider() as fake:
        fake.script("gemini-2.5-flash", Behavior(text="from a file"))
        client = _client(fake)
        path = tmp_path / "requests.jsonl"
        lines = [
            {"key": f"k{i}", "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}
            for i in range(2)
        ]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        uploaded = await asyncio.to_thread(
            client.files.upload, file=str(path), config={"mime_type": "application/jsonl"}
        )
        assert uploaded.name.startswith("files/")
        assert uploaded.size_bytes == path.stat().st_size
        # the chunks went to the session URL without the key
        chunk = [
            r for r in fake.records if "upload_id=" in r.path or r.path == "/upload/v1beta/files"
        ]
        assert len(chunk) >= 2 and "x-goog-api-key" not in chunk[-1].headers
        job = await asyncio.to_thread(
            client.batches.create, model="gemini-2.5-flash", src=uploaded.name
        )
        gemini_batches_of(fake).advance(2)
        job = await asyncio.to_thread(client.batches.get, name=job.name)
        assert job.state == types.JobState.JOB_STATE_SUCCEEDED
        raw = await asyncio.to_thread(client.files.download, file=job.dest.file_name)
        out = [json.loads(x) for x in raw.splitlines()]
        assert [x["key"] for x in out] == ["k0", "k1"]
        assert out[0]["response"]["candidates"][0]["content"]["parts"][0]["text"] == "from a file"


async def test_google_cloud_storage_against_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeProvider() as fake:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.url)

        def run() -> tuple[list[str], bytes, bytes]:
            client = storage.Client(project="test-project")
            bucket = client.bucket("salvo-test")
            bucket.blob("in/a.jsonl").upload_from_string(
                b'{"a": 1}\n', content_type="application/jsonl"
            )
            bucket.blob("in/b.jsonl").upload_from_string(b"second")
            bucket.blob("other/c").upload_from_string(b"x")
            names = [b.name for b in client.list_blobs("salvo-test", prefix="in/")]
            data = bucket.blob("in/a.jsonl").download_as_bytes()
            blob = bucket.get_blob("in/b.jsonl")
            assert blob is not None and blob.size == 6
            big = bucket.blob("big.bin", chunk_size=256 * 1024)  # a resumable upload in chunks
            payload = bytes(range(256)) * 2600
            big.upload_from_file(io.BytesIO(payload))  # size unknown: resumable
            assert bucket.blob("big.bin").download_as_bytes() == payload
            return names, data, blob.download_as_bytes()

        names, data, second = await asyncio.to_thread(run)
        ranges = [r.headers.get("content-range") for r in fake.records if r.provider == "gcs"]
        assert len([x for x in ranges if x]) == 3  # 665,600 bytes in 256 KiB chunks
        assert names == ["in/a.jsonl", "in/b.jsonl"]
        assert data == b'{"a": 1}\n' and second == b"second"
        assert gcs_of(fake).get("salvo-test", "in/a.jsonl").content_type == "application/jsonl"


async def test_genai_on_vertex_with_google_auth_tokens(tmp_path: Path) -> None:
    """google-auth's own refresh (its blocking transport, in a thread) against the fake's
    token endpoint, then google-genai's Vertex calls and batch prediction jobs."""
    from google.oauth2 import service_account as sa

    from _google_creds import service_account
    from salvo.testing._google_oauth import google_auth_of
    from salvo.testing._vertex import vertex_jobs_of

    async with FakeProvider() as fake:
        fake.script("gemini-2.5-flash", Behavior(text="vertex says hi"))
        path = service_account(fake, tmp_path)
        creds = sa.Credentials.from_service_account_file(
            str(path), scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        client = genai.Client(
            vertexai=True, project="test-project", location="us-central1", credentials=creds,
            http_options=types.HttpOptions(base_url=fake.url, api_version="v1"),
        )  # fmt: skip
        resp = await asyncio.to_thread(
            client.models.generate_content, model="gemini-2.5-flash", contents="hi"
        )
        assert resp.text == "vertex says hi"
        assert google_auth_of(fake).issued == 1
        job = await asyncio.to_thread(
            client.batches.create, model="gemini-2.5-flash",
            src="gs://bucket/in/requests.jsonl", config={"dest": "gs://bucket/out"},
        )  # fmt: skip
        assert job.state == types.JobState.JOB_STATE_PENDING
        await asyncio.to_thread(client.batches.cancel, name=job.name)
        vertex_jobs_of(fake).advance(1)
        got = await asyncio.to_thread(client.batches.get, name=job.name)
        assert got.state == types.JobState.JOB_STATE_CANCELLED


async def test_genai_async_batch_embed(recwarn: pytest.WarningsRecorder) -> None:
    async with FakeProvider() as fake:
        client = _client(fake)
        src = types.EmbeddingsBatchJobSource(
            inlined_requests=types.EmbedContentBatch(
                contents=["first text", "second text"],
                config=types.EmbedContentConfig(output_dimensionality=4),
            )
        )
        job = await asyncio.to_thread(
            client.batches.create_embeddings, model="text-embedding-004", src=src
        )
        gemini_batches_of(fake).advance(2)
        job = await asyncio.to_thread(client.batches.get, name=job.name)
        assert job.state == types.JobState.JOB_STATE_SUCCEEDED
        got = job.dest.inlined_embed_content_responses
        assert len(got) == 2 and len(got[0].response.embedding.values) == 4
