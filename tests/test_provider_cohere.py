"""The Cohere v2 adapter from bytes: requests built, responses and streams parsed, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

import salvo
from salvo._http import SSEDecoder
from salvo._models import resolve_deployment
from salvo.providers import Endpoint, get_provider
from salvo.providers.cohere import CohereAdapter

BASE = "https://api.cohere.com"
EP = Endpoint("cohere", "command-a-03-2025", BASE, "co-test")
ADAPTER = CohereAdapter()
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
OTHER_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {}}}


def build(messages: list[dict[str, Any]], stream: bool = False, **params: Any) -> dict[str, Any]:
    req = ADAPTER.build_chat(EP, ADAPTER.headers(EP), messages, params, stream)
    assert (req.method, req.url) == ("POST", f"{BASE}/v2/chat")
    body: dict[str, Any] = json.loads(req.body)
    return body


# -- requests -----------------------------------------------------------------------------------


def test_headers() -> None:
    h = ADAPTER.headers(EP)
    assert h["authorization"] == "Bearer co-test"
    assert h["content-type"] == "application/json"


def test_messages_and_params() -> None:
    body = build(
        [
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        stream=True,
        max_completion_tokens=50,
        top_p=0.9,
        top_k=20,
        temperature=0.3,
        seed=7,
        stop=["END"],
        n=1,
        user="dropped",
        stream_options={"include_usage": True},
        safety_mode="CONTEXTUAL",
    )
    assert body == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        "max_tokens": 50,
        "p": 0.9,
        "k": 20,
        "temperature": 0.3,
        "seed": 7,
        "safety_mode": "CONTEXTUAL",
        "stop_sequences": ["END"],
        "stream": True,
    }


def test_tool_round_trip_messages() -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    body = build(
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        ],
        tools=[TOOL],
    )
    assert body["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "content": "18C", "tool_call_id": "c1"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(("choice", "wire"), [("required", "REQUIRED"), ("none", "NONE")])
def test_tool_choice(choice: str, wire: str) -> None:
    body = build([{"role": "user", "content": "x"}], tools=[TOOL], tool_choice=choice)
    assert body["tool_choice"] == wire


def test_named_tool_choice_sends_only_that_tool() -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    body = build([{"role": "user", "content": "x"}], tools=[TOOL, OTHER_TOOL], tool_choice=named)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_time"]
    assert body["tool_choice"] == "REQUIRED"
    missing = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(salvo.ConfigError, match="not among the tools"):
        build([{"role": "user", "content": "x"}], tools=[TOOL], tool_choice=missing)


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    body = build([{"role": "user", "content": "x"}], response_format=fmt)
    assert body["response_format"] == {"type": "json_object", "json_schema": schema}
    body = build([{"role": "user", "content": "x"}], response_format={"type": "json_object"})
    assert body["response_format"] == {"type": "json_object"}
    assert "response_format" not in build(
        [{"role": "user", "content": "x"}], response_format={"type": "text"}
    )


# -- responses ----------------------------------------------------------------------------------

RESPONSE = b"""{"id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
 "finish_reason": "COMPLETE",
 "message": {"role": "assistant",
             "content": [{"type": "thinking", "thinking": "Greet back."},
                         {"type": "text", "text": "Hello!"}],
             "tool_plan": null, "tool_calls": null, "citations": null},
 "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 3},
           "tokens": {"input_tokens": 71, "output_tokens": 3},
           "cached_tokens": 0},
 "logprobs": null}"""


def test_parse_text_response() -> None:
    resp = ADAPTER.parse_chat(EP, RESPONSE)
    assert resp.id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
    assert resp.model == "command-a-03-2025"
    assert resp.provider == "cohere"
    assert resp.choices[0].message.content == "Hello!"
    assert resp.choices[0].message.reasoning_content == "Greet back."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (71, 3)
    assert resp.usage.total_tokens == 74
    assert resp.usage.prompt_tokens_details == {"cached_tokens": 0, "billed_tokens": 5}
    assert resp.usage.completion_tokens_details == {"billed_tokens": 3}


def test_parse_tool_call_response() -> None:
    body = {
        "id": "x",
        "finish_reason": "TOOL_CALL",
        "message": {
            "role": "assistant",
            "tool_plan": "I will look it up.",
            "tool_calls": [
                {
                    "id": "get_weather_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        "usage": {"billed_units": {"input_tokens": 10.0, "output_tokens": 4.0}},
    }
    resp = ADAPTER.parse_chat(EP, json.dumps(body).encode())
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert (calls[0].id, calls[0].function.name) == ("get_weather_1", "get_weather")
    assert calls[0].function.arguments == '{"city":"Paris"}'
    assert resp.usage is not None and resp.usage.prompt_tokens == 10


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("ERROR_TOXIC", "content_filter"),
        ("ERROR", "error"),
        ("TIMEOUT", "error"),
        ("NEW_REASON", "new_reason"),
    ],
)
def test_finish_reason_mapping(reason: str, finish: str) -> None:
    body = {"id": "x", "finish_reason": reason, "message": {"content": []}}
    assert ADAPTER.parse_chat(EP, json.dumps(body).encode()).choices[0].finish_reason == finish


def test_truncated_response_is_a_decode_error() -> None:
    with pytest.raises(salvo.ResponseDecodeError, match="cohere"):
        ADAPTER.parse_chat(EP, RESPONSE[:40])


# -- streams ------------------------------------------------------------------------------------

STREAM = b"""event: message-start
data: {"type":"message-start","id":"abc","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}

event: content-start
data: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}

event: content-delta
data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hello"}}}}

event: content-delta
data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" there"}}}}

event: content-end
data: {"type":"content-end","index":0}

event: tool-plan-delta
data: {"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will"}}}

event: tool-call-start
data: {"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"get_weather_x","type":"function","function":{"name":"get_weather","arguments":""}}}}}

event: tool-call-delta
data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\\"city\\":"}}}}}

event: tool-call-delta
data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\\"Paris\\"}"}}}}}

event: tool-call-end
data: {"type":"tool-call-end","index":0}

event: debug
data: {"type":"debug","prompt":"..."}

event: message-end
data: {"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":5,"output_tokens":1},"tokens":{"input_tokens":71,"output_tokens":9}}}}

"""  # noqa: E501 (SSE events as the provider sends them, one line each)


def test_stream_maps_to_openai_chunks() -> None:
    parser = ADAPTER.stream_parser(EP)
    dec = SSEDecoder()
    chunks = [parser.feed(e, d) for e, d in [*dec.feed(STREAM), *dec.flush()]]
    out = [c for c in chunks if c is not None]
    assert parser.done
    assert ADAPTER.stream_ends_at_eof is False  # message-end is the terminator
    assert out[0].choices[0].delta.role == "assistant" and out[0].id == "abc"
    assert "".join(c.choices[0].delta.content or "" for c in out) == "Hello there"
    calls = [tc for c in out for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "get_weather_x" and calls[0].index == 0
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(args) == {"city": "Paris"}
    last = out[-1]
    assert last.choices[0].finish_reason == "tool_calls"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (71, 9)
    assert all(c.model == "command-a-03-2025" and c.provider == "cohere" for c in out)


def test_stream_error_at_message_end() -> None:
    parser = ADAPTER.stream_parser(EP)
    data = b'{"type":"message-end","delta":{"finish_reason":"ERROR","error":"internal failure"}}'
    with pytest.raises(salvo.StreamError, match="internal failure"):
        parser.feed("message-end", data)


def test_stream_bad_events() -> None:
    parser = ADAPTER.stream_parser(EP)
    assert parser.feed(None, b'{"type":"citation-start","index":0}') is None
    with pytest.raises(salvo.StreamError, match="malformed content-delta"):
        parser.feed(None, b'{"type":"content-delta","index":"zero"}')
    with pytest.raises(salvo.StreamError, match="unreadable"):
        parser.feed(None, b'{"type":')
    assert parser.feed(None, b"[DONE]") is None and parser.done


# -- embeddings ---------------------------------------------------------------------------------


def test_embeddings() -> None:
    ep = Endpoint("cohere", "embed-english-v3.0", BASE, "k")
    req = ADAPTER.build_embedding(ep, {}, "hello", {})
    assert req.url == f"{BASE}/v2/embed"
    assert json.loads(req.body) == {
        "model": "embed-english-v3.0",
        "texts": ["hello"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    req = ADAPTER.build_embedding(ep, {}, ["a", "b"], {"input_type": "search_query"})
    assert json.loads(req.body)["input_type"] == "search_query"
    body = (
        b'{"id": "e1", "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]}, "texts": ["a", "b"],'
        b' "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},'
        b' "response_type": "embeddings_by_type"}'
    )
    resp = ADAPTER.parse_embedding(ep, body)
    assert [(e.index, e.embedding) for e in resp.data] == [(0, [0.1, 0.2]), (1, [0.3, 0.4])]
    assert resp.usage is not None and resp.usage.prompt_tokens == 2
    assert resp.provider == "cohere"


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, salvo.BadRequestError),
        (401, salvo.AuthenticationError),
        (498, salvo.AuthenticationError),
        (422, salvo.BadRequestError),
        (429, salvo.RateLimitError),
        (500, salvo.ServerError),
        (503, salvo.ServerError),
    ],
)
def test_error_statuses(status: int, cls: type[salvo.ProviderError]) -> None:
    err = ADAPTER.parse_error(
        EP, status, {"retry-after": "3"}, b'{"message": "invalid request: bad"}'
    )
    assert type(err) is cls
    assert err.status_code == status
    assert err.retry_after == 3.0
    assert "invalid request: bad" in str(err)


def test_invalid_token_names_the_key() -> None:
    assert "CO_API_KEY" in str(ADAPTER.parse_error(EP, 498, {}, b'{"message": "invalid token"}'))


# -- resolution ---------------------------------------------------------------------------------


def test_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CO_API_KEY", "co-env")
    monkeypatch.delenv("COHERE_API_BASE", raising=False)
    dep = resolve_deployment("command-r-plus-08-2024")
    assert dep.provider == "cohere"
    assert dep.endpoint.api_base == BASE
    assert dep.headers["authorization"] == "Bearer co-env"
    monkeypatch.delenv("CO_API_KEY")
    with pytest.raises(salvo.ConfigError, match="CO_API_KEY"):
        resolve_deployment("cohere/command-a-03-2025")


def test_table_row() -> None:
    info = get_provider("cohere")
    assert info is not None
    assert info.prefixes == ("command-",)
    assert info.key_env == "CO_API_KEY"
    assert info.capabilities.embeddings and not info.capabilities.batch_api
