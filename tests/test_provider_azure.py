"""The Azure OpenAI adapter: classic and v1 URLs, auth headers, stream quirks, resolution."""

from __future__ import annotations

import json

import pytest

import salvo
from salvo._http import SSEDecoder
from salvo._models import resolve_deployment
from salvo.providers import Endpoint, get_provider
from salvo.providers.azure import DEFAULT_API_VERSION, AzureAdapter

RESOURCE = "https://my-res.openai.azure.com"
ADAPTER = AzureAdapter()


def ep(base: str = RESOURCE, version: str | None = "2024-10-21") -> Endpoint:
    return Endpoint("azure", "gpt4o-prod", base, "az-key", api_version=version)


@pytest.mark.parametrize(
    ("base", "version", "chat", "embed"),
    [
        (
            RESOURCE,
            "2024-10-21",
            f"{RESOURCE}/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
            f"{RESOURCE}/openai/deployments/gpt4o-prod/embeddings?api-version=2024-10-21",
        ),
        (
            f"{RESOURCE}/openai",
            "2025-01-01-preview",
            f"{RESOURCE}/openai/deployments/gpt4o-prod/chat/completions"
            "?api-version=2025-01-01-preview",
            f"{RESOURCE}/openai/deployments/gpt4o-prod/embeddings?api-version=2025-01-01-preview",
        ),
        (
            RESOURCE,
            None,
            f"{RESOURCE}/openai/deployments/gpt4o-prod/chat/completions"
            f"?api-version={DEFAULT_API_VERSION}",
            f"{RESOURCE}/openai/deployments/gpt4o-prod/embeddings"
            f"?api-version={DEFAULT_API_VERSION}",
        ),
        (
            f"{RESOURCE}/openai/v1",
            "2024-10-21",
            f"{RESOURCE}/openai/v1/chat/completions",
            f"{RESOURCE}/openai/v1/embeddings",
        ),
        (
            RESOURCE,
            "v1",
            f"{RESOURCE}/openai/v1/chat/completions",
            f"{RESOURCE}/openai/v1/embeddings",
        ),
        (
            RESOURCE,
            "preview",
            f"{RESOURCE}/openai/v1/chat/completions?api-version=preview",
            f"{RESOURCE}/openai/v1/embeddings?api-version=preview",
        ),
    ],
)
def test_urls(base: str, version: str | None, chat: str, embed: str) -> None:
    e = ep(base, version)
    h = ADAPTER.headers(e)
    req = ADAPTER.build_chat(e, h, [{"role": "user", "content": "Hi"}], {"temperature": 0}, False)
    assert req.url == chat
    body = json.loads(req.body)
    assert body == {
        "model": "gpt4o-prod",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0,
    }
    assert ADAPTER.build_embedding(e, h, "x", {}).url == embed


def test_resource_urls_for_files_and_batches() -> None:
    assert (
        ADAPTER.resource_url(ep(), "batches") == f"{RESOURCE}/openai/batches?api-version=2024-10-21"
    )
    v1 = ep(f"{RESOURCE}/openai/v1")
    assert ADAPTER.resource_url(v1, "files") == f"{RESOURCE}/openai/v1/files"


def test_auth_headers() -> None:
    classic = ADAPTER.headers(ep())
    assert classic["api-key"] == "az-key" and "authorization" not in classic
    v1 = ADAPTER.headers(ep(f"{RESOURCE}/openai/v1"))
    assert v1["authorization"] == "Bearer az-key" and "api-key" not in v1


def test_content_filter_only_chunks_are_skipped() -> None:
    raw = (
        b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
        b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},'
        b'"finish_reason":null}]}\n\n'
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
        b'"choices":[{"index":0,"finish_reason":"stop","content_filter_results":{}}]}\n\n'
        b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,'
        b'"total_tokens":4}}\n\n'
        b"data: [DONE]\n\n"
    )
    parser = ADAPTER.stream_parser(ep())
    chunks = [parser.feed(e, d) for e, d in SSEDecoder().feed(raw)]
    kept = [c for c in chunks if c is not None]
    assert parser.done
    assert len(kept) == 3
    assert kept[0].choices[0].delta.content == "Hi" and kept[0].provider == "azure"
    assert kept[1].choices[0].finish_reason == "stop"
    assert kept[2].usage is not None and kept[2].usage.total_tokens == 4


def test_response_and_errors_are_openai_shaped() -> None:
    body = (
        b'{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06",'
        b'"prompt_filter_results":[],"choices":[{"index":0,"finish_reason":"stop",'
        b'"message":{"role":"assistant","content":"ok"},"content_filter_results":{}}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    )
    resp = ADAPTER.parse_chat(ep(), body)
    assert resp.content == "ok" and resp.provider == "azure"
    err_body = b'{"error": {"code": "content_filter", "message": "filtered", "param": "prompt"}}'
    err = ADAPTER.parse_error(ep(), 400, {}, err_body)
    assert isinstance(err, salvo.BadRequestError) and "filtered" in str(err)
    auth = ADAPTER.parse_error(ep(), 401, {}, b'{"error": {"message": "bad"}}')
    assert "AZURE_API_KEY" in str(auth)


def test_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_API_KEY", "az-env")
    monkeypatch.delenv("AZURE_API_VERSION", raising=False)
    monkeypatch.delenv("AZURE_API_BASE", raising=False)
    with pytest.raises(salvo.ConfigError, match="AZURE_API_BASE"):
        resolve_deployment("azure/gpt4o-prod")
    monkeypatch.setenv("AZURE_API_BASE", RESOURCE + "/")
    dep = resolve_deployment("azure/gpt4o-prod")
    assert dep.endpoint.api_base == RESOURCE
    assert dep.endpoint.api_version == DEFAULT_API_VERSION
    assert dep.headers["api-key"] == "az-env"
    monkeypatch.setenv("AZURE_API_VERSION", "2025-01-01-preview")
    assert resolve_deployment("azure/x").endpoint.api_version == "2025-01-01-preview"
    over = resolve_deployment("azure/x", overrides={"api_version": "v1"})
    assert over.headers["authorization"] == "Bearer az-env"
    monkeypatch.delenv("AZURE_API_KEY")
    with pytest.raises(salvo.ConfigError, match="AZURE_API_KEY"):
        resolve_deployment("azure/gpt4o-prod")


def test_table_row() -> None:
    info = get_provider("azure")
    assert info is not None
    assert info.prefixes == () and info.base_url == ""
    assert info.version_env == "AZURE_API_VERSION"
    assert info.capabilities.batch_api and info.capabilities.embeddings
