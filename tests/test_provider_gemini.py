"""The Gemini adapter from bytes: requests built, responses and streams parsed, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

import salvo
from salvo._http import SSEDecoder
from salvo._models import resolve_deployment
from salvo.providers import Endpoint, get_provider
from salvo.providers.gemini import GeminiAdapter, clean_schema

BASE = "https://generativelanguage.googleapis.com"
EP = Endpoint("gemini", "gemini-2.5-flash", BASE, "AIza-test")
ADAPTER = GeminiAdapter()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def build(messages: list[dict[str, Any]], stream: bool = False, **params: Any) -> dict[str, Any]:
    req = ADAPTER.build_chat(EP, ADAPTER.headers(EP), messages, params, stream)
    assert req.method == "POST"
    body: dict[str, Any] = json.loads(req.body)
    return body


def sse(raw: bytes) -> list[tuple[str | None, bytes]]:
    dec = SSEDecoder()
    return [*dec.feed(raw), *dec.flush()]


# -- requests -----------------------------------------------------------------------------------


def test_urls_and_headers() -> None:
    h = ADAPTER.headers(EP)
    assert h == {"content-type": "application/json", "x-goog-api-key": "AIza-test"}
    msgs = [{"role": "user", "content": "Hi"}]
    unary = ADAPTER.build_chat(EP, h, msgs, {}, False)
    assert unary.url == f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent"
    streamed = ADAPTER.build_chat(EP, h, msgs, {}, True)
    assert streamed.url == f"{BASE}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert ADAPTER.stream_ends_at_eof is True
    prefixed = Endpoint("gemini", "models/gemini-2.5-pro", BASE, "k")
    url = ADAPTER.build_chat(prefixed, h, msgs, {}, False).url
    assert url == f"{BASE}/v1beta/models/gemini-2.5-pro:generateContent"


def test_roles_system_and_merging() -> None:
    body = build(
        [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert body == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "Bye"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be terse."}, {"text": "Use metric."}]},
    }


def test_generation_config() -> None:
    body = build(
        [{"role": "user", "content": "Hi"}],
        temperature=0.7,
        top_p=0.95,
        top_k=40,
        max_tokens=100,
        stop="END",
        n=2,
        seed=1,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        user="dropped",
        parallel_tool_calls=True,
        stream_options={"include_usage": True},
    )
    assert body["generationConfig"] == {
        "temperature": 0.7,
        "topP": 0.95,
        "topK": 40,
        "candidateCount": 2,
        "seed": 1,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "maxOutputTokens": 100,
        "stopSequences": ["END"],
    }
    assert set(body) == {"contents", "generationConfig"}


def test_max_completion_tokens_and_native_passthrough() -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    body = build(
        [{"role": "user", "content": "Hi"}],
        max_completion_tokens=64,
        thinkingConfig={"thinkingBudget": 0},
        generationConfig={"responseModalities": ["TEXT"]},
        safetySettings=safety,
        cachedContent="cachedContents/abc",
    )
    assert body["generationConfig"] == {
        "maxOutputTokens": 64,
        "thinkingConfig": {"thinkingBudget": 0},
        "responseModalities": ["TEXT"],
    }
    assert body["safetySettings"] == safety
    assert body["cachedContent"] == "cachedContents/abc"


def test_response_format() -> None:
    obj = build([{"role": "user", "content": "Hi"}], response_format={"type": "json_object"})
    assert obj["generationConfig"] == {"responseMimeType": "application/json"}
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "tags": {"type": "array"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    body = build([{"role": "user", "content": "Hi"}], response_format=fmt)
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "tags": {"type": "array"}},
            "required": ["title"],
        },
    }
    text = build([{"role": "user", "content": "Hi"}], response_format={"type": "text"})
    assert "generationConfig" not in text


def test_clean_schema_keeps_property_names_that_look_like_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {"additionalProperties": {"type": "string", "additionalProperties": 1}},
        "items": [{"$schema": "x", "type": "integer"}],
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {"additionalProperties": {"type": "string"}},
        "items": [{"type": "integer"}],
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tools_and_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = build([{"role": "user", "content": "Hi"}], tools=[WEATHER_TOOL], tool_choice=choice)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Get weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_bad_tool_choice_is_a_config_error() -> None:
    with pytest.raises(salvo.ConfigError, match="tool_choice"):
        build([{"role": "user", "content": "Hi"}], tools=[WEATHER_TOOL], tool_choice="maybe")


def test_tool_round_trip() -> None:
    body = build(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        ]
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
            ],
        },
    ]


def test_tool_message_without_a_matching_call() -> None:
    with pytest.raises(salvo.ConfigError, match="function's name"):
        build([{"role": "tool", "tool_call_id": "nope", "content": "x"}])
    named = build([{"role": "tool", "tool_call_id": "nope", "name": "f", "content": "[1, 2]"}])
    assert named["contents"][0]["parts"] == [
        {"functionResponse": {"name": "f", "response": {"content": "[1, 2]"}}}
    ]


def test_media_parts() -> None:
    body = build(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?x=1"}},
                    {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                    {"fileData": {"mimeType": "video/mp4", "fileUri": "files/abc"}},
                ],
            }
        ]
    )
    assert body["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg?x=1", "mimeType": "image/jpeg"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
        {"fileData": {"mimeType": "video/mp4", "fileUri": "files/abc"}},
    ]
    with pytest.raises(salvo.ConfigError, match="'file'"):
        build([{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}])


# -- responses ----------------------------------------------------------------------------------

RESPONSE = b"""{
  "candidates": [{
    "content": {"role": "model", "parts": [
      {"text": "Thinking about it.", "thought": true},
      {"text": "1+1 equals "}, {"thoughtSignature": "c2ln"}, {"text": "2."}
    ]},
    "finishReason": "STOP", "index": 0,
    "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
  }],
  "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 6, "totalTokenCount": 31,
                    "cachedContentTokenCount": 4, "thoughtsTokenCount": 10},
  "modelVersion": "gemini-2.5-flash", "responseId": "Il0taoSYJ5Cez7"
}"""


def test_parse_text_response() -> None:
    resp = ADAPTER.parse_chat(EP, RESPONSE)
    assert resp.id == "Il0taoSYJ5Cez7"
    assert resp.model == "gemini-2.5-flash"
    assert resp.provider == "gemini"
    choice = resp.choices[0]
    assert choice.message.content == "1+1 equals 2."
    assert choice.message.reasoning_content == "Thinking about it."
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 15
    assert resp.usage.completion_tokens == 16
    assert resp.usage.total_tokens == 31
    assert resp.usage.prompt_tokens_details == {"cached_tokens": 4}
    assert resp.usage.completion_tokens_details == {"reasoning_tokens": 10}


def test_parse_function_call_response() -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3},
    }
    resp = ADAPTER.parse_chat(EP, json.dumps(body).encode())
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert resp.model == "gemini-2.5-flash"
    assert resp.usage is not None and resp.usage.total_tokens == 8


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("SOMETHING_NEW", "something_new"),
    ],
)
def test_finish_reason_mapping(reason: str, finish: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    resp = ADAPTER.parse_chat(EP, json.dumps(body).encode())
    assert resp.choices[0].finish_reason == finish


def test_blocked_prompt_gives_a_content_filter_choice() -> None:
    body = (
        b'{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}'
    )
    resp = ADAPTER.parse_chat(EP, body)
    assert len(resp.choices) == 1
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.choices[0].message.content is None


def test_truncated_response_is_a_decode_error() -> None:
    with pytest.raises(salvo.ResponseDecodeError, match="gemini"):
        ADAPTER.parse_chat(EP, RESPONSE[:50])


# -- streams ------------------------------------------------------------------------------------

STREAM = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}],'
    b'"usageMetadata":{"promptTokenCount":5,"totalTokenCount":5},'
    b'"modelVersion":"gemini-2.5-flash","responseId":"r1"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},'
    b'"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":5,'
    b'"candidatesTokenCount":2,"totalTokenCount":7},"modelVersion":"gemini-2.5-flash",'
    b'"responseId":"r1"}\r\n\r\n'
)


def run(raw: bytes) -> list[salvo.ChatCompletionChunk]:
    parser = ADAPTER.stream_parser(EP)
    chunks = [parser.feed(e, d) for e, d in sse(raw)]
    assert not parser.done
    return [c for c in chunks if c is not None]


def test_stream_text_with_crlf_framing() -> None:
    chunks = run(STREAM)
    assert len(chunks) == 2
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.role is None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello"
    assert chunks[0].choices[0].finish_reason is None and chunks[0].usage is None
    assert chunks[1].choices[0].finish_reason == "stop"
    assert chunks[1].usage is not None and chunks[1].usage.total_tokens == 7
    assert all(c.id == "r1" and c.provider == "gemini" for c in chunks)


def test_stream_function_calls_are_numbered() -> None:
    raw = (
        b'data: {"candidates":[{"content":{"parts":[{"functionCall":'
        b'{"name":"a","args":{}}}]}}]}\n\n'
        b'data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"b","args":'
        b'{"x":1}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":2,'
        b'"candidatesTokenCount":4}}\n\n'
    )
    chunks = run(raw)
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or ()]
    assert [(tc.index, tc.function.name if tc.function else None) for tc in calls] == [
        (0, "a"),
        (1, "b"),
    ]
    assert all(tc.id and tc.id.startswith("call_") and tc.type == "function" for tc in calls)
    assert calls[1].function is not None and calls[1].function.arguments == '{"x":1}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_stream_error_event_raises_by_code() -> None:
    parser = ADAPTER.stream_parser(EP)
    data = (
        b'{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}'
    )
    with pytest.raises(salvo.ServerError, match="overloaded") as info:
        parser.feed(None, data)
    assert info.value.status_code == 503
    with pytest.raises(salvo.StreamError, match="unreadable"):
        parser.feed(None, b'{"candidates": [')


# -- embeddings ---------------------------------------------------------------------------------

EMBED_EP = Endpoint("gemini", "gemini-embedding-001", BASE, "k")


def test_embed_one_string() -> None:
    req = ADAPTER.build_embedding(EMBED_EP, {}, "hello", {"dimensions": 8, "task_type": "X"})
    assert req.url == f"{BASE}/v1beta/models/gemini-embedding-001:embedContent"
    assert json.loads(req.body) == {
        "content": {"parts": [{"text": "hello"}]},
        "outputDimensionality": 8,
        "taskType": "X",
    }
    resp = ADAPTER.parse_embedding(EMBED_EP, b'{"embedding": {"values": [0.1, -0.2]}}')
    assert [e.embedding for e in resp.data] == [[0.1, -0.2]]
    assert resp.model == "gemini-embedding-001" and resp.provider == "gemini"


def test_embed_a_list() -> None:
    req = ADAPTER.build_embedding(EMBED_EP, {}, ["a", "b"], {})
    assert req.url == f"{BASE}/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert json.loads(req.body) == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    body = b'{"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}'
    resp = ADAPTER.parse_embedding(EMBED_EP, body)
    assert [(e.index, e.embedding) for e in resp.data] == [(0, [1.0]), (1, [2.0])]
    with pytest.raises(salvo.ConfigError, match="not tokens"):
        ADAPTER.build_embedding(EMBED_EP, {}, [[1, 2]], {})


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "google", "cls"),
    [
        (400, "INVALID_ARGUMENT", salvo.BadRequestError),
        (403, "PERMISSION_DENIED", salvo.PermissionDeniedError),
        (404, "NOT_FOUND", salvo.NotFoundError),
        (429, "RESOURCE_EXHAUSTED", salvo.RateLimitError),
        (500, "INTERNAL", salvo.ServerError),
        (503, "UNAVAILABLE", salvo.ServerError),
    ],
)
def test_error_statuses(status: int, google: str, cls: type[salvo.ProviderError]) -> None:
    body = json.dumps({"error": {"code": status, "message": "Nope.", "status": google}})
    err = ADAPTER.parse_error(EP, status, {}, body.encode())
    assert type(err) is cls
    assert err.status_code == status
    assert err.body["status"] == google
    assert "Nope." in str(err)


def test_retry_delay_from_details_and_header_wins() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"},
                ],
            }
        }
    ).encode()
    assert ADAPTER.parse_error(EP, 429, {}, body).retry_after == 13.0
    assert ADAPTER.parse_error(EP, 429, {"retry-after": "2"}, body).retry_after == 2.0


# -- resolution ---------------------------------------------------------------------------------


def test_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-env")
    monkeypatch.delenv("GEMINI_API_BASE", raising=False)
    dep = resolve_deployment("gemini/gemini-2.5-pro")
    assert dep.endpoint.api_base == BASE
    assert dep.headers["x-goog-api-key"] == "AIza-env"
    assert resolve_deployment("gemini-2.5-flash").provider == "gemini"
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google")  # LiteLLM's name, read as a fallback
    assert resolve_deployment("gemini/gemini-2.5-pro").endpoint.api_key == "AIza-google"
    monkeypatch.delenv("GOOGLE_API_KEY")
    with pytest.raises(salvo.ConfigError, match="GEMINI_API_KEY"):
        resolve_deployment("gemini/gemini-2.5-pro")


def test_table_row() -> None:
    info = get_provider("gemini")
    assert info is not None
    assert info.prefixes == ("gemini-",)
    caps = info.capabilities
    assert caps.streaming and caps.tools and caps.embeddings and caps.batch_api
