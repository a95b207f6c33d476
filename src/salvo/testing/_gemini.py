"""Google Gemini (protocols.md 8): ``POST /v1beta/models/{model}:{method}``, provider "gemini".

Methods: ``generateContent``, ``streamGenerateContent`` (``?alt=sse`` gives SSE; without it one
JSON array of the chunks, as the real API does), ``embedContent``, ``batchEmbedContents``. The
same routes answer under ``/v1/``. Auth: ``x-goog-api-key`` header or ``key`` query parameter,
else 401 ``UNAUTHENTICATED``. The model is the path's. SSE streams use CRLF line endings unless
the Behavior says otherwise, have no terminator (the last chunk carries ``finishReason`` and the
final ``usageMetadata``; ``no_terminator`` drops both from it), and the in-stream error is
``data: {"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ._behavior import Behavior
from ._content import (
    DEFAULT_DIMENSIONS,
    answer_text,
    completion_tokens,
    embedding,
    prompt_tokens,
    split,
)
from ._faults import SSEEvent, StreamPlan, encode, send_json, send_stream
from ._state import STATE_KEY, Exchange, read_json, route

__all__ = ["error_payload", "install"]

_JSON_TYPE = "application/json; charset=UTF-8"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
_METHODS = ("generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents")
_DECODE = msgspec.json.Decoder()


def _error(status: int, behavior: Behavior | None, message: str | None) -> dict[str, Any]:
    b = behavior or Behavior()
    code: int | str = status
    if b.error_code is not None:
        code = int(b.error_code) if b.error_code.isdigit() else b.error_code
    fallback = "FAILED_PRECONDITION" if status < 500 else "INTERNAL"
    default_message = _MESSAGES.get(status, f"The request failed with status {status}.")
    return {
        "code": code,
        "message": b.error_message or message or default_message,
        "status": b.error_type or _STATUS.get(status, fallback),
    }


def error_payload(
    status: int, behavior: Behavior | None = None, message: str | None = None
) -> bytes:
    """``{"error": {"code", "message", "status"}}`` (8.4); ``error_type`` sets ``status``."""
    return encode({"error": _error(status, behavior, message)})


def _headers(ex: Exchange) -> dict[str, str]:
    return {"x-request-id": ex.request_id}


async def _fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    payload = error_payload(status, None, message)
    return await send_json(
        ex, status, payload, _headers(ex), scripted=False, content_type=_JSON_TYPE
    )


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = _DECODE.decode(arguments)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _call_parts(b: Behavior) -> list[dict[str, Any]]:
    parts = []
    for c in b.tool_calls or ():
        call: dict[str, Any] = {"name": c.name, "args": _args(c.arguments)}
        if c.id is not None:
            call["id"] = c.id
        parts.append({"functionCall": call})
    return parts


def _chunk(
    ex: Exchange, model: str, parts: list[dict[str, Any]], usage: dict[str, int], finish: str | None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": f"fake{ex.record.id}",
    }


def _usage(prompt: int, completion: int | None) -> dict[str, int]:
    if completion is None:
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion,
    }


def _stream_chunks(
    ex: Exchange, model: str, text: str, prompt: int, completion: int
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(chunks before the last, the last chunk, the last chunk without finish/usage)."""
    b = ex.behavior
    pieces = split(text, b.chunks) if text else []
    partial = _usage(prompt, None)
    head = [_chunk(ex, model, [{"text": p}], partial, None) for p in pieces[:-1]]
    last_parts = [{"text": p} for p in pieces[-1:]] + _call_parts(b)
    last = _chunk(ex, model, last_parts, _usage(prompt, completion), b.finish_reason or "STOP")
    cut = _chunk(ex, model, last_parts, partial, None)
    return head, last, cut


async def _generate(ex: Exchange, data: dict[str, Any], method: str) -> web.StreamResponse:
    if not isinstance(data.get("contents"), list):
        return await _fail(ex, 400, "* GenerateContentRequest.contents: contents is not specified")
    b = ex.behavior
    if b.is_error:
        return await send_json(
            ex, b.status, error_payload(b.status, b), _headers(ex), content_type=_JSON_TYPE
        )
    model = ex.record.model
    text = answer_text(b, model)
    prompt, completion = prompt_tokens(b, data), completion_tokens(b, text)
    if method == "generateContent":
        parts = ([{"text": text}] if text or not b.tool_calls else []) + _call_parts(b)
        usage = _usage(prompt, completion)
        answer = _chunk(ex, model, parts, usage, b.finish_reason or "STOP")
        return await send_json(ex, b.status, encode(answer), _headers(ex), content_type=_JSON_TYPE)
    head, last, cut = _stream_chunks(ex, model, text, prompt, completion)
    if ex.request.query.get("alt") != "sse":
        payload = encode([*head, last])
        return await send_json(ex, b.status, payload, _headers(ex), content_type=_JSON_TYPE)
    events: list[SSEEvent] = [(None, encode(c)) for c in head]
    error = (None, encode({"error": _error(503, b, None)}))
    plan = StreamPlan(events, [(None, encode(last))], error, [(None, encode(cut))], "\r\n")
    return await send_stream(ex, plan, _headers(ex))


def _content_text(content: Any) -> str | None:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return None
    return " ".join(p["text"] for p in content["parts"] if isinstance(p, dict) and "text" in p)


def _dims(request: dict[str, Any]) -> int:
    dims = request.get("outputDimensionality")
    return dims if isinstance(dims, int) and dims > 0 else DEFAULT_DIMENSIONS


async def _embed(ex: Exchange, data: dict[str, Any], method: str) -> web.StreamResponse:
    requests = data.get("requests") if method == "batchEmbedContents" else [data]
    if not isinstance(requests, list) or not requests:
        return await _fail(ex, 400, "* BatchEmbedContentsRequest.requests: requests is empty")
    texts = [_content_text(r.get("content")) if isinstance(r, dict) else None for r in requests]
    if any(t is None for t in texts):
        return await _fail(ex, 400, "* EmbedContentRequest.content: content is not specified")
    b = ex.behavior
    if b.is_error:
        return await send_json(
            ex, b.status, error_payload(b.status, b), _headers(ex), content_type=_JSON_TYPE
        )
    model = ex.record.model
    vectors = [
        {"values": embedding(model, t, _dims(r))} for t, r in zip(texts, requests, strict=True)
    ]
    payload: dict[str, Any] = (
        {"embeddings": vectors} if method == "batchEmbedContents" else {"embedding": vectors[0]}
    )
    return await send_json(ex, b.status, encode(payload), _headers(ex), content_type=_JSON_TYPE)


@route
async def models_call(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    model, _, method = request.match_info["target"].rpartition(":")
    body, bad = await read_json(request)
    data: dict[str, Any] = body if isinstance(body, dict) else {}
    ex = state.begin(
        request, provider="gemini", model=model, stream=method == "streamGenerateContent", body=body
    )
    if not (request.headers.get("x-goog-api-key", "").strip() or request.query.get("key")):
        return await _fail(ex, 401, "API key not valid. Please pass a valid API key.")
    if not model or method not in _METHODS:
        return await _fail(ex, 404, f"Method or model not found: {request.match_info['target']}")
    if bad is not None:
        return await _fail(ex, 400, bad)
    if ex.problem is not None:
        return await _fail(ex, *ex.problem)
    if method in ("generateContent", "streamGenerateContent"):
        return await _generate(ex, data, method)
    return await _embed(ex, data, method)


def install(app: web.Application) -> None:
    app.router.add_post(r"/{version:v1beta|v1}/models/{target}", models_call)
