"""salvo.testing's fake provider, checked byte by byte against protocols.md with raw aiohttp."""

from __future__ import annotations

import array
import ast
import asyncio
import base64
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

import salvo.testing
from salvo.testing import Behavior, FakeProvider, Record, ToolCallSpec

OPENAI_H = {"Authorization": "Bearer test-key"}
ANTHROPIC_H = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
GEMINI_H = {"x-goog-api-key": "test-key"}
COHERE_H = {"Authorization": "Bearer test-key"}
FORMATS = ["openai", "anthropic", "gemini", "cohere"]
MESSAGES = [{"role": "user", "content": "Say hello to the fake"}]
TOOL = ToolCallSpec(name="get_weather", arguments='{"city": "Paris"}', id="call_1")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def request_for(
    fmt: str, fake: FakeProvider, model: str, *, stream: bool = False
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(url, body, headers) of a chat request in ``fmt``."""
    if fmt == "openai":
        body = {"model": model, "messages": MESSAGES, "stream": stream}
        return fake.openai_base + "/chat/completions", body, OPENAI_H
    if fmt == "anthropic":
        body = {"model": model, "max_tokens": 64, "messages": MESSAGES, "stream": stream}
        return fake.anthropic_base + "/v1/messages", body, ANTHROPIC_H
    if fmt == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": "Say hello to the fake"}]}]}
        return f"{fake.gemini_base}/v1beta/models/{model}:{method}", body, GEMINI_H
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    return fake.cohere_base + "/v2/chat", body, COHERE_H


async def call(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str],
    behavior: dict[str, Any] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    if behavior is not None:
        headers = {**headers, "x-fake-behavior": json.dumps(behavior)}
    async with session.post(url, json=body, headers=headers) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """WHATWG SSE framing (0.2): lines end at \\n, \\r\\n or a lone \\r."""
    events: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for line in re.split(r"\r\n|\r|\n", raw.decode()):
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    return events


def stream_text(fmt: str, events: list[tuple[str | None, str]]) -> str:
    out = []
    for _, data in events:
        if data == "[DONE]":
            continue
        obj = json.loads(data)
        if fmt == "openai":
            for choice in obj["choices"]:
                out.append(choice["delta"].get("content") or "")
        elif fmt == "anthropic" and obj["type"] == "content_block_delta":
            out.append(obj["delta"].get("text", ""))
        elif fmt == "gemini":
            out.extend(p.get("text", "") for p in obj["candidates"][0]["content"]["parts"])
        elif fmt == "cohere" and obj["type"] == "content-delta":
            out.append(obj["delta"]["message"]["content"]["text"])
    return "".join(out)


def plain_text(fmt: str, body: dict[str, Any]) -> str:
    if fmt == "openai":
        return str(body["choices"][0]["message"]["content"])
    if fmt == "anthropic":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    if fmt == "gemini":
        return "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"])
    return "".join(c["text"] for c in body["message"]["content"])


# -- package surface -----------------------------------------------------------------------------


def test_public_names_are_exactly_the_api() -> None:
    assert salvo.testing.__all__ == sorted(salvo.testing.__all__)
    assert set(salvo.testing.__all__) == {"Behavior", "FakeProvider", "Record", "ToolCallSpec"}


def test_fake_imports_nothing_else_from_salvo() -> None:
    package = Path(salvo.testing.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                outside = node.level > 1 or (node.level == 0 and "salvo" in (node.module or ""))
                assert not outside, f"{path.name}:{node.lineno} imports from salvo"
            elif isinstance(node, ast.Import):
                assert all("salvo" not in a.name for a in node.names), path.name


def test_behavior_is_json_and_validated() -> None:
    b = Behavior(latency=0.5, status=429, headers={"retry-after": "1"}, tool_calls=[TOOL])
    assert msgspec.json.decode(msgspec.json.encode(b), type=Behavior) == b
    with pytest.raises(ValueError, match="unknown fault"):
        Behavior(fault="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunks"):
        Behavior(chunks=0)
    with pytest.raises(ValueError, match="line_ending"):
        Behavior(sse_line_ending="\n\n")  # type: ignore[arg-type]


async def test_addresses_and_lifecycle() -> None:
    fake = FakeProvider()
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.url
    await fake.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.url)
        assert fake.openai_base == fake.url + "/v1"
        assert fake.anthropic_base == fake.gemini_base == fake.cohere_base == fake.url
        assert fake.azure_base == fake.url
        with pytest.raises(RuntimeError, match="already running"):
            await fake.start()
    finally:
        await fake.stop()
    await fake.stop()  # a second stop is harmless


# -- OpenAI --------------------------------------------------------------------------------------


async def test_openai_plain(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url, body, headers = request_for("openai", fake, "gpt-x")
    status, rh, raw = await call(session, url, body, headers)
    assert status == 200
    assert rh["content-type"] == "application/json"
    assert rh["x-request-id"].startswith("req_")
    obj = json.loads(raw)
    assert obj["object"] == "chat.completion"
    assert obj["model"] == "gpt-x"
    choice = obj["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hello from gpt-x. This is a scripted answer."
    assert choice["finish_reason"] == "stop"
    usage = obj["usage"]
    assert usage["prompt_tokens"] == 5  # "Say hello to the fake"
    assert usage["completion_tokens"] == 8  # words of the answer
    assert usage["total_tokens"] == 13
    (rec,) = fake.records
    assert (rec.provider, rec.path, rec.model, rec.stream) == (
        "openai",
        "/v1/chat/completions",
        "gpt-x",
        False,
    )
    assert rec.body == body
    assert rec.headers["authorization"] == "Bearer test-key"
    assert rec.status == 200
    assert rec.first_byte is not None and rec.completed is not None
    assert rec.arrived <= rec.first_byte <= rec.completed
    assert rec.closed == rec.completed and rec.disconnected is None


async def test_openai_stream_with_usage(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("gpt-x", Behavior(text="Hello there, friend", chunks=3))
    url, body, headers = request_for("openai", fake, "gpt-x", stream=True)
    body["stream_options"] = {"include_usage": True}
    status, rh, raw = await call(session, url, body, headers)
    assert status == 200
    assert rh["content-type"].startswith("text/event-stream")
    assert b"event:" not in raw
    assert raw.endswith(b"data: [DONE]\n\n")
    frames = raw.split(b"\n\n")[:-1]
    assert all(f.startswith(b"data: ") and b"\n" not in f for f in frames)
    events = parse_sse(raw)
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert events[-1][1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == [
        "Hello t",
        "here, ",
        "friend",
    ]
    assert chunks[4]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 5 + 3
    assert stream_text("openai", events) == "Hello there, friend"
    assert fake.records[0].stream is True


async def test_openai_stream_usage_follows_request_unless_forced(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    url, body, headers = request_for("openai", fake, "gpt-x", stream=True)
    _, _, raw = await call(session, url, body, headers)
    chunks = [json.loads(d) for _, d in parse_sse(raw)[:-1]]
    assert all("usage" not in c for c in chunks)
    _, _, raw = await call(session, url, body, headers, {"include_usage": True})
    assert json.loads(parse_sse(raw)[-2][1])["choices"] == []
    body["stream_options"] = {"include_usage": True}
    _, _, raw = await call(session, url, body, headers, {"include_usage": False})
    assert all("usage" not in json.loads(d) for _, d in parse_sse(raw)[:-1])


async def test_openai_tool_calls(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    second = ToolCallSpec("lookup", '{"q": "x"}')
    fake.script("tools", Behavior(tool_calls=[TOOL, second]))
    url, body, headers = request_for("openai", fake, "tools")
    _, _, raw = await call(session, url, body, headers)
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert calls[0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert calls[1]["function"]["name"] == "lookup" and calls[1]["id"].startswith("call_")

    body["stream"] = True
    _, _, raw = await call(session, url, body, headers)
    chunks = [json.loads(d) for _, d in parse_sse(raw)[:-1]]
    acc: dict[int, dict[str, str]] = {}
    for c in chunks:
        for tc in c["choices"][0]["delta"].get("tool_calls", []):
            slot = acc.setdefault(tc["index"], {"arguments": ""})
            if "id" in tc:
                assert "id" not in slot, "id, type and name come once, on the first delta"
                slot.update(id=tc["id"], type=tc["type"], name=tc["function"]["name"])
            slot["arguments"] += tc["function"]["arguments"]
    assert acc[0] == {
        "id": "call_1",
        "type": "function",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert acc[1]["arguments"] == '{"q": "x"}'
    argument_deltas = [c for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert len(argument_deltas) > 4  # arguments are streamed as fragments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_openai_embeddings(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url = fake.openai_base + "/embeddings"
    body: dict[str, Any] = {"model": "emb", "input": ["one two", "three"]}
    status, rh, raw = await call(session, url, body, OPENAI_H)
    assert status == 200 and rh["content-type"] == "application/json"
    obj = json.loads(raw)
    assert obj["object"] == "list" and obj["model"] == "emb"
    assert obj["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert [d["index"] for d in obj["data"]] == [0, 1]
    vec = obj["data"][0]["embedding"]
    assert len(vec) == 8
    assert abs(sum(v * v for v in vec) - 1.0) < 1e-5
    _, _, again = await call(session, url, body, OPENAI_H)
    assert json.loads(again)["data"] == obj["data"]  # deterministic

    body.update(encoding_format="base64", dimensions=16)
    _, _, raw = await call(session, url, body, OPENAI_H)
    b64 = json.loads(raw)["data"][0]["embedding"]
    decoded = array.array("f", base64.b64decode(b64))
    assert len(decoded) == 16
    body["encoding_format"] = "float"
    _, _, raw = await call(session, url, body, OPENAI_H)
    assert json.loads(raw)["data"][0]["embedding"] == list(decoded)


async def test_openai_models(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("my-model", Behavior())
    async with session.get(fake.openai_base + "/models", headers=OPENAI_H) as resp:
        obj = await resp.json()
    assert obj["object"] == "list"
    assert "my-model" in [m["id"] for m in obj["data"]]


async def test_azure_classic_and_v1(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    base = f"{fake.azure_base}/openai/deployments/my-dep"
    body = {"messages": MESSAGES}
    status, _, raw = await call(session, base + "/chat/completions", body, {"api-key": "k"})
    assert status == 404 and json.loads(raw)["error"]["message"] == "Resource not found"
    url = base + "/chat/completions?api-version=2024-10-21"
    status, _, raw = await call(session, url, body, {})
    assert status == 401 and json.loads(raw)["error"]["code"] == "401"
    status, _, raw = await call(session, url, body, {"api-key": "k"})
    obj = json.loads(raw)
    assert status == 200 and obj["model"] == "my-dep"
    assert "prompt_filter_results" in obj
    rec = fake.records[-1]
    assert (rec.provider, rec.model) == ("azure", "my-dep")

    _, _, raw = await call(session, url, {**body, "stream": True}, {"api-key": "k"})
    events = parse_sse(raw)
    first = json.loads(events[0][1])
    assert first["choices"] == [] and first["id"] == "" and "prompt_filter_results" in first
    assert stream_text("openai", events[1:]).startswith("Hello from my-dep")

    emb = base + "/embeddings?api-version=2024-10-21"
    status, _, raw = await call(session, emb, {"input": "hi"}, {"api-key": "k"})
    assert status == 200 and json.loads(raw)["model"] == "my-dep"

    v1 = fake.azure_base + "/openai/v1/chat/completions"
    status, _, raw = await call(session, v1, {"model": "dep2", "messages": MESSAGES}, OPENAI_H)
    assert status == 200 and json.loads(raw)["model"] == "dep2"
    assert fake.records[-1].provider == "azure"


# -- Anthropic -----------------------------------------------------------------------------------


async def test_anthropic_plain(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("claude-x", Behavior(text="Let me check.", tool_calls=[TOOL]))
    url, body, headers = request_for("anthropic", fake, "claude-x")
    status, rh, raw = await call(session, url, body, headers)
    assert status == 200 and rh["content-type"] == "application/json"
    assert rh["request-id"].startswith("req_")
    obj = json.loads(raw)
    assert obj["type"] == "message" and obj["role"] == "assistant" and obj["model"] == "claude-x"
    assert obj["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert obj["stop_reason"] == "tool_use" and obj["stop_sequence"] is None
    assert obj["usage"]["input_tokens"] == 5 and obj["usage"]["output_tokens"] == 3 + 3


async def test_anthropic_stream_order(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("claude-x", Behavior(text="Hello!", chunks=2, tool_calls=[TOOL]))
    url, body, headers = request_for("anthropic", fake, "claude-x", stream=True)
    status, rh, raw = await call(session, url, body, headers)
    assert status == 200 and rh["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for (n, _), d in zip(events, datas, strict=True))
    assert datas[0]["message"]["stop_reason"] is None and datas[0]["message"]["content"] == []
    assert datas[6]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }
    partial = "".join(d["delta"]["partial_json"] for d in datas[7:9])
    assert json.loads(partial) == {"city": "Paris"}
    assert datas[10]["delta"]["stop_reason"] == "tool_use"
    assert datas[10]["usage"]["output_tokens"] == 1 + 3  # answer words + tool call words
    assert stream_text("anthropic", events) == "Hello!"
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


async def test_anthropic_validation(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url, body, headers = request_for("anthropic", fake, "claude-x")
    status, _, raw = await call(session, url, body, {"anthropic-version": "2023-06-01"})
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    status, _, raw = await call(session, url, body, {"x-api-key": "k"})
    assert status == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    del body["max_tokens"]
    status, rh, raw = await call(session, url, body, headers)
    obj = json.loads(raw)
    assert status == 400
    assert obj["type"] == "error" and obj["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in obj["error"]["message"]
    assert obj["request_id"] == rh["request-id"]
    assert [r.status for r in fake.records] == [401, 400, 400]


# -- Gemini --------------------------------------------------------------------------------------


async def test_gemini_plain(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url, body, headers = request_for("gemini", fake, "gemini-x")
    status, rh, raw = await call(session, url, body, headers)
    assert status == 200 and rh["content-type"].startswith("application/json")
    obj = json.loads(raw)
    cand = obj["candidates"][0]
    assert cand["content"]["role"] == "model" and cand["finishReason"] == "STOP"
    assert plain_text("gemini", obj) == "Hello from gemini-x. This is a scripted answer."
    assert obj["usageMetadata"] == {
        "promptTokenCount": 5,
        "candidatesTokenCount": 8,
        "totalTokenCount": 13,
    }
    assert obj["modelVersion"] == "gemini-x"
    rec = fake.records[0]
    assert (rec.provider, rec.model, rec.stream) == ("gemini", "gemini-x", False)

    # the key may come as a query parameter too; without any key, 401 in Google's shape
    status, _, _ = await call(session, url + "?key=abc", body, {})
    assert status == 200
    status, _, raw = await call(session, url, body, {})
    err = json.loads(raw)["error"]
    assert status == 401 and err["code"] == 401 and err["status"] == "UNAUTHENTICATED"


async def test_gemini_stream(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("gemini-x", Behavior(text="Hello", chunks=2))
    url, body, headers = request_for("gemini", fake, "gemini-x", stream=True)
    status, rh, raw = await call(session, url, body, headers)
    assert status == 200 and rh["content-type"].startswith("text/event-stream")
    assert raw.count(b"\r\n\r\n") == 2 and raw.endswith(b"}\r\n\r\n")
    assert b"event:" not in raw and b"[DONE]" not in raw
    first, last = (json.loads(d) for _, d in parse_sse(raw))
    assert "finishReason" not in first["candidates"][0]
    assert first["usageMetadata"] == {"promptTokenCount": 5, "totalTokenCount": 5}
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["candidatesTokenCount"] == 1
    assert stream_text("gemini", parse_sse(raw)) == "Hello"

    _, _, raw = await call(session, url, body, headers, {"sse_line_ending": "\n", "chunks": 2})
    assert b"\r" not in raw and raw.count(b"\n\n") == 2

    # without alt=sse the answer is one JSON array of the chunks
    plain_url = url.removesuffix("?alt=sse")
    status, _, raw = await call(session, plain_url, body, headers)
    chunks = json.loads(raw)
    assert status == 200 and isinstance(chunks, list) and len(chunks) == 2


async def test_gemini_function_call(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("gemini-x", Behavior(tool_calls=[ToolCallSpec("get_weather", '{"city":"Paris"}')]))
    url, body, headers = request_for("gemini", fake, "gemini-x")
    _, _, raw = await call(session, url, body, headers)
    cand = json.loads(raw)["candidates"][0]
    assert cand["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    ]
    assert cand["finishReason"] == "STOP"
    url, body, headers = request_for("gemini", fake, "gemini-x", stream=True)
    _, _, raw = await call(session, url, body, headers)
    (only,) = parse_sse(raw)  # function calls arrive whole, in the last chunk
    assert "functionCall" in json.loads(only[1])["candidates"][0]["content"]["parts"][0]


async def test_gemini_embeddings(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    base = f"{fake.gemini_base}/v1beta/models/emb"
    one = {"content": {"parts": [{"text": "hello world"}]}, "outputDimensionality": 4}
    status, _, raw = await call(session, base + ":embedContent", one, GEMINI_H)
    assert status == 200 and len(json.loads(raw)["embedding"]["values"]) == 4
    batch = {"requests": [{"model": "models/emb", **one}, {"model": "models/emb", **one}]}
    _, _, raw = await call(session, base + ":batchEmbedContents", batch, GEMINI_H)
    vectors = json.loads(raw)["embeddings"]
    assert len(vectors) == 2 and vectors[0] == vectors[1]
    status, _, _ = await call(session, base + ":nope", one, GEMINI_H)
    assert status == 404


# -- Cohere --------------------------------------------------------------------------------------


async def test_cohere_plain_and_stream(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("command-x", Behavior(text="Hello!", chunks=2))
    url, body, headers = request_for("cohere", fake, "command-x")
    status, _, raw = await call(session, url, body, headers)
    obj = json.loads(raw)
    assert status == 200 and obj["finish_reason"] == "COMPLETE"
    assert obj["message"]["role"] == "assistant"
    assert obj["message"]["content"] == [{"type": "text", "text": "Hello!"}]
    assert obj["usage"]["tokens"] == {"input_tokens": 5, "output_tokens": 1}
    assert obj["usage"]["billed_units"] == {"input_tokens": 5, "output_tokens": 1}

    body["stream"] = True
    status, rh, raw = await call(session, url, body, headers)
    assert rh["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    assert [n for n, _ in events] == [
        "message-start",
        "content-start",
        "content-delta",
        "content-delta",
        "content-end",
        "message-end",
    ]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for (n, _), d in zip(events, datas, strict=True))
    assert datas[0]["delta"]["message"]["role"] == "assistant"
    assert datas[-1]["delta"]["finish_reason"] == "COMPLETE"
    assert datas[-1]["delta"]["usage"]["tokens"]["output_tokens"] == 1
    assert stream_text("cohere", events) == "Hello!"


async def test_cohere_tool_calls_and_embed(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("command-x", Behavior(text="I will look it up.", tool_calls=[TOOL]))
    url, body, headers = request_for("cohere", fake, "command-x")
    _, _, raw = await call(session, url, body, headers)
    obj = json.loads(raw)
    assert obj["finish_reason"] == "TOOL_CALL"
    assert obj["message"]["tool_plan"] == "I will look it up."
    assert obj["message"]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    body["stream"] = True
    _, _, raw = await call(session, url, body, headers)
    datas = [json.loads(d) for _, d in parse_sse(raw)]
    kinds = [d["type"] for d in datas]
    assert kinds[0] == "message-start" and kinds[-1] == "message-end"
    assert "tool-plan-delta" in kinds and kinds.index("tool-call-start") < kinds.index(
        "tool-call-end"
    )
    args = "".join(
        d["delta"]["message"]["tool_calls"]["function"]["arguments"]
        for d in datas
        if d["type"] in ("tool-call-start", "tool-call-delta")
    )
    assert json.loads(args) == {"city": "Paris"}
    assert datas[-1]["delta"]["finish_reason"] == "TOOL_CALL"

    embed = {"model": "embed-x", "texts": ["a b", "c"], "embedding_types": ["float", "int8"]}
    status, _, raw = await call(session, fake.cohere_base + "/v2/embed", embed, COHERE_H)
    obj = json.loads(raw)
    assert status == 200 and obj["texts"] == ["a b", "c"]
    assert len(obj["embeddings"]["float"]) == 2 and len(obj["embeddings"]["int8"][0]) == 8
    assert obj["meta"]["billed_units"]["input_tokens"] == 3


# -- errors per format ---------------------------------------------------------------------------


async def test_auth_is_required(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    for fmt in FORMATS:
        url, body, _ = request_for(fmt, fake, "m")
        status, _, raw = await call(session, url, body, {"Authorization": "Bearer "})
        assert status == 401, fmt
        json.loads(raw)
    status, _, raw = await call(session, fake.openai_base + "/chat/completions", {}, {})
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"
    assert json.loads(raw)["error"]["param"] is None
    status, _, raw = await call(session, fake.cohere_base + "/v2/chat", {"model": "m"}, {})
    assert status == 401 and set(json.loads(raw)) == {"message"}


async def test_openai_rate_limit_error(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    extra = {"retry-after": "0", "retry-after-ms": "5", "x-should-retry": "true"}
    fake.script("m", Behavior(status=429, headers=extra))
    url, body, headers = request_for("openai", fake, "m", stream=True)
    status, rh, raw = await call(session, url, body, headers)
    assert status == 429 and rh["content-type"] == "application/json"
    assert json.loads(raw) == {
        "error": {
            "message": "Rate limit reached for requests.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert rh["x-request-id"].startswith("req_")
    assert rh["x-ratelimit-remaining-requests"] == "0"
    assert {k: rh[k] for k in extra} == extra
    assert fake.records[0].status == 429


async def test_anthropic_errors(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("m", [Behavior(status=529), Behavior(status=429, headers={"retry-after": "1"})])
    url, body, headers = request_for("anthropic", fake, "m")
    status, rh, raw = await call(session, url, body, headers)
    obj = json.loads(raw)
    assert status == 529
    assert obj["type"] == "error" and obj["error"] == {
        "type": "overloaded_error",
        "message": "Overloaded",
    }
    assert obj["request_id"] == rh["request-id"]
    status, rh, raw = await call(session, url, body, headers)
    assert status == 429 and json.loads(raw)["error"]["type"] == "rate_limit_error"
    assert rh["retry-after"] == "1"
    assert rh["anthropic-ratelimit-requests-remaining"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rh["anthropic-ratelimit-tokens-reset"])


async def test_gemini_and_cohere_errors(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.default = Behavior(status=429)
    url, body, headers = request_for("gemini", fake, "m")
    status, rh, raw = await call(session, url, body, headers)
    assert status == 429 and "x-request-id" in rh
    err = json.loads(raw)["error"]
    assert err["code"] == 429 and err["status"] == "RESOURCE_EXHAUSTED" and err["message"]
    url, body, headers = request_for("cohere", fake, "m")
    status, _, raw = await call(session, url, body, headers)
    assert status == 429 and list(json.loads(raw)) == ["message"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_error_overrides(
    fmt: str, fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("m", Behavior(status=400, error_message="Bad thing.", error_type="weird_error"))
    url, body, headers = request_for(fmt, fake, "m")
    status, _, raw = await call(session, url, body, headers)
    assert status == 400
    assert b"Bad thing." in raw
    if fmt != "cohere":
        assert b"weird_error" in raw


async def test_error_code_override(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("m", Behavior(status=400, error_code="context_length_exceeded"))
    url, body, headers = request_for("openai", fake, "m")
    _, _, raw = await call(session, url, body, headers)
    assert json.loads(raw)["error"]["code"] == "context_length_exceeded"


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["reset_before_body", "reset_mid_body"])
async def test_resets(
    fault: str, stream: bool, fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("m", Behavior(fault=fault))  # type: ignore[arg-type]
    url, body, headers = request_for("openai", fake, "m", stream=stream)
    got = b""
    async with session.post(url, json=body, headers=headers) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for piece in resp.content.iter_any():
                got += piece
    if fault == "reset_before_body":
        assert got == b""
    elif stream:
        assert [json.loads(d)["choices"][0]["delta"]["role"] for _, d in parse_sse(got)] == [
            "assistant"
        ]
    else:
        assert 0 < len(got) < 600
    rec = await fake.wait_until_closed(fake.records[0])
    assert rec.aborted is not None and rec.first_byte is not None
    assert rec.completed is None and rec.disconnected is None and rec.closed == rec.aborted


async def test_truncated_json(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("m", Behavior(fault="truncated_json"))
    url, body, headers = request_for("openai", fake, "m")
    status, rh, raw = await call(session, url, body, headers)
    assert status == 200 and int(rh["content-length"]) == len(raw) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert raw.startswith(b'{"id":"chatcmpl-')
    url, body, headers = request_for("anthropic", fake, "m", stream=True)
    status, _, raw = await call(session, url, body, headers, {"fault": "truncated_json"})
    events = parse_sse(raw)
    assert [n for n, _ in events] == ["message_start", "content_block_start"]
    json.loads(events[0][1])
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[1][1])
    assert all(r.completed is not None for r in fake.records)


@pytest.mark.parametrize("stream", [False, True])
async def test_html_error(stream: bool, fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url, body, headers = request_for("anthropic", fake, "m", stream=stream)
    status, rh, raw = await call(session, url, body, headers, {"fault": "html_error"})
    assert status == 502 and rh["content-type"] == "text/html"
    assert raw.startswith(b"<html>") and b"502 Bad Gateway" in raw
    assert fake.records[0].status == 502


async def test_no_terminator(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.default = Behavior(fault="no_terminator")
    got = {}
    for fmt in FORMATS:
        url, body, headers = request_for(fmt, fake, "m", stream=True)
        status, _, raw = await call(session, url, body, headers)
        assert status == 200
        got[fmt] = parse_sse(raw)
        assert stream_text(fmt, got[fmt]) == "Hello from m. This is a scripted answer."
    assert got["openai"][-1][1] != "[DONE]"
    assert json.loads(got["openai"][-1][1])["choices"][0]["finish_reason"] == "stop"
    assert got["anthropic"][-1][0] == "message_delta"
    assert "finishReason" not in json.loads(got["gemini"][-1][1])["candidates"][0]
    assert got["cohere"][-1][0] == "content-end"
    assert all(r.completed is not None for r in fake.records)


async def test_midstream_error(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.default = Behavior(fault="midstream_error", fault_after=2)
    last = {}
    for fmt in FORMATS:
        url, body, headers = request_for(fmt, fake, "m", stream=True)
        status, _, raw = await call(session, url, body, headers)
        events = parse_sse(raw)
        assert status == 200 and len(events) == 3
        last[fmt] = (events[-1][0], json.loads(events[-1][1]))
    assert last["openai"][1]["error"]["type"] == "server_error"
    assert set(last["openai"][1]["error"]) == {"message", "type", "param", "code"}
    assert last["anthropic"] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert last["gemini"][1]["error"]["code"] == 503
    assert last["gemini"][1]["error"]["status"] == "UNAVAILABLE"
    assert last["cohere"][0] == "message-end"
    assert last["cohere"][1]["delta"]["finish_reason"] == "ERROR"
    assert last["cohere"][1]["delta"]["error"]


@pytest.mark.parametrize("stream", [False, True])
async def test_stall(stream: bool, fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("m", Behavior(fault="stall", stall_s=0.2))
    url, body, headers = request_for("openai", fake, "m", stream=stream)
    async with session.post(url, json=body, headers=headers) as resp:
        headers_at = time.monotonic()
        assert resp.status == 200
        raw = await resp.read()
        body_at = time.monotonic()
    assert body_at - headers_at >= 0.15
    rec = fake.records[0]
    assert rec.first_byte is not None and rec.completed is not None
    assert rec.completed - rec.first_byte >= 0.2
    if stream:
        assert parse_sse(raw)[-1][1] == "[DONE]"
    else:
        assert json.loads(raw)["object"] == "chat.completion"


@pytest.mark.parametrize("stream", [False, True])
async def test_drip(stream: bool, fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url, body, headers = request_for("cohere", fake, "m", stream=stream)
    _, _, normal = await call(session, url, body, headers)
    fake.script("m", Behavior(fault="drip", chunk_interval=0.001))
    async with session.post(url, json=body, headers=headers) as resp:
        pieces = [p async for p in resp.content.iter_any()]
    assert len(pieces) > 10 and max(len(p) for p in pieces) < 100
    dripped = b"".join(pieces)
    assert len(dripped) == len(normal)
    if stream:
        assert [n for n, _ in parse_sse(dripped)] == [n for n, _ in parse_sse(normal)]
    else:
        assert json.loads(dripped)["message"] == json.loads(normal)["message"]


# -- SSE framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
async def test_line_endings(eol: str, fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url, body, headers = request_for("anthropic", fake, "m", stream=True)
    _, _, raw = await call(session, url, body, headers, {"sse_line_ending": eol})
    other = {"\n": b"\r", "\r\n": b"\r\r", "\r": b"\n"}[eol]
    assert other not in raw.replace(eol.encode(), b"")
    assert raw.endswith(f'data: {{"type":"message_stop"}}{eol}{eol}'.encode())
    assert [n for n, _ in parse_sse(raw)][-1] == "message_stop"


async def test_sse_comments(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    url, body, headers = request_for("openai", fake, "m", stream=True)
    _, _, plain = await call(session, url, body, headers)
    _, _, raw = await call(session, url, body, headers, {"sse_comments": True})
    events = parse_sse(raw)
    assert len(events) == len(parse_sse(plain))
    assert raw.startswith(b": keep-alive\n\n") and raw.count(b": keep-alive\n\n") == len(events)
    assert parse_sse(raw.replace(b": keep-alive\n\n", b"")) == events


async def test_split_writes(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("m", Behavior(split_writes=True))
    url, body, headers = request_for("anthropic", fake, "m", stream=True)
    async with session.post(url, json=body, headers=headers) as resp:
        pieces = [p async for p in resp.content.iter_any()]
    raw = b"".join(pieces)
    events = parse_sse(raw)
    assert events[-1][0] == "message_stop"
    assert len(pieces) >= len(events)  # every event arrived in (at least) two reads
    assert any(not p.endswith(b"\n\n") for p in pieces)


# -- scripting -----------------------------------------------------------------------------------


async def test_script_list_callable_and_default(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("list", [Behavior(status=429), Behavior(status=500), Behavior(text="ok")])
    fake.script("func", lambda n: Behavior(text=f"call {n}"))
    fake.default = Behavior(text="default answer")
    seen: dict[str, list[Any]] = {"list": [], "func": [], "other": []}
    for _ in range(4):
        for model in seen:
            url, body, headers = request_for("openai", fake, model)
            status, _, raw = await call(session, url, body, headers)
            seen[model].append(plain_text("openai", json.loads(raw)) if status == 200 else status)
    assert seen["list"] == [429, 500, "ok", "ok"]
    assert seen["func"] == ["call 0", "call 1", "call 2", "call 3"]
    assert seen["other"] == ["default answer"] * 4
    assert [r.status for r in fake.records_for("list")] == [429, 500, 200, 200]

    fake.script("list", [Behavior(status=503), Behavior()])  # re-scripting restarts the count
    url, body, headers = request_for("openai", fake, "list")
    assert (await call(session, url, body, headers))[0] == 503

    fake.reset()
    assert fake.records == [] and fake.default == Behavior()
    status, _, raw = await call(session, url, body, headers)
    assert status == 200 and "Hello from list" in plain_text("openai", json.loads(raw))


async def test_header_overrides_script(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("m", Behavior(status=500))
    url, body, headers = request_for("gemini", fake, "m")
    status, _, raw = await call(session, url, body, headers, {"text": "from the header"})
    assert status == 200 and plain_text("gemini", json.loads(raw)) == "from the header"
    status, _, raw = await call(session, url, body, {**headers, "x-fake-behavior": "{oops"})
    assert status == 400 and "x-fake-behavior" in json.loads(raw)["error"]["message"]
    status, _, _ = await call(session, url, body, headers)
    assert status == 500


async def test_failing_script_answers_500(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("m", lambda n: Behavior(status=1000))
    url, body, headers = request_for("openai", fake, "m")
    status, _, raw = await call(session, url, body, headers)
    assert status == 500 and "script" in json.loads(raw)["error"]["message"]


async def test_usage_and_finish_overrides(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("m", Behavior(prompt_tokens=11, completion_tokens=22, finish_reason="length"))
    url, body, headers = request_for("openai", fake, "m")
    obj = json.loads((await call(session, url, body, headers))[2])
    assert obj["usage"]["prompt_tokens"] == 11 and obj["usage"]["completion_tokens"] == 22
    assert obj["choices"][0]["finish_reason"] == "length"
    url, body, headers = request_for("anthropic", fake, "m")
    obj = json.loads((await call(session, url, body, headers))[2])
    assert obj["stop_reason"] == "length" and obj["usage"]["output_tokens"] == 22


# -- timing, records, disconnects ----------------------------------------------------------------


async def test_timings_are_recorded(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    fake.script("m", Behavior(latency=0.1, first_chunk_delay=0.1, chunk_interval=0.02, chunks=5))
    url, body, headers = request_for("openai", fake, "m", stream=True)
    start = time.monotonic()
    _, _, raw = await call(session, url, body, headers)
    rec = fake.records[0]
    assert rec.first_byte is not None and rec.completed is not None
    assert start <= rec.arrived
    assert rec.first_byte - rec.arrived >= 0.1
    assert rec.completed - rec.first_byte >= 0.1 + 0.02 * (len(parse_sse(raw)) - 1)
    assert await fake.wait_until_closed(rec) is rec


async def test_client_closing_a_stream_is_recorded_at_once(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("slow", Behavior(chunks=40, chunk_interval=0.05))
    url, body, headers = request_for("openai", fake, "slow", stream=True)
    resp = await session.post(url, json=body, headers=headers)
    try:
        first = await resp.content.readuntil(b"\n\n")
        assert first.startswith(b"data: ")
    finally:
        closed_at = time.monotonic()
        resp.close()
    rec = await fake.wait_until_closed(fake.records[0], timeout=1.0)
    assert rec.disconnected is not None and rec.completed is None
    assert rec.disconnected - closed_at < 0.02
    assert rec.closed == rec.disconnected


async def test_client_giving_up_before_headers_is_recorded(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("slow", Behavior(latency=5))
    url, body, headers = request_for("anthropic", fake, "slow")
    with pytest.raises(asyncio.TimeoutError):
        await session.post(url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(0.1))
    gave_up = time.monotonic()
    rec = await fake.wait_until_closed(fake.records[0], timeout=1.0)
    assert rec.disconnected is not None and rec.first_byte is None
    assert rec.disconnected - gave_up < 0.02


async def test_wait_until_closed_times_out(
    fake: FakeProvider, session: aiohttp.ClientSession
) -> None:
    fake.script("m", Behavior(fault="stall", stall_s=5))
    url, body, headers = request_for("cohere", fake, "m", stream=True)
    async with session.post(url, json=body, headers=headers) as resp:
        assert resp.status == 200
        rec = fake.records[0]
        with pytest.raises(TimeoutError, match="still open"):
            await fake.wait_until_closed(rec, timeout=0.05)
    await fake.wait_until_closed(rec)
    assert rec.disconnected is not None


async def test_stop_ends_live_handlers(session: aiohttp.ClientSession) -> None:
    fake = FakeProvider()
    await fake.start()
    fake.default = Behavior(fault="stall", stall_s=30)
    url, body, headers = request_for("openai", fake, "m", stream=True)
    async with session.post(url, json=body, headers=headers) as resp:
        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert fake.records[0].disconnected is not None


async def test_bounded_records(session: aiohttp.ClientSession) -> None:
    async with FakeProvider(max_records=3) as fake:
        url, body, headers = request_for("openai", fake, "m")
        for _ in range(10):
            await call(session, url, body, headers)
        assert 3 <= len(fake.records) < 6
        assert fake.records[-1].id == 10
    async with FakeProvider(keep_records=False) as fake:
        url, body, headers = request_for("openai", fake, "m")
        assert (await call(session, url, body, headers))[0] == 200
        assert fake.records == []


def test_record_to_dict() -> None:
    rec = Record(1, "openai", "/v1/x", "m", False, {}, None, 1.0, completed=2.0)
    assert rec.to_dict()["closed"] == 2.0
    assert json.loads(msgspec.json.encode(rec.to_dict()))["model"] == "m"


# -- control endpoints and the CLI ---------------------------------------------------------------


async def test_control_endpoints(fake: FakeProvider, session: aiohttp.ClientSession) -> None:
    script = {"model": "m", "behavior": [{"status": 429}, {"text": "second"}]}
    async with session.post(fake.url + "/_fake/script", json=script) as resp:
        assert resp.status == 200
    async with session.post(fake.url + "/_fake/script", json={"behavior": {"text": "dflt"}}) as r:
        assert r.status == 200
    async with session.post(fake.url + "/_fake/script", json={"model": "m", "behavior": 3}) as r:
        assert r.status == 400 and "error" in await r.json()
    url, body, headers = request_for("openai", fake, "m")
    assert (await call(session, url, body, headers))[0] == 429
    _, _, raw = await call(session, url, body, headers)
    assert plain_text("openai", json.loads(raw)) == "second"
    url, body, headers = request_for("openai", fake, "other")
    _, _, raw = await call(session, url, body, headers)
    assert plain_text("openai", json.loads(raw)) == "dflt"
    async with session.get(fake.url + "/_fake/records", params={"model": "m"}) as resp:
        records = await resp.json()
    assert [r["status"] for r in records] == [429, 200]
    assert records[0]["body"] == body | {"model": "m"} and records[0]["closed"] is not None
    async with session.post(fake.url + "/_fake/reset") as resp:
        assert resp.status == 200
    async with session.get(fake.url + "/_fake/records") as resp:
        assert await resp.json() == []


async def test_cli_serves_until_sigterm(session: aiohttp.ClientSession) -> None:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "salvo.testing",
        "--port",
        "0",
        "--no-records",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.fullmatch(r"salvo fake provider listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        base = match.group(1)
        status, _, raw = await call(
            session, base + "/v1/chat/completions", {"model": "m", "messages": MESSAGES}, OPENAI_H
        )
        assert status == 200 and json.loads(raw)["model"] == "m"
        async with session.get(base + "/_fake/records") as resp:
            assert await resp.json() == []  # --no-records
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
