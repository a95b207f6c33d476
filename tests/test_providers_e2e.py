"""Every provider end to end through the fake server (which speaks each wire format on its own,
importing nothing of salvo's adapters): plain, streaming, tool calls, errors, and one race and
one gather that span providers, with the losing streams shown closed by the fake's records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from salvo.testing import Behavior, FakeProvider, ToolCallSpec

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
PROVIDERS = ["openai", "anthropic", "gemini", "cohere", "azure", "azure_v1"]


def model_entry(fake: FakeProvider, provider: str, name: str) -> dict[str, Any]:
    base = {
        "openai": fake.openai_base,
        "anthropic": fake.anthropic_base,
        "gemini": fake.gemini_base,
        "cohere": fake.cohere_base,
        "azure": fake.azure_base,
        "azure_v1": fake.azure_base + "/openai/v1",
    }[provider]
    prefix = "azure" if provider == "azure_v1" else provider
    return {
        "model_name": f"{provider}-{name}",
        "params": {"model": f"{prefix}/{name}", "api_base": base, "api_key": "test-key"},
    }


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[salvo.Client]:
    entries = [model_entry(fake, p, n) for p in PROVIDERS for n in ("m", "fast", "slow")]
    async with salvo.Client(config={"model_list": entries}) as c:
        yield c


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_plain_completion(fake: FakeProvider, client: salvo.Client, provider: str) -> None:
    fake.script("m", Behavior(text="Sunny and mild.", prompt_tokens=11, completion_tokens=4))
    resp = await client.acompletion(f"{provider}-m", MSGS, max_tokens=64, temperature=0.5)
    assert resp.content == "Sunny and mild."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 4)
    assert resp.provider == ("azure" if provider == "azure_v1" else provider)
    (rec,) = fake.records_for("m")
    assert rec.provider == ("azure" if provider == "azure_v1" else provider)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streaming(fake: FakeProvider, client: salvo.Client, provider: str) -> None:
    fake.script("m", Behavior(text="one two three four five", chunks=5))
    stream = await client.acompletion(f"{provider}-m", MSGS, stream=True)
    resp = await stream.collect()
    assert resp.content == "one two three four five"
    assert resp.choices[0].finish_reason == "stop"
    rec = await fake.wait_until_closed(fake.records_for("m")[0])
    assert rec.completed is not None and rec.disconnected is None


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls(
    fake: FakeProvider, client: salvo.Client, provider: str, stream: bool
) -> None:
    fake.script("m", Behavior(tool_calls=[ToolCallSpec("get_weather", '{"city": "Paris"}')]))
    if stream:
        resp = await (
            await client.acompletion(f"{provider}-m", MSGS, tools=TOOLS, stream=True)
        ).collect()
    else:
        resp = await client.acompletion(f"{provider}-m", MSGS, tools=TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "cohere"])
async def test_tool_result_round_trip_is_sent_in_the_providers_shape(
    fake: FakeProvider, client: salvo.Client, provider: str
) -> None:
    history = [
        *MSGS,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, cloudy"},
    ]
    resp = await client.acompletion(f"{provider}-m", history, tools=TOOLS)
    assert resp.content
    body = json.dumps(fake.records_for("m")[0].body)
    assert "18C, cloudy" in body and "get_weather" in body


@pytest.mark.parametrize(
    ("provider", "status", "cls"),
    [
        ("anthropic", 529, salvo.ServerError),
        ("anthropic", 429, salvo.RateLimitError),
        ("anthropic", 401, salvo.AuthenticationError),
        ("gemini", 400, salvo.BadRequestError),
        ("gemini", 503, salvo.ServerError),
        ("cohere", 429, salvo.RateLimitError),
        ("cohere", 404, salvo.NotFoundError),
        ("azure", 403, salvo.PermissionDeniedError),
    ],
)
async def test_errors_map_by_status(
    fake: FakeProvider, client: salvo.Client, provider: str, status: int, cls: type
) -> None:
    fake.script("m", Behavior(status=status, error_message="scripted failure"))
    with pytest.raises(cls) as info:
        await client.acompletion(f"{provider}-m", MSGS, max_retries=0)
    assert info.value.status_code == status
    assert info.value.provider == provider
    assert "scripted failure" in str(info.value)


async def test_anthropic_midstream_overload_is_an_error_not_a_truncated_answer(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(chunks=6, fault="midstream_error", fault_after=3))
    stream = await client.acompletion("anthropic-m", MSGS, stream=True)
    with pytest.raises(salvo.SalvoError):
        await stream.collect()


async def test_cross_provider_race_closes_losing_streams(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("fast", Behavior(latency=0.05, text="openai first", chunks=2))
    fake.script("slow", Behavior(first_chunk_delay=2.0, chunks=3))
    loop = asyncio.get_running_loop()
    stream = await client.arace(["anthropic-slow", "gemini-slow", "openai-fast"], MSGS, stream=True)
    decided = loop.time()
    assert stream.model == "openai-fast"
    assert (await stream.collect()).content == "openai first"
    by_provider = {r.provider: r for r in fake.records_for("slow")}
    assert set(by_provider) == {"anthropic", "gemini"}
    for rec in by_provider.values():
        await fake.wait_until_closed(rec, timeout=1.0)
        assert rec.first_byte is not None  # the losers had started streaming
        assert rec.completed is None and rec.disconnected is not None
        assert rec.disconnected - decided < 0.1


async def test_cross_provider_race_non_streaming(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("fast", Behavior(latency=0.05, text="gemini wins"))
    fake.script("slow", Behavior(latency=2.0))
    resp = await client.arace(["openai-slow", "anthropic-slow", "gemini-fast"], MSGS)
    assert resp.content == "gemini wins" and resp.provider == "gemini"
    for rec in fake.records_for("slow"):
        await fake.wait_until_closed(rec, timeout=1.0)
        assert rec.completed is None and rec.disconnected is not None


async def test_cross_provider_gather(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("m", lambda n: Behavior(latency=0.01 * n, text="same answer"))
    names = ["openai-m", "anthropic-m", "gemini-m", "cohere-m", "azure-m"]
    out = await client.agather_all(names, MSGS)
    assert [r.provider for r in out if isinstance(r, salvo.ModelResponse)] == [
        "openai",
        "anthropic",
        "gemini",
        "cohere",
        "azure",
    ]
    assert all(r.content == "same answer" for r in out if isinstance(r, salvo.ModelResponse))


@pytest.mark.parametrize("provider", ["openai", "gemini", "cohere", "azure"])
async def test_embeddings(fake: FakeProvider, client: salvo.Client, provider: str) -> None:
    resp = await client.aembedding(f"{provider}-m", ["hello", "world"])
    assert [e.index for e in resp.data] == [0, 1]
    assert all(isinstance(e.embedding, list) and len(e.embedding) > 0 for e in resp.data)


def test_anthropic_without_embeddings_says_so() -> None:
    async def go() -> None:
        async with salvo.Client() as c:
            await c.aembedding("anthropic/claude-haiku-4-5", "x", api_key="k")

    with pytest.raises(salvo.ConfigError, match="no embeddings"):
        asyncio.run(go())


def test_readme_provider_table_matches_the_code() -> None:
    from pathlib import Path

    from salvo.providers import providers_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert providers_table() in readme
