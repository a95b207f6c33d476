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

import functools
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .. import _observe
from .._call import Route
from .._errors import ConfigError, ResponseDecodeError, SalvoError
from .._hedge import parse_hedge
from .._messages import CALL_KEYS, check_messages
from .._models import Deployment
from .._response import Response, ResponseStream
from .._types import ModelResponse
from ..providers import HTTPRequest
from ..providers._base import DECODE_ERRORS, decode_problem
from ..providers.openai import OpenAIAdapter
from ._errors import JSON_HEADERS, ProxyError, from_exception, model_not_found
from ._metrics import ask_usage
from ._relay import TIMER, Timer, read_body, relay_chunks, relay_sse, timed
from ._settings import check_fanout

if TYPE_CHECKING:
    from ._state import ProxyState

__all__ = ["ChatRoutes"]

_DECODE_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_DECODE_STR = msgspec.json.Decoder(str).decode
_DECODE_FLAG = msgspec.json.Decoder(bool | None).decode
_DECODE_INT = msgspec.json.Decoder(int | None).decode
_DECODE_ANY = msgspec.json.Decoder().decode
_VALIDATE = msgspec.json.Decoder(msgspec.Raw).decode  # syntax check only: ~1 us per KB
_ENCODE = msgspec.json.Encoder().encode
#: Request keys the proxy never forwards: how to call is the config's business, not the client's.
_BLOCKED = CALL_KEYS | {"fastest_response", "hedge"}
_NOT_PARAMS = _BLOCKED | {"model", "stream", "messages"}


def _parse(raw: bytes) -> dict[str, msgspec.Raw]:
    if not raw:
        raise ProxyError(400, "The request body is empty; send a JSON object.")
    try:
        return _DECODE_TOP(raw)
    except DECODE_ERRORS as exc:
        raise ProxyError(
            400,
            f"We could not parse the JSON body of your request ({decode_problem(exc)}); "
            "send a JSON object.",
            code="invalid_json",
        ) from None


def _field(top: dict[str, msgspec.Raw], key: str, decode: Any, expected: str) -> Any:
    raw = top.get(key)
    if raw is None:
        return None
    try:
        return decode(raw)
    except DECODE_ERRORS:
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
    except DECODE_ERRORS as exc:  # pragma: no cover - the top level already parsed
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


async def _json_body(route: Route, resp: Response) -> bytes:
    """Accept a whole body only when it is JSON (a cut-off body is a ResponseDecodeError,
    which is not retried: the provider may have done, and billed, the work; the client sees a
    502)."""
    payload = resp.content
    try:
        _VALIDATE(payload)
    except DECODE_ERRORS as exc:
        err = ResponseDecodeError(
            f"{route.provider} sent a response for model {route.model!r} that is not JSON "
            f"({decode_problem(exc)})."
        )
        err.provider, err.model = route.provider, route.model
        raise err from None
    return payload


async def _sse_stream(route: Route, stream: ResponseStream) -> ResponseStream:
    """Accept an upstream stream only when it is one: ``text/event-stream`` (an HTML page or
    a JSON body with status 200 is a ResponseDecodeError, answered as a 502 before anything is
    relayed), primed to its first bytes so that a failure before them is retried."""
    if stream.content_type != "text/event-stream":
        err = ResponseDecodeError(
            f"{route.provider} answered a streaming request for model {route.model!r} with "
            f"Content-Type {stream.content_type or 'none'!r}, not an event stream."
        )
        err.provider, err.model = route.provider, route.model
        raise err
    stream.unread(await stream.read())
    return stream


def _token_estimate(opts: Route, top: dict[str, msgspec.Raw], raw: bytes) -> int:
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

    def options(self, model: str) -> Route:
        """Call options for a served model; 404 ``model_not_found`` for any other."""
        state = self.state
        if model not in state.aliases and not state.settings.allow_any_model:
            raise model_not_found(model)
        try:
            return state.client.route(model, {})
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
        trace = _observe.start(opts, "chat", top, stream=stream)
        if stream:
            accept_sse = functools.partial(_sse_stream, opts)
            sent = client.send(
                req, opts, stream=True, accept=accept_sse, tokens=tokens, trace=trace
            )
            upstream = await timed(timer, sent)
            return await relay_sse(
                request,
                timer,
                upstream,
                model=model,
                scrub=self.state.scrub,
                max_event=client.max_event_bytes,
                trace=trace,
            )
        accept = functools.partial(_json_body, opts)
        answered = client.send(req, opts, accept=accept, tokens=tokens, trace=trace)
        payload = await timed(timer, answered)
        return web.Response(body=self._scrubbed(payload), headers=JSON_HEADERS)

    def _scrubbed(self, payload: bytes) -> bytes:
        scrub = self.state.scrub
        return scrub(payload) if scrub else payload

    async def _translated(
        self,
        request: web.Request,
        timer: Timer,
        opts: Route,
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
        names = check_fanout(model, self.state.settings)  # before any task starts
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
        hedge = self._hedge(top, fastest)
        messages = _messages(top)
        params = _params(top)
        client = self.state.client
        if fastest and stream:
            winner = await timed(
                timer, client.arace(names, messages, stream=True, hedge=hedge, **params)
            )
            return await relay_chunks(
                request,
                timer,
                winner,
                self.state.redact,
                extra_headers={"x-salvo-model": winner.model},
            )
        if fastest:
            resp = await timed(timer, client.arace(names, messages, hedge=hedge, **params))
            return web.Response(body=_ENCODE(resp), headers=JSON_HEADERS)
        results = await timed(timer, client.agather_all(names, messages, **params))
        items = [self._item(n, r) for n, r in zip(names, results, strict=True)]
        body = _ENCODE({"object": "list", "model": model, "data": items})
        return web.Response(body=body, headers=JSON_HEADERS)

    def _hedge(self, top: dict[str, msgspec.Raw], fastest: bool) -> float | str | None:
        """The race's ``hedge`` (the request's, else the config's default); 400 if invalid
        or given without ``fastest_response: true``."""
        value = _field(top, "hedge", _DECODE_ANY, "seconds or a percentile such as 'p95'")
        if value is not None and not fastest:
            raise ProxyError(
                400,
                "'hedge' applies to races: send it with fastest_response: true.",
                param="hedge",
            )
        if value is None:
            return self.state.settings.hedge if fastest else None
        try:
            parse_hedge(value)
        except ConfigError as exc:
            raise ProxyError(400, str(exc), param="hedge") from None
        result: float | str = value
        return result

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
            accept = functools.partial(_json_body, opts)
            tokens = len(raw) // 4 if opts.limiter.counts_tokens else 0
            trace = _observe.start(opts, "embeddings", top)
            sent = client.send(req, opts, accept=accept, tokens=tokens, trace=trace)
            payload = await timed(timer, sent)
            return web.Response(body=self._scrubbed(payload), headers=JSON_HEADERS)
        params = _params(top)
        value = params.pop("input")
        resp = await timed(timer, client.embedding_with(opts, value, params))
        return web.Response(body=_ENCODE(resp), headers=JSON_HEADERS)
