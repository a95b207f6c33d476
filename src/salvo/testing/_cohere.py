"""Cohere v2 (protocols.md 7): ``POST /v2/chat`` and ``POST /v2/embed``, provider "cohere".

Bearer auth (else 401 ``{"message": ...}``). Streams send typed events with both ``event:`` and
``data:`` lines (7.3: whether the server sends ``event:`` is unverified, so the fake sends both):
``message-start``, ``content-start`` / ``content-delta`` / ``content-end`` for text (with tool
calls the text goes out as ``tool-plan-delta``), ``tool-call-start`` / ``tool-call-delta`` /
``tool-call-end``, and ``message-end`` with ``finish_reason`` and ``usage`` in its ``delta``.
There is no terminator after ``message-end``: the connection close ends the stream, so
``no_terminator`` drops ``message-end`` itself. The in-stream error is a ``message-end`` with
``finish_reason: "ERROR"`` and ``delta.error`` (7.3).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._behavior import Behavior
from ._content import (
    DEFAULT_DIMENSIONS,
    answer_text,
    completion_tokens,
    count_words,
    embedding,
    float32_base64,
    prompt_tokens,
    split,
)
from ._faults import SSEEvent, StreamPlan, encode, send_json, send_stream
from ._state import STATE_KEY, Exchange, read_json, route

__all__ = ["error_payload", "install"]

_MESSAGES = {
    400: "invalid request: the request could not be processed",
    401: "invalid api token",
    403: "Forbidden",
    404: "model not found",
    422: "unprocessable entity",
    429: "You are past the rate limit for this API key. Please retry later.",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable",
}
_EMBEDDING_TYPES = ("float", "int8", "uint8", "base64")


def error_payload(
    status: int, behavior: Behavior | None = None, message: str | None = None
) -> bytes:
    """``{"message": ...}`` (7.4)."""
    b = behavior or Behavior()
    default = _MESSAGES.get(status, f"the request failed with status {status}")
    return encode({"message": b.error_message or message or default})


def _headers(ex: Exchange) -> dict[str, str]:
    return {"x-request-id": ex.request_id}


async def _fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    return await send_json(
        ex, status, error_payload(status, None, message), _headers(ex), scripted=False
    )


async def _begin(
    request: web.Request,
) -> tuple[Exchange, dict[str, Any], web.StreamResponse | None]:
    state = request.app[STATE_KEY]
    body, bad = await read_json(request)
    data: dict[str, Any] = body if isinstance(body, dict) else {}
    model = str(data.get("model") or "")
    ex = state.begin(
        request, provider="cohere", model=model, stream=data.get("stream") is True, body=body
    )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ex, data, await _fail(ex, 401, "no api key supplied")
    if bad is not None:
        return ex, data, await _fail(ex, 400, f"invalid request: {bad}")
    if ex.problem is not None:
        return ex, data, await _fail(ex, *ex.problem)
    if not model:
        return ex, data, await _fail(ex, 400, "invalid request: model must be specified")
    return ex, data, None


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    units = {"input_tokens": prompt, "output_tokens": completion}
    return {"billed_units": units, "tokens": dict(units), "cached_tokens": 0}


def _calls(ex: Exchange) -> list[dict[str, Any]]:
    return [
        {
            "id": c.id or f"call_fake{ex.record.id}_{i}",
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for i, c in enumerate(ex.behavior.tool_calls or ())
    ]


def _finish(b: Behavior) -> str:
    return b.finish_reason or ("TOOL_CALL" if b.tool_calls else "COMPLETE")


def _response(ex: Exchange, text: str, usage: dict[str, Any]) -> bytes:
    calls = _calls(ex)
    message = {
        "role": "assistant",
        "content": [] if calls else [{"type": "text", "text": text}],
        "tool_plan": (text or None) if calls else None,
        "tool_calls": calls or None,
        "citations": None,
    }
    return encode(
        {
            "id": _id(ex),
            "finish_reason": _finish(ex.behavior),
            "message": message,
            "usage": usage,
            "logprobs": None,
        }
    )


def _id(ex: Exchange) -> str:
    return f"00000000-0000-4000-8000-{ex.record.id:012x}"


def _event(payload: dict[str, Any]) -> SSEEvent:
    return payload["type"], encode(payload)


def _msg(**fields: Any) -> dict[str, Any]:
    return {"message": fields}


def _plan(ex: Exchange, text: str, usage: dict[str, Any]) -> StreamPlan:
    b = ex.behavior
    calls = _calls(ex)
    start = _msg(role="assistant", content=[], tool_plan="", tool_calls=[], citations=[])
    events = [_event({"type": "message-start", "id": _id(ex), "delta": start})]
    pieces = split(text, b.chunks) if text else []
    if calls:
        events.extend(
            _event({"type": "tool-plan-delta", "delta": _msg(tool_plan=p)}) for p in pieces
        )
    else:
        content = {"type": "text", "text": ""}
        events.append(_event({"type": "content-start", "index": 0, "delta": _msg(content=content)}))
        events.extend(
            _event({"type": "content-delta", "index": 0, "delta": _msg(content={"text": p})})
            for p in pieces
        )
        events.append(_event({"type": "content-end", "index": 0}))
    for i, call in enumerate(calls):
        head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        events.append(
            _event({"type": "tool-call-start", "index": i, "delta": _msg(tool_calls=head)})
        )
        args = call["function"]["arguments"]
        for frag in split(args, b.chunks) if args else []:
            delta = _msg(tool_calls={"function": {"arguments": frag}})
            events.append(_event({"type": "tool-call-delta", "index": i, "delta": delta}))
        events.append(_event({"type": "tool-call-end", "index": i}))
    end = {"type": "message-end", "delta": {"finish_reason": _finish(b), "usage": usage}}
    error_delta = {
        "finish_reason": "ERROR",
        "usage": usage,
        "error": b.error_message or "internal server error",
    }
    error = _event({"type": "message-end", "delta": error_delta})
    return StreamPlan(events, tail=[_event(end)], error=error)


@route
async def chat(request: web.Request) -> web.StreamResponse:
    ex, data, failed = await _begin(request)
    if failed is not None:
        return failed
    if not isinstance(data.get("messages"), list):
        return await _fail(ex, 400, "invalid request: messages must be specified")
    b = ex.behavior
    if b.is_error:
        return await send_json(ex, b.status, error_payload(b.status, b), _headers(ex))
    text = answer_text(b, ex.record.model)
    usage = _usage(prompt_tokens(b, data), completion_tokens(b, text))
    if ex.record.stream:
        return await send_stream(ex, _plan(ex, text, usage), _headers(ex))
    return await send_json(ex, b.status, _response(ex, text, usage), _headers(ex))


def _embedding_of(kind: str, vec: list[float]) -> Any:
    if kind == "int8":
        return [round(v * 127) for v in vec]
    if kind == "uint8":
        return [round(v * 127) + 128 for v in vec]
    if kind == "base64":
        return float32_base64(vec)
    return vec


@route
async def embed(request: web.Request) -> web.StreamResponse:
    ex, data, failed = await _begin(request)
    if failed is not None:
        return failed
    texts = data.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return await _fail(ex, 400, "invalid request: texts must be a non-empty list of strings")
    kinds = data.get("embedding_types") or ["float"]
    if not isinstance(kinds, list) or any(k not in _EMBEDDING_TYPES for k in kinds):
        return await _fail(
            ex, 400, f"invalid request: embedding_types must be among {_EMBEDDING_TYPES}"
        )
    dims = data.get("output_dimension")
    if not isinstance(dims, int) or dims < 1:
        dims = DEFAULT_DIMENSIONS
    b = ex.behavior
    if b.is_error:
        return await send_json(ex, b.status, error_payload(b.status, b), _headers(ex))
    vectors = [embedding(ex.record.model, t, dims) for t in texts]
    tokens = b.prompt_tokens if b.prompt_tokens is not None else max(1, count_words(texts))
    payload = {
        "id": _id(ex),
        "embeddings": {k: [_embedding_of(k, v) for v in vectors] for k in kinds},
        "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
        "response_type": "embeddings_by_type",
    }
    return await send_json(ex, b.status, encode(payload), _headers(ex))


def install(app: web.Application) -> None:
    app.router.add_post("/v2/chat", chat)
    app.router.add_post("/v2/embed", embed)
