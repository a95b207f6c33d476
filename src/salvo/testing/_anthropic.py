"""Anthropic Messages (protocols.md 5): ``POST /v1/messages``, provider "anthropic".

Requires ``x-api-key`` (or ``Authorization: Bearer``; else 401 ``authentication_error``) and
``anthropic-version`` (else 400), and ``model``, ``max_tokens`` and ``messages`` in the body
(else 400 ``invalid_request_error``, as the real API does). Streams follow 5.4 exactly:
``message_start``, per block ``content_block_start`` / ``content_block_delta`` /
``content_block_stop`` (a ``ping`` after the first block start), ``message_delta``, then
``message_stop`` as the terminator; the in-stream error is ``event: error`` with
``overloaded_error``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from aiohttp import web

from ._behavior import Behavior
from ._content import answer_text, completion_tokens, prompt_tokens, split
from ._faults import SSEEvent, StreamPlan, encode, send_json, send_stream
from ._state import STATE_KEY, Exchange, read_json, route

__all__ = ["error_payload", "install"]

_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
_DECODE = msgspec.json.Decoder()


def error_payload(
    status: int, behavior: Behavior | None, request_id: str, message: str | None = None
) -> bytes:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` (5.5)."""
    default = _ERRORS.get(status)
    if default is None:
        default = ("api_error", "Internal server error") if status >= 500 else _ERRORS[400]
    b = behavior or Behavior()
    error = {
        "type": b.error_type or default[0],
        "message": b.error_message or message or default[1],
    }
    return encode({"type": "error", "error": error, "request_id": request_id})


def _headers(ex: Exchange, status: int) -> dict[str, str]:
    headers = {"request-id": ex.request_id}
    if status == 429:
        reset = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for kind, limit in (
            ("requests", "50"),
            ("tokens", "40000"),
            ("input-tokens", "30000"),
            ("output-tokens", "10000"),
        ):
            prefix = f"anthropic-ratelimit-{kind}"
            headers[f"{prefix}-limit"] = limit
            headers[f"{prefix}-remaining"] = "0"
            headers[f"{prefix}-reset"] = reset
    return headers


async def _fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    body = error_payload(status, None, ex.request_id, message)
    return await send_json(ex, status, body, _headers(ex, status), scripted=False)


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = _DECODE.decode(arguments)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_id(ex: Exchange, i: int, given: str | None) -> str:
    return given or f"toolu_fake{ex.record.id}_{i}"


def _message(ex: Exchange, model: str, text: str, prompt: int, completion: int) -> bytes:
    b = ex.behavior
    calls = b.tool_calls or []
    content: list[dict[str, Any]] = []
    if text or not calls:
        content.append({"type": "text", "text": text})
    for i, c in enumerate(calls):
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id(ex, i, c.id),
                "name": c.name,
                "input": _tool_input(c.arguments),
            }
        )
    return encode(
        {
            "id": f"msg_fake{ex.record.id}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": b.finish_reason or ("tool_use" if calls else "end_turn"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt,
                "output_tokens": completion,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }
    )


def _event(payload: dict[str, Any]) -> SSEEvent:
    return payload["type"], encode(payload)


def _plan(ex: Exchange, model: str, text: str, prompt: int, completion: int) -> StreamPlan:
    b = ex.behavior
    calls = b.tool_calls or []
    start: dict[str, Any] = {
        "id": f"msg_fake{ex.record.id}",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    events = [_event({"type": "message_start", "message": start})]
    blocks: list[tuple[dict[str, Any], str, list[str]]] = []
    if text or not calls:
        blocks.append(({"type": "text", "text": ""}, "text_delta", split(text, b.chunks)))
    for i, c in enumerate(calls):
        head = {"type": "tool_use", "id": _tool_id(ex, i, c.id), "name": c.name, "input": {}}
        frags = split(c.arguments, b.chunks) if c.arguments else []
        blocks.append((head, "input_json_delta", frags))
    for index, (head, kind, pieces) in enumerate(blocks):
        events.append(
            _event({"type": "content_block_start", "index": index, "content_block": head})
        )
        if index == 0:
            events.append(_event({"type": "ping"}))
        key = "text" if kind == "text_delta" else "partial_json"
        for piece in pieces:
            if piece:
                delta = {"type": kind, key: piece}
                events.append(
                    _event({"type": "content_block_delta", "index": index, "delta": delta})
                )
        events.append(_event({"type": "content_block_stop", "index": index}))
    stop = b.finish_reason or ("tool_use" if calls else "end_turn")
    events.append(
        _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": completion},
            }
        )
    )
    error = {"type": b.error_type or "overloaded_error", "message": b.error_message or "Overloaded"}
    return StreamPlan(
        events,
        tail=[_event({"type": "message_stop"})],
        error=_event({"type": "error", "error": error}),
    )


@route
async def messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body, bad = await read_json(request)
    data: dict[str, Any] = body if isinstance(body, dict) else {}
    model = str(data.get("model") or "")
    ex = state.begin(
        request, provider="anthropic", model=model, stream=data.get("stream") is True, body=body
    )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not (
        request.headers.get("x-api-key", "").strip()
        or (scheme.lower() == "bearer" and token.strip())
    ):
        return await _fail(ex, 401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return await _fail(ex, 400, "anthropic-version: header is required")
    if bad is not None:
        return await _fail(ex, 400, bad)
    if ex.problem is not None:
        return await _fail(ex, *ex.problem)
    for field in ("model", "max_tokens", "messages"):
        if field not in data:
            return await _fail(ex, 400, f"{field}: Field required")
    b = ex.behavior
    if b.is_error:
        payload = error_payload(b.status, b, ex.request_id)
        return await send_json(ex, b.status, payload, _headers(ex, b.status))
    text = answer_text(b, model)
    prompt, completion = prompt_tokens(b, data), completion_tokens(b, text)
    if ex.record.stream:
        return await send_stream(ex, _plan(ex, model, text, prompt, completion), _headers(ex, 200))
    payload = _message(ex, model, text, prompt, completion)
    return await send_json(ex, b.status, payload, _headers(ex, 200))


def install(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
