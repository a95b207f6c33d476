"""Vertex AI batch prediction through the fake: OpenAI-format JSONL translated and uploaded to
the fake's Cloud Storage, a batchPredictionJobs job created, polled, cancelled and listed, the
predictions read back from the output prefix as OpenAI lines (every custom_id exactly once),
all with a real service account's tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import chat_lines, results_of
from _google_creds import service_account
from salvo import _google_auth, batches
from salvo.testing import Behavior, FakeProvider
from salvo.testing._gcs import gcs_of
from salvo.testing._vertex import vertex_jobs_of

MODEL = "gemini-2.5-flash"


@pytest.fixture(autouse=True)
def _env(fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_google_auth, "_AUTHS", {})
    monkeypatch.setenv("SALVO_BATCH_DIR", str(tmp_path / "default-store"))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.url)
    monkeypatch.setenv("GCS_BUCKET_NAME", "salvo-bucket")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account(fake, tmp_path)))
    monkeypatch.delenv("VERTEXAI_PROJECT", raising=False)
    monkeypatch.delenv("VERTEXAI_LOCATION", raising=False)


@pytest.fixture
async def kw(fake: FakeProvider, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as client:
        yield {"client": client, "provider": "vertex_ai", "api_base": fake.vertex_base,
               "store_dir": tmp_path / "store"}  # fmt: skip


async def test_batch_prediction_end_to_end(fake: FakeProvider, kw: dict[str, Any]) -> None:
    fake.script(MODEL, [Behavior(text="a"), Behavior(status=500, error_message="boom"),
                        Behavior(text="c")])  # fmt: skip
    data = chat_lines(3, model=f"vertex_ai/{MODEL}").replace(b'"req-', b'"Req/')
    f = await batches.acreate_file(data, **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    assert (b.status, b.provider, b.request_counts.total) == ("validating", "vertex_ai", 3)
    gcs = gcs_of(fake)
    (bucket, name), obj = next(iter(gcs.objects.items()))
    assert bucket == "salvo-bucket" and name.endswith("/input.jsonl")
    sent = [json.loads(x)["request"] for x in obj.data.splitlines()]
    assert [x["labels"] for x in sent] == [{"salvo_line": str(i)} for i in range(3)]
    assert sent[0]["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    job = vertex_jobs_of(fake).jobs[next(iter(vertex_jobs_of(fake).jobs))]
    assert job.body["model"] == f"publishers/google/models/{MODEL}"
    assert job.body["inputConfig"]["gcsSource"]["uris"] == [f"gs://salvo-bucket/{name}"]
    upload = next(r for r in fake.records if r.provider == "gcs")
    assert upload.headers["authorization"].startswith("Bearer ya29.")

    vertex_jobs_of(fake).auto_advance = 1
    done = await batches.await_batch(b.id, poll_interval=0, **kw)
    assert done.status == "completed"
    assert done.request_counts == batches.RequestCounts(total=3, completed=2, failed=1)
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["Req/0", "Req/1", "Req/2"]
    by_id = {r.custom_id: r for r in results}
    assert by_id["Req/0"].response.choices[0].message.content == "a"
    assert by_id["Req/2"].response.choices[0].message.content == "c"
    assert by_id["Req/1"].error.message == "boom"
    assert (await batches.aretrieve_batch(b.id, **kw)).cost_usd > 0


async def test_broken_prediction_line_and_missing_rows(
    fake: FakeProvider, kw: dict[str, Any]
) -> None:
    f = await batches.acreate_file(chat_lines(3), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    vertex_jobs_of(fake).advance(2)
    gcs = gcs_of(fake)
    key = next(k for k in gcs.objects if k[1].endswith("predictions.jsonl"))
    rows = gcs.objects[key].data.splitlines(keepends=True)
    rows = [r for r in rows if b'"salvo_line":"1"' not in r] + [b"{not json\n"]
    gcs.put(*key, b"".join(rows), "application/jsonl")
    done = await batches.aretrieve_batch(b.id, **kw)
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1", "req-2"]
    lost = next(r for r in results if r.custom_id == "req-1")
    assert lost.error.code == "missing_result"


async def test_cancel_and_list(fake: FakeProvider, kw: dict[str, Any]) -> None:
    ids = []
    for _ in range(2):
        f = await batches.acreate_file(chat_lines(2), **kw)
        ids.append((await batches.acreate_batch(input_file_id=f.id, **kw)).id)
    c = await batches.acancel_batch(ids[0], **kw)
    assert c.status == "cancelling"
    vertex_jobs_of(fake).advance(1, name=next(iter(vertex_jobs_of(fake).jobs)))
    done = await batches.aretrieve_batch(ids[0], **kw)
    assert done.status == "cancelled"
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1"]
    assert {r.error.code for r in results} == {"batch_cancelled"}
    page = await batches.alist_batches(limit=1, **kw)
    assert [x.id for x in page.data] == [ids[1]] and page.has_more
    rest = await batches.alist_batches(limit=1, after=page.last_id, **kw)
    assert [x.id for x in rest.data] == [ids[0]] and rest.data[0].status == "cancelled"


async def test_embeddings_line_rejected_before_upload(
    fake: FakeProvider, kw: dict[str, Any]
) -> None:
    line = {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": "x"}}  # fmt: skip
    f = await batches.acreate_file(chat_lines(1) + json.dumps(line).encode() + b"\n", **kw)
    with pytest.raises(salvo.ConfigError, match="Line 2: vertex_ai has no batch for url"):
        await batches.acreate_batch(input_file_id=f.id, **kw)
    with pytest.raises(salvo.ConfigError, match="chat completions only"):
        await batches.acreate_batch(input_file_id=f.id, endpoint="/v1/embeddings", **kw)
    assert gcs_of(fake).objects == {} and not [r for r in fake.records if r.provider == "gcs"]


async def test_missing_bucket_fails_before_upload(
    fake: FakeProvider, kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GCS_BUCKET_NAME")
    f = await batches.acreate_file(chat_lines(1), **kw)
    with pytest.raises(salvo.ConfigError, match="GCS_BUCKET_NAME"):
        await batches.acreate_batch(input_file_id=f.id, **kw)
    assert not [r for r in fake.records if r.provider in ("gcs", "vertex_ai")]


async def test_storage_rejects_a_stale_token_then_accepts_a_fresh_one(
    fake: FakeProvider, kw: dict[str, Any]
) -> None:
    from salvo.testing._google_oauth import google_auth_of

    f = await batches.acreate_file(chat_lines(1), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    vertex_jobs_of(fake).advance(2)
    google_auth_of(fake).expire_tokens()
    done = await batches.aretrieve_batch(b.id, **kw)
    results = await results_of(done, kw)
    assert [r.custom_id for r in results] == ["req-0"] and results[0].ok
    assert google_auth_of(fake).issued == 2


async def test_submit_batch_runs_natively_on_vertex_unless_the_base_is_custom(
    fake: FakeProvider, tmp_path: Path
) -> None:
    from salvo.batches._api import _target

    async with salvo.Client() as client:
        provider, model, over = _target(client, f"vertex_ai/{MODEL}", {})
        assert (provider, model) == ("vertex_ai", MODEL)
        assert over["api_base"].startswith("https://us-central1-aiplatform.googleapis.com/v1/")
        assert _target(client, f"vertex_ai/{MODEL}", {"api_base": fake.url})[0] == "local"
        async with salvo.Client(config={"model_list": [{"model_name": "v", "params": {
                "model": f"vertex_ai/{MODEL}", "api_base": fake.vertex_base,
                "batch": "native"}}]}) as configured:  # fmt: skip
            msgs = [[{"role": "user", "content": "hi"}]]
            b = await batches.asubmit_batch("v", msgs, client=configured, store_dir=tmp_path)
        assert b.provider == "vertex_ai" and b.request_counts.total == 1


async def test_a_failed_job_reports_why_and_every_request_fails(
    fake: FakeProvider, kw: dict[str, Any]
) -> None:
    f = await batches.acreate_file(chat_lines(2), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    gcs_of(fake).objects.clear()  # the input vanished before the job ran
    vertex_jobs_of(fake).advance(2)
    done = await batches.aretrieve_batch(b.id, **kw)
    assert done.status == "failed" and done.failed_at is not None
    assert done.errors is not None and "does not exist" in done.errors.data[0].message
    results = await results_of(done, kw)
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1"]
    assert {r.error.code for r in results} == {"batch_failed"}


async def test_results_ordered_in_input_order(fake: FakeProvider, kw: dict[str, Any]) -> None:
    f = await batches.acreate_file(chat_lines(6), **kw)
    b = await batches.acreate_batch(input_file_id=f.id, **kw)
    vertex_jobs_of(fake).advance(2)
    done = await batches.aretrieve_batch(b.id, **kw)
    async with batches.abatch_results(done, ordered=True, **kw) as rs:
        ids = [r.custom_id async for r in rs]
    assert ids == [f"req-{i}" for i in range(6)]


async def test_control_endpoints_drive_the_google_fake_from_outside(tmp_path: Path) -> None:
    """What a test talking to ``python -m salvo.testing`` in another process would do."""
    import aiohttp
    from cryptography.hazmat.primitives.asymmetric import rsa

    from salvo.testing._google_oauth import google_auth_of

    async with FakeProvider() as fake, aiohttp.ClientSession() as http:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = key.public_key().public_numbers().n
        body = {"key_id": "remote", "email": "r@x.iam.gserviceaccount.com", "n": str(n)}
        async with http.post(f"{fake.url}/_fake/google/service_accounts", json=body) as r:
            assert r.status == 200
        assert google_auth_of(fake).accounts["remote"].n == n
        async with http.post(f"{fake.url}/_fake/vertex/jobs/auto", json={"steps": 2}) as r:
            assert r.status == 200
        async with http.post(f"{fake.url}/_fake/gemini/batches/advance",
                             json={"name": "batches/none"}) as r:  # fmt: skip
            assert r.status == 404
        async with http.post(f"{fake.url}/_fake/google/service_accounts", json={"n": 1}) as r:
            assert r.status == 400
        assert vertex_jobs_of(fake).auto_advance == 2
