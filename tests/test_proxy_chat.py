"""The proxy's chat, race, gather, embeddings and models routes, driven by the OpenAI SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from salvo.testing import Behavior, FakeProvider
from test_proxy_support import UPSTREAM_KEY, USER, stack


async def test_chat_relays_the_upstream_answer_and_rewrites_the_alias() -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(text="Hi there, friend."))
        raw = await s.oai.chat.completions.with_raw_response.create(
            model="fast", messages=USER, temperature=0.3, extra_body={"seed": 7, "top_k": 3}
        )
        resp = raw.parse()
        assert resp.choices[0].message.content == "Hi there, friend."
        assert resp.model == "gpt-4o-mini"
        assert float(raw.headers["x-salvo-overhead-ms"]) >= 0
        (record,) = s.fake.records
        # the alias became the upstream's model name; everything else passed through untouched
        assert record.body == {
            "model": "gpt-4o-mini",
            "messages": USER,
            "temperature": 0.3,
            "seed": 7,
            "top_k": 3,
        }
        assert record.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_chat_config_params_are_defaults_the_request_overrides() -> None:
    extra = {"warm": {"model": "openai/gpt-4o-mini", "temperature": 0.9, "max_tokens": 50}}
    async with stack(extra_models=extra) as s:
        await s.oai.chat.completions.create(model="warm", messages=USER, temperature=0.1)
        body = s.fake.records[0].body
        assert body["temperature"] == 0.1
        assert body["max_tokens"] == 50


async def test_request_cannot_choose_the_upstream_base_or_key() -> None:
    async with stack() as s:
        await s.oai.chat.completions.create(
            model="fast",
            messages=USER,
            extra_body={"api_base": "http://evil.example", "api_key": "x", "timeout": 1},
        )
        (record,) = s.fake.records  # it still went to the configured upstream
        assert not {"api_base", "api_key", "timeout"} & set(record.body)
        assert record.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_streaming_relays_every_chunk_and_the_terminator() -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(text="one two three four", chunks=4))
        raw = await s.oai.chat.completions.with_raw_response.create(
            model="fast", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        assert float(raw.headers["x-salvo-overhead-ms"]) >= 0
        assert raw.headers["content-type"].startswith("text/event-stream")
        stream = raw.parse()
        parts, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
            if chunk.usage is not None:
                usage = chunk.usage
        assert "".join(parts) == "one two three four"
        assert usage is not None and usage.total_tokens > 0
        assert s.fake.records[0].body["stream_options"] == {"include_usage": True}


async def test_translated_provider_goes_through_salvo_types() -> None:
    async with stack() as s:
        s.fake.script("meta-llama/Llama-3-8b", Behavior(text="hello", finish_reason="eos"))
        resp = await s.oai.chat.completions.create(model="tog", messages=USER)
        assert resp.choices[0].message.content == "hello"
        assert resp.choices[0].finish_reason == "stop"  # together's "eos", mapped
        stream = await s.oai.chat.completions.create(model="tog", messages=USER, stream=True)
        finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
        assert finishes[-1] == "stop"


async def test_an_anthropic_model_speaks_openai_through_the_proxy() -> None:
    def claude(fake: FakeProvider, config: dict[str, Any]) -> None:
        params = {"model": "anthropic/claude-sonnet-4-5", "api_base": fake.anthropic_base}
        config["model_list"].append(
            {"model_name": "claude", "params": {**params, "api_key": UPSTREAM_KEY}}
        )

    async with stack(configure=claude) as s:
        s.fake.script("claude-sonnet-4-5", Behavior(text="bonjour", chunks=2))
        resp = await s.oai.chat.completions.create(model="claude", messages=USER, max_tokens=9)
        assert resp.choices[0].message.content == "bonjour"
        stream = await s.oai.chat.completions.create(
            model="claude", messages=USER, max_tokens=9, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "bonjour"
        assert s.fake.records[0].path == "/v1/messages"
        assert s.fake.records[0].headers["x-api-key"] == UPSTREAM_KEY


async def test_race_returns_the_fastest_answer() -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(latency=2.0, text="slow"))
        s.fake.script("gpt-4o", Behavior(text="quick"))
        resp = await s.oai.chat.completions.create(
            model="fast, smart", messages=USER, extra_body={"fastest_response": True}
        )
        assert resp.choices[0].message.content == "quick"
        (loser,) = s.fake.records_for("gpt-4o-mini")
        await s.fake.wait_until_closed(loser)
        assert loser.disconnected is not None and loser.completed is None
        assert "fastest_response" not in loser.body


async def test_streamed_race_relays_the_winner_and_closes_the_loser() -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(first_chunk_delay=2.0, text="slow"))
        s.fake.script("gpt-4o", Behavior(text="quick answer", chunks=3))
        raw = await s.oai.chat.completions.with_raw_response.create(
            model="fast,smart", messages=USER, stream=True, extra_body={"fastest_response": True}
        )
        assert raw.headers["x-salvo-model"] == "smart"
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        assert text == "quick answer"
        (loser,) = s.fake.records_for("gpt-4o-mini")
        await s.fake.wait_until_closed(loser)
        assert loser.disconnected is not None


async def test_race_where_every_model_fails_is_one_error() -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(status=400, error_message="bad one"))
        s.fake.script("gpt-4o", Behavior(status=400, error_message="bad two"))
        with pytest.raises(openai.BadRequestError) as info:
            await s.oai.chat.completions.create(
                model="fast,smart", messages=USER, extra_body={"fastest_response": True}
            )
        assert info.value.code == "all_models_failed"
        assert "bad one" in info.value.message and "bad two" in info.value.message


async def test_model_list_without_fastest_returns_every_answer_in_order() -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(text="from mini"))
        s.fake.script("gpt-4o", Behavior(status=429, error_message="slow down"))
        raw = await s.oai.chat.completions.with_raw_response.create(
            model="fast,smart,fast", messages=USER
        )
        body = json.loads(raw.http_response.text)
        assert raw.http_response.status_code == 200
        assert body["object"] == "list" and body["model"] == "fast,smart,fast"
        first, second, third = body["data"]
        assert first["object"] == "chat.completion"
        assert first["choices"][0]["message"]["content"] == "from mini"
        assert second["object"] == "error" and second["model"] == "smart"
        assert second["status_code"] == 429
        assert "slow down" in second["error"]["message"]
        assert set(second["error"]) == {"message", "type", "param", "code"}
        assert third["object"] == "chat.completion"


async def test_streaming_a_model_list_without_fastest_is_a_clear_400() -> None:
    async with stack() as s:
        with pytest.raises(openai.BadRequestError) as info:
            await s.oai.chat.completions.create(model="fast,smart", messages=USER, stream=True)
        assert info.value.code == "stream_not_supported"
        assert info.value.param == "stream"
        assert s.fake.records == []


async def test_embeddings_float_and_base64() -> None:
    async with stack() as s:
        resp = await s.oai.embeddings.create(model="embed", input=["a b", "c"])  # SDK: base64
        assert [d.index for d in resp.data] == [0, 1]
        assert len(resp.data[0].embedding) == 8  # the fake's default dimensions
        floats = await s.oai.embeddings.create(
            model="embed", input="hello", encoding_format="float", dimensions=16
        )
        assert len(floats.data[0].embedding) == 16
        assert s.fake.records[0].body["model"] == "text-embedding-3-small"


async def test_embeddings_reject_a_model_list_and_chat_only_providers() -> None:
    extra = {"groqy": {"model": "groq/llama-3.1-8b-instant"}}
    async with stack(extra_models=extra) as s:
        with pytest.raises(openai.BadRequestError, match="one model"):
            await s.oai.embeddings.create(model="embed,embed", input="x")
        with pytest.raises(openai.BadRequestError) as info:
            await s.oai.embeddings.create(model="groqy", input="x")
        assert info.value.code == "embeddings_not_supported"


async def test_models_list_and_retrieve() -> None:
    async with stack() as s:
        page = await s.oai.models.list()
        assert [m.id for m in page.data] == ["fast", "smart", "embed", "tog"]
        assert page.data[0].owned_by == "openai"
        assert (await s.oai.models.retrieve("tog")).owned_by == "together"
        with pytest.raises(openai.NotFoundError):
            await s.oai.models.retrieve("nope")


async def test_any_provider_model_only_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    async with stack() as s:
        with pytest.raises(openai.NotFoundError) as info:
            await s.oai.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
        assert info.value.code == "model_not_found"

    def env(fake: FakeProvider, config: dict[str, Any]) -> None:
        config["salvo_settings"] = {"allow_any_model": True}
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_BASE", fake.openai_base)
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-local")

    async with stack(configure=env) as s:
        with pytest.raises(openai.NotFoundError, match="Unknown provider"):
            await s.oai.chat.completions.create(model="nope/x", messages=USER)
        # an OpenAI-compatible local server reached by provider/name (no key needed)
        resp = await s.oai.chat.completions.create(
            model="openai_compatible/gpt-4o-mini", messages=USER
        )
        assert resp.model == "gpt-4o-mini"
