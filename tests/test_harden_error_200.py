"""Item 7 of issue 11: a 200 whose body is ``{}`` or ``{"error": {...}}`` is not an answer.
It is a ResponseDecodeError (or the provider error it carries) for every adapter, chat and
embeddings, and in a race a fast failure of that kind never beats a healthy model."""

from __future__ import annotations

import msgspec
import pytest

import salvo
from _hostile import Hostile
from salvo import ProviderError, ResponseDecodeError
from salvo.testing import Behavior, FakeProvider

USER = [{"role": "user", "content": "hi"}]
CHAT = ["openai/m", "groq/m", "anthropic/claude-x", "gemini/gemini-x", "cohere/command-x",
        "azure/dep"]  # fmt: skip
EMBED = ["openai/e", "gemini/text-embedding-004", "cohere/embed-x", "azure/dep"]
ERROR = {"error": {"message": "upstream overloaded, try later", "type": "server_error"}}
BODIES = [{}, {"error": {"message": "quota gone", "type": "insufficient_quota"}}, ERROR]


def _client(base: str, model: str) -> salvo.Client:
    params = {"model": model, "api_base": base, "api_key": "k"}
    if model.startswith("azure/"):
        params["api_version"] = "2024-10-21"
    return salvo.Client(config={"model_list": [{"model_name": "x", "params": params}]},
                        max_retries=0)  # fmt: skip


@pytest.mark.parametrize("model", CHAT)
@pytest.mark.parametrize("body", BODIES)
async def test_a_200_without_an_answer_is_an_error_for_every_chat_adapter(
    model: str, body: dict[str, object]
) -> None:
    async with (
        Hostile(lambda p, b: (200, msgspec.json.encode(body))) as hostile,
        _client(hostile.base, model) as client,
    ):
        with pytest.raises((ResponseDecodeError, ProviderError)) as info:
            await client.acompletion("x", USER)
        err = info.value
        if body:
            assert isinstance(err, ProviderError)
            assert body["error"]["message"] in str(err)  # type: ignore[index]
            assert err.status_code >= 400
        else:
            assert isinstance(err, ResponseDecodeError) and "no answer" in str(err)


@pytest.mark.parametrize("model", EMBED)
@pytest.mark.parametrize("body", BODIES)
async def test_a_200_without_vectors_is_an_error_for_every_embedding_adapter(
    model: str, body: dict[str, object]
) -> None:
    async with (
        Hostile(lambda p, b: (200, msgspec.json.encode(body))) as hostile,
        _client(hostile.base, model) as client,
    ):
        with pytest.raises((ResponseDecodeError, ProviderError)) as info:
            await client.aembedding("x", ["a", "b"])
        if body:
            assert isinstance(info.value, ProviderError)


async def test_an_error_carrying_a_status_keeps_its_class() -> None:
    body = {"error": {"message": "slow down", "code": 429}}  # OpenRouter's shape
    async with (
        Hostile(lambda p, b: (200, msgspec.json.encode(body))) as hostile,
        _client(hostile.base, "openai/m") as client,
    ):
        with pytest.raises(salvo.RateLimitError, match="slow down"):
            await client.acompletion("x", USER)


@pytest.mark.parametrize("body", BODIES)
async def test_in_a_race_a_fast_empty_200_never_wins(
    fake: FakeProvider, body: dict[str, object]
) -> None:
    fake.script("gpt-4o-mini", Behavior(text="the real answer", latency=0.3))
    async with Hostile(lambda p, b: (200, msgspec.json.encode(body))) as hostile:
        config = {"model_list": [
            {"model_name": "broken", "params": {"model": "openai/m", "api_base": hostile.base,
                                                "api_key": "k"}},
            {"model_name": "good", "params": {"model": "openai/gpt-4o-mini",
                                              "api_base": fake.openai_base, "api_key": "k"}},
        ]}  # fmt: skip
        async with salvo.Client(config=config, max_retries=0) as client:
            resp = await client.arace(["broken", "good"], USER)
            assert resp.content == "the real answer"
            assert len(hostile.requests) == 1
            results = await client.agather_all(["broken", "good"], USER)
            assert isinstance(results[0], ResponseDecodeError | ProviderError)


STREAM_BODIES = [b"{}", b"data: {}\n\n", b'data: {"candidates": []}\n\n']


@pytest.mark.parametrize("model", ["openai/m", "anthropic/claude-x", "gemini/g", "cohere/c"])
@pytest.mark.parametrize("body", STREAM_BODIES)
async def test_a_200_stream_without_an_answer_is_an_error(model: str, body: bytes) -> None:
    async with Hostile(lambda p, b: (200, body)) as hostile, _client(hostile.base, model) as c:
        with pytest.raises(salvo.StreamError):
            stream = await c.acompletion("x", USER, stream=True)
            async with stream:
                async for _ in stream:
                    pass


@pytest.mark.parametrize("body", STREAM_BODIES)
async def test_in_a_streaming_race_an_empty_gemini_stream_never_wins(
    fake: FakeProvider, body: bytes
) -> None:
    fake.script("gpt-4o-mini", Behavior(text="the real answer", latency=0.3))
    async with Hostile(lambda p, b: (200, body)) as hostile:
        config = {"model_list": [
            {"model_name": "broken", "params": {"model": "gemini/g", "api_base": hostile.base,
                                                "api_key": "k"}},
            {"model_name": "good", "params": {"model": "openai/gpt-4o-mini",
                                              "api_base": fake.openai_base, "api_key": "k"}},
        ]}  # fmt: skip
        async with salvo.Client(config=config, max_retries=0) as client:
            stream = await client.arace(["broken", "good"], USER, stream=True)
            async with stream:
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
            assert text == "the real answer"
