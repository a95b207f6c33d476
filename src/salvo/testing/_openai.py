"""OpenAI Chat Completions and Embeddings (protocols.md 1, 2) and Azure OpenAI (9).

Routes (provider in the Record):

- ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models`` — "openai";
  ``Authorization: Bearer <non-empty>`` required.
- ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` and
  ``.../embeddings`` — "azure" classic: the deployment is the model; a missing ``api-version``
  is a 404 "Resource not found", a missing ``api-key`` (or Bearer token) a 401.
- ``POST /openai/v1/chat/completions``, ``/openai/v1/embeddings``, ``GET /openai/v1/models`` —
  "azure" v1: model from the body, ``api-key`` or Bearer.

Azure answers carry ``prompt_filter_results``, and Azure streams start with the content-filter
chunk that has ``choices: []`` and empty ``id``/``model`` (9.1), to test clients' robustness.
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
    now,
    prompt_tokens,
    split,
)
from ._faults import SSEEvent, StreamPlan, encode, send_json, send_stream
from ._state import STATE_KEY, Exchange, read_json, route

__all__ = ["error_payload", "install"]

_DEFAULT_ERROR = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("request_forbidden", None, "You are not allowed to sample from this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    409: ("invalid_request_error", None, "Conflict: the request collided with another."),
    422: ("invalid_request_error", None, "The request could not be processed."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "1s",
}
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_AZURE_NO_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint."
)
_KNOWN_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": {}}]


def error_payload(
    status: int,
    behavior: Behavior | None = None,
    message: str | None = None,
    *,
    code: str | None = None,
    type_: str | None = None,
    param: str | None = None,
) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}`` (1.7); Behavior fields win."""
    default = _DEFAULT_ERROR.get(status)
    if default is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        default = (kind, None, f"The request failed with status {status}.")
    etype, ecode, emsg = default
    b = behavior or Behavior()
    return encode(
        {
            "error": {
                "message": b.error_message or message or emsg,
                "type": b.error_type or type_ or etype,
                "param": param,
                "code": b.error_code or code or ecode,
            }
        }
    )


def _headers(ex: Exchange, status: int) -> dict[str, str]:
    headers = {"x-request-id": ex.request_id, "openai-processing-ms": "1"}
    if status == 429:
        headers.update(_RATE_LIMIT_HEADERS)
    return headers


async def _fail(
    ex: Exchange, status: int, message: str, *, code: str | None = None, param: str | None = None
) -> web.StreamResponse:
    """The fake's own validation error: sent at once, whatever the Behavior says."""
    body = error_payload(status, None, message, code=code, param=param)
    return await send_json(ex, status, body, _headers(ex, status), scripted=False)


def _has_bearer(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


async def _begin(
    request: web.Request, provider: str, deployment: str | None
) -> tuple[Exchange, dict[str, Any], web.StreamResponse | None]:
    """Parse, record and check one request; the third item is an error already sent."""
    state = request.app[STATE_KEY]
    body, bad = await read_json(request)
    data: dict[str, Any] = body if isinstance(body, dict) else {}
    model = deployment if deployment is not None else str(data.get("model") or "")
    ex = state.begin(
        request, provider=provider, model=model, stream=data.get("stream") is True, body=body
    )
    if provider == "azure":
        if deployment is not None and "api-version" not in request.query:
            return ex, data, await _fail(ex, 404, "Resource not found", code="404")
        if not (request.headers.get("api-key", "").strip() or _has_bearer(request)):
            return ex, data, await _fail(ex, 401, _AZURE_NO_KEY, code="401")
    elif not _has_bearer(request):
        return ex, data, await _fail(ex, 401, _NO_KEY)
    if bad is not None:
        return ex, data, await _fail(ex, 400, bad)
    if ex.problem is not None:
        return ex, data, await _fail(ex, *ex.problem)
    if not model:
        return ex, data, await _fail(ex, 400, "You must provide a model parameter.", param="model")
    return ex, data, None


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _call_id(ex: Exchange, i: int, given: str | None) -> str:
    return given or f"call_fake{ex.record.id}_{i}"


def _completion(ex: Exchange, model: str, text: str, usage: dict[str, Any]) -> bytes:
    b = ex.behavior
    calls = b.tool_calls or []
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = [
            {
                "id": _call_id(ex, i, c.id),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for i, c in enumerate(calls)
        ]
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": b.finish_reason or ("tool_calls" if calls else "stop"),
    }
    out: dict[str, Any] = {
        "id": f"chatcmpl-fake{ex.record.id}",
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [choice],
        "usage": usage,
        "system_fingerprint": "fp_fake",
        "service_tier": "default",
    }
    if ex.record.provider == "azure":
        choice["content_filter_results"] = {}
        out["prompt_filter_results"] = _FILTER_RESULTS
    return encode(out)


def _plan(
    ex: Exchange, model: str, text: str, usage: dict[str, Any], include_usage: bool
) -> StreamPlan:
    """Events of 1.6: role chunk, content chunks, tool-call deltas, finish chunk; then the
    optional usage chunk (``choices: []``) and ``[DONE]`` as the terminator."""
    b = ex.behavior
    calls = b.tool_calls or []
    base: dict[str, Any] = {
        "id": f"chatcmpl-fake{ex.record.id}",
        "object": "chat.completion.chunk",
        "created": now(),
        "model": model,
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        out = {**base, "choices": [choice]}
        if include_usage:
            out["usage"] = None
        return None, encode(out)

    events: list[SSEEvent] = []
    if ex.record.provider == "azure":
        first = {"id": "", "object": "", "created": 0, "model": "", "choices": []}
        events.append((None, encode({**first, "prompt_filter_results": _FILTER_RESULTS})))
    role_content = "" if text or not calls else None
    events.append(chunk({"role": "assistant", "content": role_content, "refusal": None}))
    if text:
        events.extend(chunk({"content": piece}) for piece in split(text, b.chunks))
    for i, call in enumerate(calls):
        head = {"name": call.name, "arguments": ""}
        tc = {"index": i, "id": _call_id(ex, i, call.id), "type": "function", "function": head}
        events.append(chunk({"tool_calls": [tc]}))
        if call.arguments:
            events.extend(
                chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})
                for frag in split(call.arguments, b.chunks)
            )
    events.append(chunk({}, b.finish_reason or ("tool_calls" if calls else "stop")))
    tail: list[SSEEvent] = []
    if include_usage:
        tail.append((None, encode({**base, "choices": [], "usage": usage})))
    unterminated = list(tail)
    tail.append((None, b"[DONE]"))
    error = {
        "message": b.error_message or "The server had an error while processing your request.",
        "type": b.error_type or "server_error",
        "param": None,
        "code": b.error_code,
    }
    return StreamPlan(events, tail, (None, encode({"error": error})), unterminated)


async def _chat(
    request: web.Request, provider: str, deployment: str | None = None
) -> web.StreamResponse:
    ex, data, failed = await _begin(request, provider, deployment)
    if failed is not None:
        return failed
    if not isinstance(data.get("messages"), list):
        return await _fail(ex, 400, "Missing required parameter: 'messages'.", param="messages")
    b = ex.behavior
    if b.is_error:
        return await send_json(ex, b.status, error_payload(b.status, b), _headers(ex, b.status))
    model = ex.record.model
    text = answer_text(b, model)
    usage = _usage(prompt_tokens(b, data), completion_tokens(b, text))
    if ex.record.stream:
        include = b.include_usage
        if include is None:
            options = data.get("stream_options")
            include = isinstance(options, dict) and options.get("include_usage") is True
        return await send_stream(ex, _plan(ex, model, text, usage, include), _headers(ex, 200))
    return await send_json(ex, b.status, _completion(ex, model, text, usage), _headers(ex, 200))


def _embedding_inputs(value: Any) -> list[Any] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [value]
        if all(isinstance(v, str | list) for v in value):
            return value
    return None


async def _embeddings(
    request: web.Request, provider: str, deployment: str | None = None
) -> web.StreamResponse:
    ex, data, failed = await _begin(request, provider, deployment)
    if failed is not None:
        return failed
    inputs = _embedding_inputs(data.get("input"))
    if inputs is None:
        msg = "'input' must be a non-empty string, array of strings, or array of token arrays."
        return await _fail(ex, 400, msg, param="input")
    fmt = data.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        return await _fail(
            ex, 400, "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
        )
    dims = data.get("dimensions")
    if not isinstance(dims, int) or dims < 1:
        dims = DEFAULT_DIMENSIONS
    b = ex.behavior
    if b.is_error:
        return await send_json(ex, b.status, error_payload(b.status, b), _headers(ex, b.status))
    model = ex.record.model
    items = []
    for i, item in enumerate(inputs):
        vec = embedding(model, item, dims)
        items.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": float32_base64(vec) if fmt == "base64" else vec,
            }
        )
    tokens = b.prompt_tokens
    if tokens is None:
        tokens = max(1, sum(len(x) if isinstance(x, list) else count_words(x) for x in inputs))
    payload = {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return await send_json(ex, b.status, encode(payload), _headers(ex, 200))


async def _models(request: web.Request, provider: str) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    ex = state.begin(request, provider=provider, model="", stream=False, body=None)
    if not (_has_bearer(request) or (provider == "azure" and request.headers.get("api-key"))):
        return await _fail(ex, 401, _NO_KEY)
    b = ex.behavior
    if b.is_error:
        return await send_json(ex, b.status, error_payload(b.status, b), _headers(ex, b.status))
    names = dict.fromkeys([*state.scripted_models, *_KNOWN_MODELS])
    created = now()
    data = [
        {"id": n, "object": "model", "created": created, "owned_by": "salvo-fake"} for n in names
    ]
    return await send_json(ex, 200, encode({"object": "list", "data": data}), _headers(ex, 200))


@route
async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, "openai")


@route
async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _embeddings(request, "openai")


@route
async def models(request: web.Request) -> web.StreamResponse:
    return await _models(request, "openai")


@route
async def azure_chat(request: web.Request) -> web.StreamResponse:
    return await _chat(request, "azure", request.match_info["deployment"])


@route
async def azure_embeddings(request: web.Request) -> web.StreamResponse:
    return await _embeddings(request, "azure", request.match_info["deployment"])


@route
async def azure_v1_chat(request: web.Request) -> web.StreamResponse:
    return await _chat(request, "azure")


@route
async def azure_v1_embeddings(request: web.Request) -> web.StreamResponse:
    return await _embeddings(request, "azure")


@route
async def azure_v1_models(request: web.Request) -> web.StreamResponse:
    return await _models(request, "azure")


def install(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", azure_chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", azure_embeddings)
    app.router.add_post("/openai/v1/chat/completions", azure_v1_chat)
    app.router.add_post("/openai/v1/embeddings", azure_v1_embeddings)
    app.router.add_get("/openai/v1/models", azure_v1_models)
