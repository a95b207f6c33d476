"""LiteLLM's client-side arguments are honoured or consumed, never sent: checked on the wire
with the fake's records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import salvo
from salvo import _compat
from salvo._pricing import get_price, reset_prices
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]
LITELLM_ONLY = {
    "num_retries",
    "request_timeout",
    "max_workers",
    "mock_response",
    "fallbacks",
    "drop_params",
    "callbacks",
    "success_callback",
    "caching",
    "batch_enabled",
    "custom_llm_provider",
    "input_cost_per_token",
    "output_cost_per_token",
    "metadata",
    "api_base",
    "base_url",
    "api_version",
    "timeout",
    "max_retries",
}


@pytest.fixture(autouse=True)
def _settings() -> Iterator[None]:
    saved = dict(_compat._SETTINGS), _compat.ACTIVE
    yield
    _compat._SETTINGS.update(saved[0])
    _compat.ACTIVE = saved[1]
    reset_prices()


def sent_keys(fake: FakeProvider) -> set[str]:
    keys: set[str] = set()
    for rec in fake.records:
        keys |= set(rec.body or {})
    return keys


async def test_call_arguments_are_consumed(fake: FakeProvider) -> None:
    async with salvo.Client() as client:
        resp = await client.acompletion(
            "m",
            MSGS,
            custom_llm_provider="openai",
            api_base=fake.openai_base,
            api_key="k",
            num_retries=0,
            request_timeout=30,
            callbacks=[print],
            success_callback=["langfuse"],
            caching=False,
            metadata={"trace": "x"},
            max_workers=4,
            temperature=0.2,
        )
    assert resp.choices[0].message.content
    (rec,) = fake.records
    assert rec.body["temperature"] == 0.2
    assert not (LITELLM_ONLY & set(rec.body)), rec.body


async def test_metadata_is_sent_only_with_store(fake: FakeProvider) -> None:
    async with salvo.Client() as client:
        kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k"}
        await client.acompletion("openai/m", MSGS, metadata={"a": "1"}, **kw)
        await client.acompletion("openai/m", MSGS, metadata={"a": "2"}, store=True, **kw)
    first, second = fake.records
    assert "metadata" not in first.body
    assert second.body["metadata"] == {"a": "2"} and second.body["store"] is True


async def test_num_retries_is_max_retries(fake: FakeProvider) -> None:
    fake.script("m", Behavior(status=500))
    async with salvo.Client(max_retries=5) as client:
        with pytest.raises(salvo.ServerError):
            await client.acompletion(
                "openai/m", MSGS, api_base=fake.openai_base, api_key="k", num_retries=1
            )
    assert len(fake.records) == 2  # one try and one retry, not the client's five


async def test_config_entry_litellm_params(fake: FakeProvider) -> None:
    config = {
        "model_list": [
            {
                "model_name": "alias",
                "litellm_params": {
                    "model": "m",
                    "custom_llm_provider": "openai",
                    "api_base": fake.openai_base,
                    "api_key": "k",
                    "num_retries": 0,
                    "drop_params": True,
                    "input_cost_per_token": 0.000001,
                    "output_cost_per_token": 0.000002,
                    "batch_enabled": True,
                    "temperature": 0.5,
                },
            }
        ]
    }
    fake.script("m", Behavior(text="ok", prompt_tokens=10, completion_tokens=5))
    async with salvo.Client(config=config) as client:
        resp = await client.acompletion("alias", MSGS)
    (rec,) = fake.records
    assert rec.body["temperature"] == 0.5
    assert not (LITELLM_ONLY & set(rec.body)), rec.body
    assert resp.cost_usd == pytest.approx(10 * 1e-6 + 5 * 2e-6)
    price = get_price("openai", "m")
    assert price is not None and price.input_per_m == pytest.approx(1.0)


async def test_config_entry_num_retries_is_honoured(fake: FakeProvider) -> None:
    config = {
        "model_list": [
            {
                "model_name": "a",
                "litellm_params": {
                    "model": "openai/m",
                    "api_base": fake.openai_base,
                    "api_key": "k",
                    "num_retries": 0,
                },
            }
        ]
    }
    fake.script("m", Behavior(status=503))
    async with salvo.Client(config=config) as client:
        with pytest.raises(salvo.ServerError):
            await client.acompletion("a", MSGS)
    assert len(fake.records) == 1


async def test_mock_response_sends_nothing(fake: FakeProvider) -> None:
    resp = await salvo.acompletion("openai/gpt-4o", MSGS, mock_response="Hi there friend")
    assert resp.choices[0].message.content == "Hi there friend"
    assert resp["choices"][0]["message"]["content"] == "Hi there friend"
    stream = await salvo.acompletion(
        "openai/gpt-4o", MSGS, mock_response="Hi there friend", stream=True
    )
    pieces = [c.choices[0].delta.content async for c in stream]
    assert "".join(p for p in pieces if p) == "Hi there friend"
    with pytest.raises(salvo.TimeoutError):
        await salvo.acompletion("openai/gpt-4o", MSGS, mock_response=salvo.TimeoutError("x"))
    results = await salvo.abatch_completion("openai/gpt-4o", [MSGS, MSGS], mock_response="yo")
    assert [r.choices[0].message.content for r in results] == ["yo", "yo"]  # type: ignore[union-attr]
    assert fake.records == []


async def test_mock_response_rejects_garbage() -> None:
    with pytest.raises(salvo.ConfigError, match="mock_response"):
        await salvo.acompletion("openai/gpt-4o", MSGS, mock_response=12)


async def test_fallbacks_in_order_then_all_models_failed(fake: FakeProvider) -> None:
    fake.script("bad", Behavior(status=500))
    fake.script("worse", Behavior(status=400))
    fake.script("good", Behavior(text="fine"))
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k", "num_retries": 0}
    resp = await salvo.acompletion(
        "openai/bad", MSGS, fallbacks=["openai/worse", "openai/good"], **kw
    )
    assert resp.content == "fine"
    assert [r.model for r in fake.records] == ["bad", "worse", "good"]
    assert all("fallbacks" not in r.body for r in fake.records)
    with pytest.raises(salvo.AllModelsFailedError) as info:
        await salvo.acompletion(
            "openai/bad", MSGS, fallbacks=["openai/worse", {"model": "nope/x"}], **kw
        )
    err = info.value
    assert err.models == ("openai/bad", "openai/worse", "nope/x")
    kinds = [type(e) for e in err.exceptions]
    assert kinds == [salvo.ServerError, salvo.BadRequestError, salvo.ConfigError]


async def test_fallbacks_garbage_is_config_error() -> None:
    with pytest.raises(salvo.ConfigError, match="fallbacks"):
        await salvo.acompletion("openai/gpt-4o", MSGS, fallbacks="openai/gpt-4o-mini")


async def test_drop_params_false_names_the_parameter(fake: FakeProvider) -> None:
    kw: dict[str, Any] = {"api_base": fake.anthropic_base, "api_key": "k"}
    with pytest.raises(salvo.ConfigError, match="logit_bias"):
        await salvo.acompletion(
            "anthropic/claude-x", MSGS, logit_bias={"1": 1}, drop_params=False, **kw
        )
    # an OpenAI-compatible host gets every parameter, drop_params or not
    await salvo.acompletion(
        "openai/m", MSGS, api_base=fake.openai_base, api_key="k", seed=1, drop_params=False
    )
    # dropped by default, as documented
    await salvo.acompletion("anthropic/claude-x", MSGS, logit_bias={"1": 1}, **kw)
    assert [r.provider for r in fake.records] == ["openai", "anthropic"]
    assert "logit_bias" not in fake.records[1].body


async def test_module_level_settings(fake: FakeProvider) -> None:
    salvo.drop_params = False
    assert salvo.drop_params is False
    with pytest.raises(salvo.ConfigError, match=r"parameter\(s\) n "):
        await salvo.acompletion(
            "cohere/command-r", MSGS, api_base=fake.cohere_base, api_key="k", n=2
        )
    salvo.drop_params = True
    salvo.num_retries = 0
    fake.script("m", Behavior(status=500))
    with pytest.raises(salvo.ServerError):
        await salvo.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k")
    assert len(fake.records) == 1
    with pytest.raises(salvo.ConfigError):
        salvo.num_retries = -1
    with pytest.raises(salvo.ConfigError):
        salvo.request_timeout = "soon"


async def test_ignored_arguments_are_logged(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="salvo"):
        await salvo.acompletion(
            "openai/m", MSGS, api_base=fake.openai_base, api_key="k", caching=True
        )
    assert "caching" in caplog.text and "ignored" in caplog.text


async def test_race_and_gather_consume_litellm_arguments(fake: FakeProvider) -> None:
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k"}
    await salvo.arace(["openai/a", "openai/b"], MSGS, num_retries=0, metadata={"x": 1}, **kw)
    await salvo.agather_all(["openai/a", "openai/b"], MSGS, caching=True, **kw)
    assert len(fake.records) >= 3
    assert not (LITELLM_ONLY & sent_keys(fake)), sent_keys(fake)
    got = await salvo.agather_all(["openai/a", "openai/b"], MSGS, mock_response="m")
    assert [r.content for r in got] == ["m", "m"]  # type: ignore[union-attr]


async def test_request_timeout_is_the_call_deadline(fake: FakeProvider) -> None:
    fake.script("slow", Behavior(latency=5.0))
    with pytest.raises(salvo.TimeoutError):
        await salvo.acompletion(
            "openai/slow",
            MSGS,
            api_base=fake.openai_base,
            api_key="k",
            request_timeout=0.2,
            num_retries=0,
        )
    (rec,) = fake.records
    assert "request_timeout" not in rec.body


async def test_config_entry_drop_params_false(fake: FakeProvider) -> None:
    config = {
        "model_list": [
            {
                "model_name": "strict",
                "litellm_params": {
                    "model": "anthropic/claude-x",
                    "api_base": fake.anthropic_base,
                    "api_key": "k",
                    "drop_params": False,
                },
            },
            {
                "model_name": "gem",
                "litellm_params": {
                    "model": "gemini/gemini-2.0-flash",
                    "api_base": fake.gemini_base,
                    "api_key": "k",
                    "drop_params": False,
                    "user": "entry-level-param",  # dropped by the Gemini adapter
                },
            },
        ]
    }
    async with salvo.Client(config=config) as client:
        with pytest.raises(salvo.ConfigError, match="presence_penalty"):
            await client.acompletion("strict", MSGS, presence_penalty=0.5)
        with pytest.raises(salvo.ConfigError, match="user"):
            await client.acompletion("gem", MSGS)
        # a call may still allow dropping for itself
        await client.acompletion("strict", MSGS, presence_penalty=0.5, drop_params=True)
    assert len(fake.records) == 1 and "presence_penalty" not in fake.records[0].body


async def test_client_race_refuses_call_level_arguments(fake: FakeProvider) -> None:
    async with salvo.Client() as client:
        with pytest.raises(salvo.ConfigError, match="fallbacks"):
            await client.arace(
                ["openai/a", "openai/b"],
                MSGS,
                api_base=fake.openai_base,
                api_key="k",
                fallbacks=["openai/c"],
            )
        await client.arace(
            ["openai/a", "openai/b"],
            MSGS,
            api_base=fake.openai_base,
            api_key="k",
            num_retries=0,
            caching=True,
        )
    assert fake.records and not (LITELLM_ONLY & sent_keys(fake))
    with pytest.raises(salvo.ConfigError, match="fallbacks"):
        await salvo.arace(["openai/a"], MSGS, fallbacks=["openai/c"])


async def test_embedding_consumes_litellm_arguments(fake: FakeProvider) -> None:
    await salvo.aembedding(
        "openai/text-embedding-3-small",
        "hello",
        api_base=fake.openai_base,
        api_key="k",
        num_retries=0,
        caching=True,
        metadata={"a": 1},
    )
    (rec,) = fake.records
    assert not (LITELLM_ONLY & set(rec.body)), rec.body


async def test_prices_must_be_numbers() -> None:
    with pytest.raises(salvo.ConfigError, match="input_cost_per_token"):
        await salvo.acompletion(
            "openai/m", MSGS, api_key="k", api_base="http://127.0.0.1:9", input_cost_per_token="1"
        )
    with pytest.raises(salvo.ConfigError, match="drop_params"):
        await salvo.acompletion(
            "openai/m", MSGS, api_key="k", api_base="http://127.0.0.1:9", drop_params="no"
        )


async def test_module_request_timeout_applies_until_a_call_sets_its_own(
    fake: FakeProvider,
) -> None:
    fake.script("slow", Behavior(latency=0.6))
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k", "num_retries": 0}
    await salvo.acompletion("openai/slow", MSGS, **kw)  # resolved once without the setting
    salvo.request_timeout = 0.1
    with pytest.raises(salvo.TimeoutError):
        await salvo.acompletion("openai/slow", MSGS, **kw)
    await salvo.acompletion("openai/slow", MSGS, timeout=5, **kw)  # the call's own wins
    salvo.request_timeout = None
    await salvo.acompletion("openai/slow", MSGS, **kw)


def test_mock_response_in_a_config_entry_is_refused_at_load() -> None:
    config = {
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/x", "mock_response": "hi"}}
        ]
    }
    with pytest.raises(salvo.ConfigError, match=r"mock_response.*per call"):
        salvo.Client(config=config)
