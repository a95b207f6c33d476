"""The Anthropic adapter from bytes: requests built, responses and streams parsed, errors."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

import salvo
from salvo._http import SSEDecoder
from salvo._models import resolve_deployment
from salvo.providers import Endpoint, get_provider
from salvo.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicAdapter,
    from_anthropic_message,
    to_anthropic_body,
)

EP = Endpoint("anthropic", "claude-sonnet-4-5", "https://api.anthropic.com", "sk-ant-test")
ADAPTER = AnthropicAdapter()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def build(messages: list[dict[str, Any]], stream: bool = False, **params: Any) -> dict[str, Any]:
    req = ADAPTER.build_chat(EP, ADAPTER.headers(EP), messages, params, stream)
    assert req.method == "POST"
    assert req.url == "https://api.anthropic.com/v1/messages"
    body: dict[str, Any] = json.loads(req.body)
    return body


def sse(raw: bytes) -> list[tuple[str | None, bytes]]:
    dec = SSEDecoder()
    return [(e, d) for e, d in [*dec.feed(raw), *dec.flush()]]


# -- requests -----------------------------------------------------------------------------------


def test_headers_carry_key_and_version() -> None:
    ep = Endpoint("anthropic", "m", "https://x", "sk", extra_headers={"anthropic-beta": "b1"})
    h = ADAPTER.headers(ep)
    assert h["x-api-key"] == "sk"
    assert h["anthropic-version"] == "2023-06-01"
    assert h["content-type"] == "application/json"
    assert h["anthropic-beta"] == "b1"
    assert "authorization" not in h


def test_minimal_body_defaults_max_tokens_and_lifts_system() -> None:
    body = build(
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hi"},
        ]
    )
    assert body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "system": "Be terse.",
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    assert DEFAULT_MAX_TOKENS == 4096


def test_stream_flag_only_when_streaming() -> None:
    assert build([{"role": "user", "content": "Hi"}], stream=True)["stream"] is True
    msgs = [{"role": "user", "content": "Hi"}]
    req = ADAPTER.build_chat(EP, ADAPTER.headers(EP), msgs, {"stream": True}, False)
    assert "stream" not in json.loads(req.body)


def test_several_system_and_developer_messages_become_text_blocks() -> None:
    body = build(
        [
            {"role": "system", "content": "One."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
        ]
    )
    assert body["system"] == [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]


def test_system_cache_control_is_kept() -> None:
    part = {"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}}
    body = build([{"role": "system", "content": [part]}, {"role": "user", "content": "Hi"}])
    assert body["system"] == [part]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"max_tokens": 10}, {"max_tokens": 10}),
        ({"max_completion_tokens": 20}, {"max_tokens": 20}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["A", "B"]}, {"stop_sequences": ["A", "B"]}),
        ({"temperature": 0.3, "top_p": 0.9}, {"temperature": 0.3, "top_p": 0.9}),
        ({"temperature": 1.7}, {"temperature": 1.7}),
        ({"user": "u-1"}, {"metadata": {"user_id": "u-1"}}),
        ({"metadata": {"user_id": "u-2", "other": "x"}}, {"metadata": {"user_id": "u-2"}}),
        ({"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2048}}, {"top_k": 5}),
        ({"service_tier": "standard_only"}, {"service_tier": "standard_only"}),
    ],
)
def test_params_are_mapped(params: dict[str, Any], expected: dict[str, Any]) -> None:
    body = build([{"role": "user", "content": "Hi"}], **params)
    for key, value in expected.items():
        assert body[key] == value


def test_openai_only_params_are_dropped() -> None:
    body = build(
        [{"role": "user", "content": "Hi"}],
        n=1,
        seed=3,
        logprobs=True,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        logit_bias={"1": 2},
        stream_options={"include_usage": True},
        response_format={"type": "json_object"},
        service_tier="default",
        reasoning_effort="low",
    )
    assert set(body) == {"model", "messages", "max_tokens"}


def test_tools_and_tool_choice() -> None:
    body = build([{"role": "user", "content": "Hi"}], tools=[WEATHER_TOOL], tool_choice="auto")
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "Get weather",
        }
    ]
    assert body["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_tool_choice_mapping(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    params: dict[str, Any] = {"tools": [WEATHER_TOOL], "tool_choice": choice}
    if parallel is not None:
        params["parallel_tool_calls"] = parallel
    assert build([{"role": "user", "content": "Hi"}], **params)["tool_choice"] == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    body = build([{"role": "user", "content": "Hi"}], tool_choice="required")
    assert "tool_choice" not in body and "tools" not in body


def test_bad_tool_choice_is_a_config_error() -> None:
    with pytest.raises(salvo.ConfigError, match="tool_choice"):
        build([{"role": "user", "content": "Hi"}], tools=[WEATHER_TOOL], tool_choice="sometimes")


def test_tool_round_trip_and_turn_merging() -> None:
    body = build(
        [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "user", "content": "Please."},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "21C"}],
            },
            {"role": "user", "content": "Thanks"},
        ]
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris and Rome?"},
                {"type": "text", "text": "Please."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_invalid_tool_arguments_are_a_config_error() -> None:
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{nope"}}
    with pytest.raises(salvo.ConfigError, match="not valid JSON"):
        build(
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
            ]
        )


def test_image_parts() -> None:
    body = build(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_unsupported_parts_are_config_errors() -> None:
    with pytest.raises(salvo.ConfigError, match="input_audio"):
        build([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])
    with pytest.raises(salvo.ConfigError, match="base64"):
        build(
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}],
                }
            ]
        )


def test_to_anthropic_body_is_the_same_mapping_without_stream() -> None:
    body = to_anthropic_body("claude-haiku-4-5", [{"role": "user", "content": "Hi"}], {})
    assert body == {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 4096,
    }


# -- responses ----------------------------------------------------------------------------------

TOOL_RESPONSE = b"""{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [
    {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig"},
    {"type": "text", "text": "Let me check."},
    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}
  ],
  "stop_reason": "tool_use", "stop_sequence": null,
  "usage": {"input_tokens": 472, "output_tokens": 89,
            "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard"}
}"""


def test_parse_tool_use_response() -> None:
    resp = ADAPTER.parse_chat(EP, TOOL_RESPONSE)
    assert resp.id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert resp.model == "claude-sonnet-4-5-20250929"
    assert resp.provider == "anthropic"
    assert resp.created > 0
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert choice.message.reasoning_content == "The user wants weather."
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].id == "toolu_01A"
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 472 + 100 + 2000
    assert resp.usage.completion_tokens == 89
    assert resp.usage.total_tokens == 472 + 100 + 2000 + 89
    assert resp.usage.prompt_tokens_details == {"cached_tokens": 2000, "cache_creation_tokens": 100}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "pause_turn"),
        ("brand_new_reason", "brand_new_reason"),
    ],
)
def test_stop_reason_mapping(stop: str, finish: str) -> None:
    body = {
        "id": "m",
        "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": stop,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    resp = ADAPTER.parse_chat(EP, json.dumps(body).encode())
    assert resp.choices[0].finish_reason == finish
    assert resp.choices[0].message.tool_calls is None
    assert resp.usage is not None and resp.usage.prompt_tokens_details is None


def test_one_hour_cache_writes_are_recorded() -> None:
    msg = {
        "id": "m",
        "content": [],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 1,
            "output_tokens": 1,
            "cache_creation_input_tokens": 50,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
        },
    }
    resp = from_anthropic_message(msg, model="claude-haiku-4-5")
    assert resp.model == "claude-haiku-4-5"
    assert resp.choices[0].message.content is None
    assert resp.usage is not None
    assert resp.usage.prompt_tokens_details == {
        "cached_tokens": 0,
        "cache_creation_tokens": 50,
        "cache_creation_1h_tokens": 30,
    }


def test_from_anthropic_message_takes_bytes_or_dict() -> None:
    from_bytes = from_anthropic_message(TOOL_RESPONSE)
    from_dict = from_anthropic_message(json.loads(TOOL_RESPONSE), provider="anthropic-batch")
    calls = [r.choices[0].message.tool_calls for r in (from_bytes, from_dict)]
    assert calls[0] is not None and calls[1] is not None
    assert calls[0][0].id == calls[1][0].id == "toolu_01A"
    args = [json.loads(c[0].function.arguments) for c in calls if c is not None]
    assert args == [{"city": "Paris"}, {"city": "Paris"}]
    assert from_dict.provider == "anthropic-batch"
    with pytest.raises(msgspec.DecodeError):
        from_anthropic_message(b"[1, 2]")


def test_truncated_response_is_a_decode_error() -> None:
    with pytest.raises(salvo.ResponseDecodeError, match="anthropic") as info:
        ADAPTER.parse_chat(EP, TOOL_RESPONSE[:80])
    assert isinstance(info.value, salvo.TransportError)


# -- streams ------------------------------------------------------------------------------------

STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":10,"cache_creation_input_tokens":0}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}

event: message_stop
data: {"type":"message_stop"}

"""  # noqa: E501 (SSE events as the provider sends them, one line each)


def run(raw: bytes) -> tuple[list[salvo.ChatCompletionChunk], Any]:
    parser = ADAPTER.stream_parser(EP)
    chunks = []
    for event, data in sse(raw):
        chunk = parser.feed(event, data)
        if chunk is not None:
            chunks.append(chunk)
    return chunks, parser


def test_stream_maps_to_openai_chunks() -> None:
    chunks, parser = run(STREAM)
    assert parser.done
    assert [c.id for c in chunks] == ["msg_1"] * len(chunks)
    assert all(c.model == "claude-sonnet-4-5" and c.provider == "anthropic" for c in chunks)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Hello!"
    tool_deltas = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or ()]
    assert [(t.index, t.id) for t in tool_deltas if t.id] == [(0, "toolu_1"), (1, "toolu_2")]
    assert tool_deltas[0].function is not None and tool_deltas[0].function.name == "get_weather"
    args = "".join(t.function.arguments or "" for t in tool_deltas if t.index == 0 and t.function)
    assert json.loads(args) == {"city": "Paris"}
    last = chunks[-1]
    assert last.choices[0].finish_reason == "tool_calls"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (35, 42)
    assert last.usage.prompt_tokens_details == {"cached_tokens": 10, "cache_creation_tokens": 0}


def test_stream_split_at_every_byte_gives_the_same_chunks() -> None:
    whole, _ = run(STREAM)
    dec = SSEDecoder()
    parser = ADAPTER.stream_parser(EP)
    pieces = []
    for i in range(len(STREAM)):
        for event, data in dec.feed(STREAM[i : i + 1]):
            chunk = parser.feed(event, data)
            if chunk is not None:
                pieces.append(chunk)
    assert [c.choices for c in pieces] == [c.choices for c in whole]


def test_thinking_deltas_become_reasoning_content() -> None:
    raw = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c",'
        b'"usage":{"input_tokens":1,"output_tokens":0}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"thinking_delta","thinking":"Hmm."}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"signature_delta","signature":"abc"}}\n\n'
    )
    chunks, _ = run(raw)
    assert [c.choices[0].delta.reasoning_content for c in chunks] == [None, "Hmm."]


def test_unknown_events_are_ignored() -> None:
    raw = (
        b'event: brand_new_event\ndata: {"type":"brand_new_event","x":1}\n\n'
        b'data: {"type":"another_new_one"}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"ok"}}\n\n'
    )
    chunks, parser = run(raw)
    assert [c.choices[0].delta.content for c in chunks] == ["ok"]
    assert not parser.done


def test_malformed_known_event_is_a_stream_error() -> None:
    parser = ADAPTER.stream_parser(EP)
    with pytest.raises(salvo.StreamError, match="malformed content_block_delta"):
        parser.feed("content_block_delta", b'{"type":"content_block_delta","delta":{}}')
    with pytest.raises(salvo.StreamError, match="unreadable"):
        parser.feed("content_block_delta", b'{"type":"content_blo')


@pytest.mark.parametrize(
    ("error_type", "cls", "status"),
    [
        ("overloaded_error", salvo.ServerError, 529),
        ("api_error", salvo.ServerError, 500),
        ("rate_limit_error", salvo.RateLimitError, 429),
        ("invalid_request_error", salvo.BadRequestError, 400),
    ],
)
def test_in_stream_error_event_raises_the_status_class(
    error_type: str, cls: type[salvo.ProviderError], status: int
) -> None:
    parser = ADAPTER.stream_parser(EP)
    data = json.dumps({"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    with pytest.raises(cls) as info:
        parser.feed("error", data.encode())
    assert info.value.status_code == status
    assert info.value.provider == "anthropic"
    assert info.value.body == {"type": error_type, "message": "Overloaded"}
    assert error_type in str(info.value)


def test_unknown_in_stream_error_type_is_a_stream_error() -> None:
    parser = ADAPTER.stream_parser(EP)
    with pytest.raises(salvo.StreamError, match="mystery_error"):
        parser.feed("error", b'{"type":"error","error":{"type":"mystery_error","message":"?"}}')


# -- errors -------------------------------------------------------------------------------------


def error_body(kind: str, message: str) -> bytes:
    payload = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "r"}
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (400, "invalid_request_error", salvo.BadRequestError),
        (401, "authentication_error", salvo.AuthenticationError),
        (403, "permission_error", salvo.PermissionDeniedError),
        (404, "not_found_error", salvo.NotFoundError),
        (429, "rate_limit_error", salvo.RateLimitError),
        (500, "api_error", salvo.ServerError),
        (529, "overloaded_error", salvo.ServerError),
    ],
)
def test_error_statuses(status: int, kind: str, cls: type[salvo.ProviderError]) -> None:
    err = ADAPTER.parse_error(EP, status, {}, error_body(kind, "Nope."))
    assert type(err) is cls
    assert err.status_code == status
    assert err.body["type"] == kind
    assert "Nope." in str(err)


def test_rate_limit_carries_retry_after_and_auth_names_the_key() -> None:
    err = ADAPTER.parse_error(EP, 429, {"retry-after": "7"}, error_body("rate_limit_error", "x"))
    assert err.retry_after == 7.0
    auth = ADAPTER.parse_error(EP, 401, {}, error_body("authentication_error", "bad key"))
    assert "ANTHROPIC_API_KEY" in str(auth)


def test_non_json_error_body() -> None:
    err = ADAPTER.parse_error(EP, 413, {}, b"<html>Request Entity Too Large</html>")
    assert err.status_code == 413
    assert "HTML" in str(err)


# -- resolution ---------------------------------------------------------------------------------


def test_resolution_with_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.delenv("ANTHROPIC_API_BASE", raising=False)
    dep = resolve_deployment("anthropic/claude-haiku-4-5")
    assert dep.provider == "anthropic"
    assert dep.endpoint.model == "claude-haiku-4-5"
    assert dep.endpoint.api_base == "https://api.anthropic.com"
    assert dep.headers["x-api-key"] == "sk-ant-env"
    bare = resolve_deployment("claude-sonnet-4-5")
    assert bare.provider == "anthropic" and bare.endpoint.model == "claude-sonnet-4-5"
    monkeypatch.setenv("ANTHROPIC_API_BASE", "http://127.0.0.1:9/")
    assert resolve_deployment("claude-x").endpoint.api_base == "http://127.0.0.1:9"


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(salvo.ConfigError, match="ANTHROPIC_API_KEY"):
        resolve_deployment("anthropic/claude-haiku-4-5")


def test_table_row() -> None:
    info = get_provider("anthropic")
    assert info is not None
    assert info.prefixes == ("claude-",)
    assert info.capabilities.batch_api and info.capabilities.streaming
    assert info.capabilities.tools and not info.capabilities.embeddings
    with pytest.raises(salvo.ConfigError, match="no embeddings"):
        ADAPTER.build_embedding(EP, {}, "x", {})
