"""LiteLLM's documented batching examples, ported by changing one import
(``import salvo as litellm``), run against the fake; the fake's records prove that no
LiteLLM-only argument reached the wire."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import salvo as litellm
from _thread_fake import ThreadFake, thread_fake
from salvo.testing import Behavior, FakeProvider
from salvo.testing import _batches as fake_batches

#: Arguments that configure LiteLLM (or salvo) and must never be sent to a provider.
LITELLM_ONLY = {
    "num_retries",
    "request_timeout",
    "max_workers",
    "mock_response",
    "fallbacks",
    "drop_params",
    "custom_llm_provider",
    "input_cost_per_token",
    "output_cost_per_token",
    "batch_enabled",
    "caching",
    "api_base",
    "api_key",
}


def wire_keys(records: list[Any]) -> set[str]:
    keys: set[str] = set()
    for rec in records:
        if isinstance(rec.body, dict):
            keys |= set(rec.body)
    return keys


@pytest.fixture
def tfake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadFake]:
    with thread_fake() as tf:
        base = tf.fake.url
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        monkeypatch.setenv("OPENAI_API_BASE", f"{base}/v1")  # LiteLLM's name
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
        monkeypatch.setenv("ANTHROPIC_API_BASE", tf.fake.anthropic_base)
        monkeypatch.delenv("CO_API_KEY", raising=False)
        monkeypatch.setenv("COHERE_API_KEY", "co-key")  # LiteLLM's name
        monkeypatch.setenv("COHERE_API_BASE", tf.fake.cohere_base)
        yield tf


def test_batch_completion(tfake: ThreadFake) -> None:
    # docs.litellm.ai/docs/completion/batching: many prompts to one model
    responses = litellm.batch_completion(
        model="claude-2",
        messages=[
            [{"role": "user", "content": "good morning? "}],
            [{"role": "user", "content": "what's the time? "}],
        ],
        max_workers=2,
        num_retries=1,
        request_timeout=30,
    )
    assert len(responses) == 2
    for r in responses:
        assert not isinstance(r, Exception)
        assert r["choices"][0]["message"]["content"]
    recs = tfake.fake.records
    assert len(recs) == 2 and {r.provider for r in recs} == {"anthropic"}
    assert not (LITELLM_ONLY & wire_keys(recs)), wire_keys(recs)


def test_batch_completion_models(tfake: ThreadFake) -> None:
    # the fastest of several models
    response = litellm.batch_completion_models(
        models=["gpt-3.5-turbo", "claude-instant-1.2", "command-nightly"],
        messages=[{"role": "user", "content": "Hey, how's it going"}],
        num_retries=0,
    )
    assert response["choices"][0]["message"]["content"]
    assert response.get("usage") is not None
    recs = tfake.fake.records
    assert {r.provider for r in recs} <= {"openai", "anthropic", "cohere"}
    assert not (LITELLM_ONLY & wire_keys(recs)), wire_keys(recs)


def test_batch_completion_models_all_responses(tfake: ThreadFake) -> None:
    responses = litellm.batch_completion_models_all_responses(
        models=["gpt-3.5-turbo", "claude-instant-1.2", "command-nightly"],
        messages=[{"role": "user", "content": "Hey, how's it going"}],
        max_tokens=10,
        caching=False,
    )
    assert len(responses) == 3
    assert all(not isinstance(r, Exception) for r in responses)
    recs = tfake.fake.records
    assert sorted(r.provider for r in recs) == ["anthropic", "cohere", "openai"]
    assert not (LITELLM_ONLY & wire_keys(recs)), wire_keys(recs)
    assert all(
        (r.body.get("max_tokens") or r.body.get("max_completion_tokens")) == 10 for r in recs
    )


def test_mock_response_needs_no_network() -> None:
    # docs.litellm.ai/docs/completion/mock_requests
    response = litellm.completion(
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "This is a test request"}],
        mock_response="It's simple to use and easy to get started",
    )
    assert response["choices"][0]["message"]["content"] == (
        "It's simple to use and easy to get started"
    )
    assert json.loads(response.model_dump_json())["choices"][0]["finish_reason"] == "stop"


# -- files and batches, as LiteLLM's batches page writes them -------------------------------------


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SALVO_BATCH_DIR", str(tmp_path / "store"))
    return tmp_path / "store"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        monkeypatch.setenv("OPENAI_API_BASE", server.openai_base)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
        monkeypatch.setenv("ANTHROPIC_API_BASE", server.anthropic_base)
        yield server


def batch_file(path: Path, model: str) -> Path:
    lines = [
        {
            "custom_id": f"request-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": model,
                "messages": [{"role": "user", "content": f"Hello world {i}!"}],
                "max_tokens": 10,
            },
        }
        for i in range(3)
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("provider", "model"), [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-latest")]
)
async def test_files_and_batches(
    fake: FakeProvider, tmp_path: Path, provider: str, model: str
) -> None:
    path = batch_file(tmp_path / "openai_batch_completions.jsonl", model)
    with open(path, "rb") as f:
        file_obj = await litellm.acreate_file(file=f, purpose="batch", custom_llm_provider=provider)
    assert file_obj["id"] == file_obj.id and file_obj.get("purpose") == "batch"
    create_batch_response = await litellm.acreate_batch(
        completion_window="24h",
        endpoint="/v1/chat/completions",
        input_file_id=file_obj.id,
        custom_llm_provider=provider,
        metadata={"key1": "value1", "key2": "value2"},
    )
    assert create_batch_response.model_dump()["metadata"] == {"key1": "value1", "key2": "value2"}
    fake_batches.batches_of(fake).advance()
    retrieved_batch = await litellm.aretrieve_batch(
        batch_id=create_batch_response.id, custom_llm_provider=provider
    )
    assert retrieved_batch["id"] == create_batch_response.id
    assert json.loads(retrieved_batch.json())["request_counts"]["total"] == 3
    file_content = await litellm.afile_content(file_id=file_obj.id, custom_llm_provider=provider)
    assert file_content.content == path.read_bytes()
    assert file_content.read() == path.read_bytes() and file_content.text == path.read_text()
    assert [json.loads(x)["custom_id"] for x in file_content.iter_lines()] == [
        "request-0",
        "request-1",
        "request-2",
    ]
    list_batches_response = await litellm.alist_batches(custom_llm_provider=provider, limit=2)
    assert create_batch_response.id in [b["id"] for b in list_batches_response.data]
    # on the wire: only the provider's own fields
    for rec in fake.records:
        if isinstance(rec.body, dict):
            assert not (LITELLM_ONLY & set(rec.body)), (rec.path, rec.body)
    # what the provider was asked to run: the lines' bodies, nothing of LiteLLM's
    sent = fake_batches.batches_of(fake).get(create_batch_response.id).requests
    assert len(sent) == 3
    assert all(not (LITELLM_ONLY & set(body)) for _, _, body in sent)


async def test_custom_llm_provider_conflicts_and_garbage(fake: FakeProvider) -> None:
    with pytest.raises(litellm.ConfigError, match="disagree"):
        await litellm.alist_batches(provider="anthropic", custom_llm_provider="openai")
    with pytest.raises(litellm.ConfigError, match="custom_llm_provider"):
        await litellm.alist_batches(custom_llm_provider=3)
    with pytest.raises(litellm.ConfigError, match="bedrock"):
        await litellm.aretrieve_batch(batch_id="b", custom_llm_provider="bedrock")
    assert fake.records == []


async def test_submit_batch_keeps_litellm_arguments_off_the_lines(fake: FakeProvider) -> None:
    fake.script("gpt-4o-mini", Behavior(text="x"))
    batch = await litellm.asubmit_batch(
        "gpt-4o-mini",
        [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]],
        custom_llm_provider="openai",
        num_retries=2,
        caching=True,
        temperature=0.1,
    )
    fake_batches.batches_of(fake).advance()
    sent = fake_batches.batches_of(fake).get(batch.id).requests
    assert [body["temperature"] for _, _, body in sent] == [0.1, 0.1]
    assert all(not (LITELLM_ONLY & set(body)) for _, _, body in sent)


async def test_files_functions_consume_litellm_arguments_and_name_strangers(
    fake: FakeProvider, tmp_path: Path
) -> None:
    page = await litellm.alist_batches(custom_llm_provider="openai", caching=True, num_retries=1)
    assert page.data == []
    with pytest.raises(litellm.ConfigError, match="'bogus'"):
        await litellm.alist_files(custom_llm_provider="openai", bogus=1)
    assert [r.path for r in fake.records] == ["/v1/batches"]  # the refused call sent nothing
