"""The proxy's ``batch: native`` for Mistral, Groq and Together: an alias on one of them runs
its batches on the provider's own batch API (through the fakes), driven by the OpenAI SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from salvo.testing import FakeProvider
from salvo.testing._batches import batches_of
from salvo.testing._jobs import jobs_of
from test_batch_jobs import MODELS, base
from test_proxy_batches import _settings
from test_proxy_support import UPSTREAM_KEY, _jsonl, stack


@pytest.mark.parametrize("provider", ["mistral", "groq", "together"])
async def test_native_batches_on_the_new_providers(tmp_path: Path, provider: str) -> None:
    def native(fake: FakeProvider, config: dict[str, Any]) -> None:
        params = {"model": f"{provider}/{MODELS[provider]}", "api_base": base(fake, provider),
                  "api_key": UPSTREAM_KEY, "batch": "native"}  # fmt: skip
        config["model_list"].append({"model_name": "nat", "params": params})

    async with stack(settings=_settings(tmp_path), configure=native) as s:
        upload = await s.oai.files.create(
            file=("in.jsonl", _jsonl("nat", 3, max_tokens=20)), purpose="batch"
        )
        batch = await s.oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.status == "validating"
        if provider == "groq":
            batches_of(s.fake).advance(3)
        else:
            jobs = jobs_of(s.fake, provider)
            sent = jobs.files[jobs.jobs[batch.id].input_file].content
            first = json.loads(sent.splitlines()[0])
            assert set(first) == {"custom_id", "body"}  # translated for the provider
            jobs.advance(2)
        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "completed" and done.output_file_id
        assert done.request_counts is not None and done.request_counts.total == 3
        out = (await s.oai.files.content(done.output_file_id)).content
        ids = sorted(json.loads(line)["custom_id"] for line in out.splitlines())
        assert ids == ["req-0", "req-1", "req-2"]
        assert (await s.oai.batches.list()).data[0].id == batch.id
        second = await s.oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert (await s.oai.batches.cancel(second.id)).status == "cancelling"
        assert s.fake.records and all(r.model != "nat" for r in s.fake.records)
        for record in s.fake.records:  # always the configured key, never the master key
            assert UPSTREAM_KEY in record.headers.get("authorization", "")


async def test_a_batch_the_provider_cannot_take_is_a_400_before_upload(tmp_path: Path) -> None:
    import openai

    def native(fake: FakeProvider, config: dict[str, Any]) -> None:
        params = {"model": "together/m", "api_base": fake.together_base,
                  "api_key": UPSTREAM_KEY, "batch": "native"}  # fmt: skip
        config["model_list"].append({"model_name": "nat", "params": params})

    async with stack(settings=_settings(tmp_path), configure=native) as s:
        lines = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                  "body": {"model": "nat", "input": "x"}} for i in range(2)]  # fmt: skip
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        upload = await s.oai.files.create(file=("in.jsonl", data), purpose="batch")
        with pytest.raises(openai.BadRequestError) as info:
            await s.oai.batches.create(
                input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
            )
        assert "Line 1: together has no batch for url '/v1/embeddings'" in str(info.value)
        assert not [r for r in s.fake.records if r.path.startswith("/together")]


async def test_a_cancelled_native_batch_reports_every_custom_id(tmp_path: Path) -> None:
    def native(fake: FakeProvider, config: dict[str, Any]) -> None:
        params = {"model": "mistral/mistral-small-latest", "api_base": fake.mistral_base,
                  "api_key": UPSTREAM_KEY, "batch": "native"}  # fmt: skip
        config["model_list"].append({"model_name": "nat", "params": params})

    async with stack(settings=_settings(tmp_path), configure=native) as s:
        upload = await s.oai.files.create(file=("in.jsonl", _jsonl("nat", 4)), purpose="batch")
        batch = await s.oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert (await s.oai.batches.cancel(batch.id)).status == "cancelling"
        jobs_of(s.fake, "mistral").advance(1)
        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "cancelled" and done.error_file_id
        ids = []
        for file_id in (done.output_file_id, done.error_file_id):
            if file_id:
                content = (await s.oai.files.content(file_id)).content
                ids += [json.loads(line)["custom_id"] for line in content.splitlines()]
        assert sorted(ids) == ["req-0", "req-1", "req-2", "req-3"]
