"""The fake's Mistral files and batch jobs, driven by the official ``mistralai`` client (a dev
extra), so the fake cannot drift from the wire format the SDK's pydantic models check."""

from __future__ import annotations

import json

import pytest

from salvo.testing import Behavior, FakeProvider
from salvo.testing._jobs import jobs_of

mistralai = pytest.importorskip("mistralai.client")


async def test_the_official_client_runs_a_job_on_the_fake(fake: FakeProvider) -> None:
    fake.script("mistral-small-latest", lambda n: Behavior(status=429) if n == 1 else Behavior())
    lines = [
        {"custom_id": str(i), "body": {"messages": [{"role": "user", "content": f"q{i}"}]}}
        for i in range(3)
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    async with mistralai.Mistral(api_key="k", server_url=fake.mistral_server) as client:
        up = await client.files.upload_async(
            file={"file_name": "in.jsonl", "content": content}, purpose="batch"
        )
        assert (up.purpose, up.size_bytes, up.sample_type) == ("batch", len(content),
                                                               "batch_request")  # fmt: skip
        got = await client.files.retrieve_async(file_id=up.id)
        assert got.id == up.id and got.deleted is False
        listed = await client.files.list_async(page=0, page_size=10)
        assert [f.id for f in listed.data] == [up.id] and listed.total == 1

        job = await client.batch.jobs.create_async(
            endpoint="/v1/chat/completions",
            input_files=[up.id],
            model="mistral-small-latest",
            metadata={"job": "t"},
        )
        assert (job.status, job.total_requests, job.metadata) == ("QUEUED", 3, {"job": "t"})
        jobs_of(fake, "mistral").advance(2)
        done = await client.batch.jobs.get_async(job_id=job.id)
        assert done.status == "SUCCESS"
        assert (done.succeeded_requests, done.failed_requests) == (2, 1)
        assert done.output_file and done.error_file and done.completed_at
        out = await client.files.download_async(file_id=done.output_file)
        results = [json.loads(x) for x in (await out.aread()).splitlines()]
        assert sorted(r["custom_id"] for r in results) == ["0", "2"]
        assert all(r["response"]["status_code"] == 200 for r in results)

        page = await client.batch.jobs.list_async(page=0, page_size=10)
        assert page.total == 1 and page.data and page.data[0].id == job.id

        second = await client.batch.jobs.create_async(
            endpoint="/v1/chat/completions", input_files=[up.id], model="mistral-small-latest"
        )
        cancelled = await client.batch.jobs.cancel_async(job_id=second.id)
        assert cancelled.status == "CANCELLATION_REQUESTED"
        jobs_of(fake, "mistral").advance(1, second.id)
        assert (await client.batch.jobs.get_async(job_id=second.id)).status == "CANCELLED"

        deleted = await client.files.delete_async(file_id=up.id)
        assert deleted.deleted is True
