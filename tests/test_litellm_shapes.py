"""Responses behave like LiteLLM's and openai's (dict access, model_dump, json), and LiteLLM's
environment variable names and provider names are understood."""

from __future__ import annotations

import json

import msgspec
import pytest

import salvo
from salvo._models import resolve_deployment
from salvo.batches import Batch, FileObject
from salvo.batches._types import FileContent

BODY = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}


def test_model_response_dict_access() -> None:
    resp = msgspec.json.decode(json.dumps(BODY), type=salvo.ModelResponse)
    assert resp["choices"][0]["message"]["content"] == "hi"
    assert resp.get("usage")["total_tokens"] == 3
    assert resp.get("nope") is None and resp.get("nope", 5) == 5
    assert "usage" in resp and "nope" not in resp
    for bad in ("nope", 0, None):
        with pytest.raises(KeyError):
            resp[bad]  # type: ignore[index]
    assert resp.model_dump()["choices"][0]["message"]["content"] == "hi"
    assert json.loads(resp.model_dump_json()) == json.loads(resp.json())
    assert json.loads(resp.json())["usage"]["prompt_tokens"] == 1
    assert dict(resp)["id"] == "c1"  # keys() + __getitem__


def test_chunk_embedding_batch_file_dict_access() -> None:
    chunk = salvo.ChatCompletionChunk(choices=[salvo.ChunkChoice(delta=salvo.Delta(content="x"))])
    assert chunk["choices"][0]["delta"]["content"] == "x"
    emb = salvo.EmbeddingResponse(data=[salvo.Embedding(embedding=[0.5])])
    assert emb["data"][0]["embedding"] == [0.5] and emb.model_dump()["object"] == "list"
    batch = Batch(id="b", metadata={"k": "v"})
    assert batch["request_counts"]["total"] == 0 and batch.get("metadata") == {"k": "v"}
    assert json.loads(batch.model_dump_json())["id"] == "b"
    fo = FileObject(id="f")
    assert fo["id"] == "f" and json.loads(fo.json())["purpose"] == "batch"


def test_file_content_is_bytes_and_a_binary_response(tmp_path: pytest.TempPathFactory) -> None:
    fc = FileContent(b'{"a": 1}\n{"a": 2}\r\n')
    assert fc == b'{"a": 1}\n{"a": 2}\r\n' and isinstance(fc, bytes)
    assert fc.content == fc.read() == bytes(fc)
    assert [json.loads(x)["a"] for x in fc.iter_lines()] == [1, 2]
    assert b"".join(fc.iter_bytes(3)) == bytes(fc)
    assert list(FileContent(b"").iter_bytes()) == [] and list(FileContent(b"").iter_lines()) == []
    with pytest.raises(UnicodeDecodeError):
        _ = FileContent(b"\xff\xfe\xfa").text


ENV_NAMES = (
    "CO_API_KEY", "COHERE_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "TOGETHER_API_KEY",
    "TOGETHERAI_API_KEY", "FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "AZURE_API_KEY",
    "AZURE_OPENAI_API_KEY", "AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL",
    "OPENAI_API_BASE", "OPENAI_API_KEY",
)  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("model", "fallback"),
    [
        ("cohere/command-r", "COHERE_API_KEY"),
        ("gemini/gemini-2.0-flash", "GOOGLE_API_KEY"),
        ("together/meta-llama/x", "TOGETHERAI_API_KEY"),
        ("together_ai/meta-llama/x", "TOGETHERAI_API_KEY"),
        ("fireworks_ai/accounts/f/models/x", "FIREWORKS_AI_API_KEY"),
    ],
)
def test_litellm_key_names_are_fallbacks(
    clean_env: pytest.MonkeyPatch, model: str, fallback: str
) -> None:
    clean_env.setenv(fallback, "from-litellm-name")
    assert resolve_deployment(model).endpoint.api_key == "from-litellm-name"


def test_salvo_name_wins_and_empty_is_reported(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CO_API_KEY", "primary")
    clean_env.setenv("COHERE_API_KEY", "secondary")
    assert resolve_deployment("cohere/command-r").endpoint.api_key == "primary"
    clean_env.delenv("COHERE_API_KEY")
    clean_env.setenv("CO_API_KEY", "")
    with pytest.raises(salvo.ConfigError, match="CO_API_KEY is set but empty"):
        resolve_deployment("cohere/command-r")
    clean_env.delenv("CO_API_KEY")
    with pytest.raises(salvo.ConfigError, match=r"CO_API_KEY \(or COHERE_API_KEY\)"):
        resolve_deployment("cohere/command-r")


def test_azure_and_openai_base_names(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AZURE_OPENAI_API_KEY", "az")
    clean_env.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com/")
    ep = resolve_deployment("azure/my-deploy").endpoint
    assert (ep.api_key, ep.api_base) == ("az", "https://res.openai.azure.com")
    clean_env.setenv("OPENAI_API_KEY", "k")
    clean_env.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")
    assert resolve_deployment("gpt-4o").endpoint.api_base == "http://127.0.0.1:9/v1"
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")  # the SDK's name wins
    assert resolve_deployment("gpt-4o").endpoint.api_base == "http://127.0.0.1:8/v1"


@pytest.mark.parametrize("provider", ["bedrock", "sagemaker", "huggingface", "watsonx"])
def test_missing_providers_say_so_and_what_instead(provider: str) -> None:
    with pytest.raises(salvo.ConfigError) as info:
        resolve_deployment(f"{provider}/some-model")
    msg = str(info.value)
    assert f"salvo has no {provider!r} provider yet" in msg
    assert "openai_compatible/" in msg or "anthropic/" in msg


def test_custom_llm_provider_on_a_call(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "k")
    dep = resolve_deployment("my-model", overrides={"custom_llm_provider": "openai"})
    assert (dep.provider, dep.endpoint.model) == ("openai", "my-model")
    dep = resolve_deployment("openai/x", overrides={"custom_llm_provider": "openai"})
    assert dep.endpoint.model == "x"
    with pytest.raises(salvo.ConfigError, match="custom_llm_provider"):
        resolve_deployment("x", overrides={"custom_llm_provider": 7})
