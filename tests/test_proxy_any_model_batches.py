"""``allow_any_model: true`` applies to batches as it does to chat: a batch whose lines name a
provider model the config does not list runs (natively when the provider has a batch API, on
the local engine otherwise); without the setting it is 404 ``model_not_found``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from salvo.testing import FakeProvider
from test_proxy_batches import _job_finished, _settings
from test_proxy_support import _jsonl, stack


def _allow(monkeypatch: pytest.MonkeyPatch) -> Any:
    def configure(fake: FakeProvider, config: dict[str, Any]) -> None:
        config["salvo_settings"] = {"allow_any_model": True}
        monkeypatch.setenv("OPENAI_API_KEY", "sk-upstream-any")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base)
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_BASE", fake.openai_base)
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-compatible")

    return configure


async def test_refused_without_allow_any_model(tmp_path: Path) -> None:
    async with stack(settings=_settings(tmp_path)) as s:
        upload = await s.oai.files.create(
            file=("in.jsonl", _jsonl("gpt-4o-mini", 2)), purpose="batch"
        )
        with pytest.raises(openai.NotFoundError) as info:
            await s.oai.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        assert info.value.code == "model_not_found"
        assert s.fake.records == []


async def test_batch_of_an_unlisted_provider_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the base URL is not OpenAI's own (the fake's), so it runs on the local engine, with the
    # key and base from the environment, as a chat call on the same name would
    async with stack(settings=_settings(tmp_path), configure=_allow(monkeypatch)) as s:
        upload = await s.oai.files.create(
            file=("in.jsonl", _jsonl("gpt-4o-mini", 3)), purpose="batch"
        )
        batch = await s.oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.model == "gpt-4o-mini"
        await _job_finished(batch.id)
        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "completed" and done.output_file_id
        out = (await s.oai.files.content(done.output_file_id)).content
        assert {json.loads(x)["custom_id"] for x in out.splitlines()} == {
            "req-0",
            "req-1",
            "req-2",
        }
        assert len(s.fake.records) == 3
        for record in s.fake.records:  # the upstream key from the environment
            assert record.headers.get("authorization") == "Bearer sk-upstream-any"


async def test_local_batch_of_an_unlisted_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(settings=_settings(tmp_path), configure=_allow(monkeypatch)) as s:
        upload = await s.oai.files.create(
            file=("in.jsonl", _jsonl("openai_compatible/local-model", 2)), purpose="batch"
        )
        batch = await s.oai.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        await _job_finished(batch.id)
        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "completed" and done.request_counts is not None
        assert done.request_counts.completed == 2
        assert {r.model for r in s.fake.records} == {"local-model"}


async def test_unreachable_model_is_still_404(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(settings=_settings(tmp_path), configure=_allow(monkeypatch)) as s:
        upload = await s.oai.files.create(file=("in.jsonl", _jsonl("nope/x", 1)), purpose="batch")
        with pytest.raises(openai.NotFoundError, match="Unknown provider"):
            await s.oai.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        assert s.fake.records == []
