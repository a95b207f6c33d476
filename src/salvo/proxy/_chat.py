"""``POST /v1/chat/completions`` and ``POST /v1/embeddings``.

The hot path (one model whose upstream speaks the OpenAI format unchanged) decodes only the
request's top level into ``dict[str, msgspec.Raw]``: ``model``, ``stream`` and
``fastest_response`` are read, ``model`` is replaced by the upstream's model name, and every
other value is passed on as the exact bytes the client sent. The upstream's body (or its SSE
stream) is relayed as bytes. Other upstreams, races and gathers go through salvo's Client and
are encoded from its OpenAI-shaped structs.

A comma-separated ``model`` fans out: with ``fastest_response: true`` the first answer wins
(``stream: true`` relays the winner's stream, the losers closed at the first chunk); without
it every model's answer comes back as ``{"object": "list", "model": ..., "data": [...]}``,
one item per model in the order given, each a ``chat.completion`` or
``{"object": "error", "model": ..., "status_code": ..., "error": {...}}``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .. import _observe
from .._call import CallOptions
from .._client import Client
from .._errors import ConfigError, ResponseDecodeError, SalvoError
from .._messages import CALL_KEYS, check_messages
from .._models import Deployment
from .._types import ModelResponse
from ..providers import HTTPRequest
from ..providers.openai import OpenAIAdapter
from ._errors import JSON_HEADERS, ProxyError, from_exception, model_not_found
from ._metrics import ask_usage
from ._relay import TIMER, Timer, read_body, relay_chunks, relay_sse, timed

if TYPE_CHECKING:
    from ._app import ProxyState

__all__ = ["ChatRoutes"]

_DECODE_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_DECODE_STR = msgspec.json.Decoder(str).decode
_DECODE_FLAG = msgspec.json.Decoder(bool | None).decode
_DECODE_INT = msgspec.json.Decoder(int | None).decode
_DECODE_ANY = msgspec.json.Decoder().decode
_VALIDATE = msgspec.json.Decoder(msgspec.Raw).decode  # syntax check only: ~1 us per KB
_ENCODE = msgspec.json.Encoder().encode
#: Request keys the proxy never forwards: how to call is the config's business, not the client's.
_BLOCKED = CALL_KEYS | {"fastest_response"}
_NOT_PARAMS = _BLOCKED | {"model", "stream", "messages"}


def _parse(raw: bytes) -> dict[str, msgspec.Raw]:
    if not raw:
        raise ProxyError(400, "The request body is empty; send a JSON object.")
    try:
        return _DECODE_TOP(raw)
    except msgspec.DecodeError as exc:
        raise ProxyError(
            400,
            f"We could not parse the JSON body of your request ({exc}); send a JSON object.",
            code="invalid_json",
        ) from None


def _field(top: dict[str, msgspec.Raw], key: str, decode: Any, expected: str) -> Any:
    raw = top.get(key)
    if raw is None:
        return None
    try:
        return decode(raw)
    except msgspec.DecodeError:
        raise ProxyError(400, f"'{key}' must be {expected}.", param=key) from None


def _model(top: dict[str, msgspec.Raw]) -> str:
    model = _field(top, "model", _DECODE_STR, "a string")
    if not model or not model.strip():
        raise ProxyError(400, "You must provide a model parameter.", param="model")
    return str(model).strip()


def _params(top: dict[str, msgspec.Raw]) -> dict[str, Any]:
    """The fully decoded request parameters (for the translated and fan-out paths)."""
    try:
        return {k: _DECODE_ANY(v) for k, v in top.items() if k not in _NOT_PARAMS}
    except msgspec.DecodeError as exc:  # pragma: no cover - the top level already parsed
        raise ProxyError(400, f"Invalid JSON value: {exc}.") from None


def _messages(top: dict[str, msgspec.Raw]) -> Any:
    messages = _field(top, "messages", _DECODE_ANY, "a list of messages")
    if messages is None:
        raise ProxyError(400, "Missing required parameter: 'messages'.", param="messages")
    try:
        check_messages(messages)
    except ConfigError as exc:
        raise ProxyError(400, str(exc), param="messages") from None
    return messages


def _passthrough(dep: Deployment) -> OpenAIAdapter | None:
    """The adapter when the upstream takes and returns the OpenAI format with nothing to
    translate (exactly OpenAIAdapter, no finish-reason mapping); None otherwise."""
    adapter = dep.adapter
    if type(adapter) is OpenAIAdapter and not adapter.finish_reasons:
        return adapter
    return None


def _forward_body(dep: Deployment, top: dict[str, msgspec.Raw]) -> bytes:
    body: dict[str, Any] = {**dep.params, **top} if dep.params else top
    if not _BLOCKED.isdisjoint(body):
        for key in _BLOCKED.intersection(body):
            del body[key]
    body["model"] = dep.endpoint.model
    return _ENCODE(body)


async def _read_json(client: Client, opts: CallOptions, req: HTTPRequest) -> bytes:
    """One attempt: the upstream's body, checked to be whole JSON (a cut-off body is a
    ResponseDecodeError, which is not retried: the provider may have done, and billed, the
    work; the client sees a 502)."""
    payload = await client._read_body(opts, req)
    try:
        _VALIDATE(payload)
    except msgspec.DecodeError as exc:
        ep = opts.dep.endpoint
        err = ResponseDecodeError(
            f"{ep.provider} sent a response for model {ep.model!r} that is not JSON ({exc})."
        )
        err.provider, err.model = ep.provider, ep.model
        raise err from None
    return payload


def _token_estimate(opts: CallOptions, top: dict[str, msgspec.Raw], raw: bytes) -> int:
    """Tokens to charge the key's tpm limiter (0 when it has none): about 4 bytes of request
    a token, plus the completion budget."""
    if not opts.limiter.counts_tokens:
        return 0
    budget = _field(top, "max_completion_tokens", _DECODE_INT, "an integer")
    if budget is None:
        budget = _field(top, "max_tokens", _DECODE_INT, "an integer")
    return len(raw) // 4 + (budget or 0)


class ChatRoutes:
    """The handlers, bound to one proxy's state."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state

    def options(self, model: str) -> CallOptions:
        """Call options for a served model; 404 ``model_not_found`` for any other."""
        state = self.state
        if model not in state.aliases and not state.settings.allow_any_model:
            raise model_not_found(model)
        try:
            return state.client.options(model, {})
        except ConfigError as exc:
            if model in state.aliases:  # resolved at start-up; the environment changed since
                raise ProxyError(
                    500,
                    f"The proxy cannot reach model {model!r}: {state.redact(str(exc))}",
                    code="model_misconfigured",
                ) from None
            err = model_not_found(model)
            err.message += f" ({state.redact(str(exc))})"
            raise err from None

    # -- chat ------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        timer = request[TIMER]
        raw = await read_body(request, self.state.settings.max_request_bytes)
        top = _parse(raw)
        model = _model(top)
        stream = bool(_field(top, "stream", _DECODE_FLAG, "true or false"))
        fastest = bool(_field(top, "fastest_response", _DECODE_FLAG, "true or false"))
        if "," in model:
            return await self._fan_out(request, timer, top, model, stream, fastest)
        opts = self.options(model)
        dep = opts.dep
        client = self.state.client
        adapter = _passthrough(dep)
        if adapter is None:
            return await self._translated(request, timer, opts, top, stream)
        if "messages" not in top:
            raise ProxyError(400, "Missing required parameter: 'messages'.", param="messages")
        url = adapter.chat_url(dep.endpoint)
        if stream:
            ask_usage(top, self.state)  # stream_include_usage: true -> tokens for the metrics
        req = HTTPRequest("POST", url, dep.headers, _forward_body(dep, top))
        tokens = _token_estimate(opts, top, raw)
        if stream:
            send = functools.partial(client._send, opts, req)
            loop = asyncio.get_running_loop()
            deadline = None if opts.timeout is None else loop.time() + opts.timeout
            trace = _observe.start(opts, "chat", top, stream=True)
            retried = client._with_retries(opts, send, tokens, deadline, trace=trace)
            upstream = await timed(timer, retried)
            return await relay_sse(
                request,
                timer,
                upstream,
                model=model,
                idle_timeout=opts.stream_idle_timeout,
                deadline=deadline,
                trace=trace,
            )
        read = functools.partial(_read_json, client, opts, req)
        trace = _observe.start(opts, "chat", top)
        payload = await timed(timer, client._with_retries(opts, read, tokens, trace=trace))
        return web.Response(body=payload, headers=JSON_HEADERS)

    async def _translated(
        self,
        request: web.Request,
        timer: Timer,
        opts: CallOptions,
        top: dict[str, msgspec.Raw],
        stream: bool,
    ) -> web.StreamResponse:
        messages = _messages(top)
        params = _params(top)
        client = self.state.client
        if stream:
            chunks = await timed(timer, client.stream_with(opts, messages, params))
            return await relay_chunks(request, timer, chunks, self.state.redact)
        resp = await timed(timer, client.complete_with(opts, messages, params))
        return web.Response(body=_ENCODE(resp), headers=JSON_HEADERS)

    async def _fan_out(
        self,
        request: web.Request,
        timer: Timer,
        top: dict[str, msgspec.Raw],
        model: str,
        stream: bool,
        fastest: bool,
    ) -> web.StreamResponse:
        names = [m.strip() for m in model.split(",") if m.strip()]
        if not names:
            raise ProxyError(400, "You must provide a model parameter.", param="model")
        for name in names:
            if name not in self.state.aliases:
                self.options(name)  # 404 unless served; no round-robin step for non-aliases
        if stream and not fastest:
            raise ProxyError(
                400,
                "Streaming is only available for one model or a race: a comma-separated model "
                "list without fastest_response: true returns every answer at once, so send "
                "stream: false (or add fastest_response: true).",
                param="stream",
                code="stream_not_supported",
            )
        messages = _messages(top)
        params = _params(top)
        client = self.state.client
        if fastest and stream:
            winner = await timed(timer, client.arace(names, messages, stream=True, **params))
            return await relay_chunks(
                request,
                timer,
                winner,
                self.state.redact,
                extra_headers={"x-salvo-model": winner.model},
            )
        if fastest:
            resp = await timed(timer, client.arace(names, messages, **params))
            return web.Response(body=_ENCODE(resp), headers=JSON_HEADERS)
        results = await timed(timer, client.agather_all(names, messages, **params))
        items = [self._item(n, r) for n, r in zip(names, results, strict=True)]
        body = _ENCODE({"object": "list", "model": model, "data": items})
        return web.Response(body=body, headers=JSON_HEADERS)

    def _item(self, name: str, result: ModelResponse | SalvoError) -> Any:
        if isinstance(result, ModelResponse):
            return result
        err = from_exception(result, self.state.redact)
        return {"object": "error", "model": name, "status_code": err.status, "error": err.body()}

    # -- embeddings ------------------------------------------------------------------------

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        timer = request[TIMER]
        raw = await read_body(request, self.state.settings.max_request_bytes)
        top = _parse(raw)
        model = _model(top)
        if "," in model:
            raise ProxyError(400, "Embeddings take one model, not a list.", param="model")
        opts = self.options(model)
        dep = opts.dep
        if not dep.info.capabilities.embeddings:
            raise ProxyError(
                400,
                f"The model {model!r} ({dep.provider}) has no embeddings API.",
                param="model",
                code="embeddings_not_supported",
            )
        if "input" not in top:
            raise ProxyError(400, "Missing required parameter: 'input'.", param="input")
        client = self.state.client
        adapter = _passthrough(dep)
        if adapter is not None:
            url = adapter.embedding_url(dep.endpoint)
            req = HTTPRequest("POST", url, dep.headers, _forward_body(dep, top))
            read = functools.partial(_read_json, client, opts, req)
            tokens = len(raw) // 4 if opts.limiter.counts_tokens else 0
            trace = _observe.start(opts, "embeddings", top)
            payload = await timed(timer, client._with_retries(opts, read, tokens, trace=trace))
            return web.Response(body=payload, headers=JSON_HEADERS)
        params = _params(top)
        value = params.pop("input")
        resp = await timed(timer, client.aembedding(model, value, **params))
        return web.Response(body=_ENCODE(resp), headers=JSON_HEADERS)
