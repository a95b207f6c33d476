"""Observing calls: the one facade the client, fan-out and proxy call into.

Two consumers are fed from here: OpenTelemetry (spans and metrics, see ``_otel.py``), when an
SDK is configured, and the proxy's per-request record (``RECORD``, set by the proxy for the
request it serves: Prometheus series and the access log). When neither is there,
:func:`start` returns None after one module-attribute probe and one context-variable read,
and the client runs exactly as it would without this module; :func:`fanout` returns the
undecorated coroutine.

A call's :class:`CallTrace` wraps the retry loop: it times each wait for the key's limiter
(a span event and ``salvo.limiter.wait.duration``), marks each retry (an event and
``salvo.retries``), and ends with the response's id, model, finish reasons and usage, or with
``error.type``. A stream's span ends when the stream is closed (its limiter slot is released
then, which is the hook). Inside a race, a contender's span is held until the race is decided,
then gets ``salvo.race.outcome``: ``won``, ``lost`` (cancelled, ended at the moment of
cancellation, or finished too late) or ``failed``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

import msgspec

from ._errors import ConfigError, ProviderError, SalvoError
from ._otel import Otel, current, provider_name, server_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._call import CallOptions
    from ._limits import KeyLimiter
    from .providers import HTTPRequest

__all__ = [
    "RECORD",
    "CallTrace",
    "Recorder",
    "Settings",
    "fanout",
    "hedge_started",
    "inject",
    "start",
]

P = ParamSpec("P")
T = TypeVar("T")

_perf = time.perf_counter
_RANKED = frozenset({"race", "first_k"})
_DECODE_ANY = msgspec.json.Decoder().decode
_ENCODE = msgspec.json.Encoder().encode


class Recorder(Protocol):
    """What the proxy keeps per request (``proxy/_log.py``'s ``RequestRecord``)."""

    def call_ended(self, trace: CallTrace) -> None: ...
    def retried(self) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def race_won(self, trace: CallTrace) -> None: ...
    def hedged(self, model: str) -> None: ...


#: The proxy's record of the request being served (None outside the proxy).
RECORD: ContextVar[Recorder | None] = ContextVar("salvo_request_record", default=None)
_FAN: ContextVar[FanTrace | None] = ContextVar("salvo_fanout", default=None)
_CURRENT: ContextVar[CallTrace | None] = ContextVar("salvo_call", default=None)


class Settings:
    """A Client's observability switches."""

    __slots__ = ("capture_content", "propagate")

    def __init__(self, *, propagate: bool = False, capture_content: bool = False) -> None:
        if propagate:
            try:
                import opentelemetry.propagate  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "otel_propagate=True needs the OpenTelemetry API: "
                    "pip install 'salvo-llm[otel]'."
                ) from None
        self.propagate = propagate
        self.capture_content = capture_content


_DEFAULT = Settings()


def start(
    opts: CallOptions,
    operation: str,
    params: Mapping[str, Any],
    messages: Any = None,
    *,
    stream: bool = False,
    settings: Settings | None = None,
) -> CallTrace | None:
    """A trace for one call about to start, or None when nobody is listening."""
    otel = current()
    record = RECORD.get()
    if otel is None and record is None:
        return None
    return CallTrace(otel, record, opts, operation, params, messages, stream, settings or _DEFAULT)


def _param(params: Mapping[str, Any], defaults: Mapping[str, Any], key: str) -> Any:
    value = params.get(key)
    if value is None:
        value = defaults.get(key)
    if isinstance(value, msgspec.Raw):  # the proxy's pass-through keeps values as raw JSON
        try:
            value = _DECODE_ANY(value)
        except msgspec.DecodeError:
            return None
    return value


class CallTrace:
    """One call, from its first wait for the limiter to its response (or its stream's end)."""

    __slots__ = (
        "attempt_ok",
        "attempts",
        "attrs",
        "capture",
        "cost",
        "dep",
        "end_ns",
        "ended",
        "error_type",
        "fan",
        "input_tokens",
        "last_error",
        "limiter_wait",
        "open_stream",
        "otel",
        "outcome",
        "output_tokens",
        "record",
        "released",
        "response_model",
        "result",
        "span",
        "span_done",
        "started",
        "stream",
        "ttfc",
    )

    def __init__(
        self,
        otel: Otel | None,
        record: Recorder | None,
        opts: CallOptions,
        operation: str,
        params: Mapping[str, Any],
        messages: Any,
        stream: bool,
        settings: Settings,
    ) -> None:
        dep = opts.dep
        ep = dep.endpoint
        self.otel, self.record, self.dep, self.stream = otel, record, dep, stream
        self.started = _perf()
        self.capture = settings.capture_content
        self.fan = _FAN.get()
        self.attempts = 0
        self.attempt_ok = self.released = self.open_stream = False
        self.ended = self.span_done = False
        self.end_ns: int | None = None
        self.result: Any = None
        self.cost: float | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.ttfc: float | None = None
        self.response_model: str | None = None
        self.limiter_wait = 0.0
        self.last_error: SalvoError | None = None
        self.error_type: str | None = None
        self.outcome: str | None = None
        address, port = server_of(ep.api_base)
        self.attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider_name(dep.provider),
            "gen_ai.request.model": ep.model,
            "server.address": address,
            "server.port": port,
        }
        self.span: Span | None = None
        if otel is not None and otel.tracer is not None:
            attrs = dict(self.attrs)
            attrs["salvo.model"] = dep.name
            if operation == "chat":
                attrs["gen_ai.request.stream"] = stream
                for key, name in (
                    ("max_tokens", "gen_ai.request.max_tokens"),
                    ("max_completion_tokens", "gen_ai.request.max_tokens"),
                    ("temperature", "gen_ai.request.temperature"),
                    ("top_p", "gen_ai.request.top_p"),
                ):
                    value = _param(params, dep.params, key)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        attrs[name] = value
            if self.capture and messages is not None:
                attrs["gen_ai.input.messages"] = _json(messages)
            self.span = otel.tracer.start_span(
                f"{operation} {ep.model}", kind=otel.client_kind, attributes=attrs
            )
        if self.fan is not None:
            self.fan.add(self)

    # -- running the retry loop ------------------------------------------------------------

    async def run(
        self,
        retry: Callable[..., Coroutine[Any, Any, T]],
        opts: CallOptions,
        attempt: Callable[[], Coroutine[Any, Any, Any]],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """``retry(call, attempt, *args, **kwargs)`` (the client's retry loop) with this
        trace's limiter and attempt wrappers in place, the trace current for propagation."""
        token = _CURRENT.set(self)
        try:
            result = await retry(_TracedCall(opts, self), self._wrap(attempt), *args, **kwargs)
        except BaseException as exc:
            self.failed(exc)
            raise
        finally:
            _CURRENT.reset(token)
        self.succeeded(result)
        return result

    def _wrap(
        self, attempt: Callable[[], Coroutine[Any, Any, T]]
    ) -> Callable[[], Coroutine[Any, Any, T]]:
        async def traced() -> T:
            n = self.attempts
            self.attempts = n + 1
            if n:
                self._retried(n)
            try:
                result = await attempt()
            except SalvoError as exc:
                self.last_error = exc
                raise
            self.attempt_ok = True
            return result

        return traced

    def _retried(self, n: int) -> None:
        err = self.last_error
        if self.span is not None:
            event: dict[str, Any] = {"salvo.retry.attempt": n + 1}
            if err is not None:
                event["error.type"] = type(err).__name__
                if isinstance(err, ProviderError):
                    event["http.response.status_code"] = err.status_code
            self.span.add_event("salvo.retry", event)
        otel = self.otel
        if otel is not None and otel.retries is not None:
            otel.retries.add(1, self.attrs)
        if self.record is not None:
            self.record.retried()

    def waited(self, seconds: float) -> None:
        self.limiter_wait += seconds
        if self.span is not None and seconds >= 0.001:
            self.span.add_event("salvo.limiter.wait", {"salvo.limiter.wait_s": seconds})
        otel = self.otel
        if otel is not None and otel.limiter_wait is not None:
            otel.limiter_wait.record(seconds, self.attrs)
        if self.record is not None:
            self.record.waited(seconds)

    def released_slot(self) -> None:
        """The limiter slot of the successful attempt was given back: at once for a plain
        answer, when the stream closes for a stream."""
        self.released = True
        if self.open_stream:
            self.open_stream = False
            self._stream_usage(getattr(self.result, "_usage", None))
            self._finish()

    # -- outcomes ------------------------------------------------------------------------------

    def succeeded(self, result: Any) -> None:
        self.result = result
        if self.stream:
            self.ttfc = _perf() - self.started
            if self.span is not None:
                self.span.set_attribute("gen_ai.response.time_to_first_chunk", self.ttfc)
            if hasattr(result, "_hold_slot"):  # a CompletionStream: ends when it closes
                if self.released:
                    self._stream_usage(getattr(result, "_usage", None))
                    self._finish()
                else:
                    self.open_stream = True
            return  # a raw upstream stream (the proxy): ended by passthrough_done()
        self._response(result)
        self._finish()

    def first_chunk(self) -> None:
        """The proxy relayed the first bytes of a pass-through stream."""
        self.ttfc = _perf() - self.started
        if self.span is not None:
            self.span.set_attribute("gen_ai.response.time_to_first_chunk", self.ttfc)

    def passthrough_done(self, tail: bytes, error: BaseException | str | None = None) -> None:
        """The proxy finished relaying a pass-through stream; ``tail`` is its last bytes
        (the final chunk's ``usage``, when the upstream sent one, is read from them).
        ``error``: why it stopped early (``"cancelled"``: the client went away)."""
        if self.ended:
            return
        if error is not None:
            if isinstance(error, str):
                self.error_type = error
            else:
                code = getattr(error, "code", None)
                self.error_type = code if isinstance(code, str) else type(error).__qualname__
            if self.fan is not None and self.fan.ranked:
                self.outcome = "failed"
            self._finish(force_end=True)
            return
        self._raw_response(_last_usage_event(tail))
        self._finish()

    def failed(self, exc: BaseException) -> None:
        if self.ended:
            return
        ranked = self.fan is not None and self.fan.ranked
        if isinstance(exc, asyncio.CancelledError):
            if ranked:
                self.outcome = "lost"
            else:
                self.error_type = "cancelled"
        else:
            self.error_type = type(exc).__qualname__
            if ranked:
                self.outcome = "failed"
        self.end_ns = None
        self._finish(force_end=True)

    def _response(self, result: Any) -> None:
        if isinstance(result, bytes | bytearray | memoryview):
            try:
                self._raw_response(_DECODE_BRIEF(result))
            except msgspec.DecodeError:
                pass
            return
        usage = getattr(result, "usage", None)
        if usage is not None:
            self.input_tokens = getattr(usage, "prompt_tokens", None)
            self.output_tokens = getattr(usage, "completion_tokens", None)
        self.cost = getattr(result, "cost_usd", None)
        self.response_model = getattr(result, "model", None) or None
        span = self.span
        if span is None:
            return
        rid = getattr(result, "id", None)
        if rid:
            span.set_attribute("gen_ai.response.id", rid)
        choices = getattr(result, "choices", None)
        if choices:
            reasons = [c.finish_reason for c in choices if c.finish_reason]
            if reasons:
                span.set_attribute("gen_ai.response.finish_reasons", reasons)
            if self.capture:
                out = [
                    {
                        "role": "assistant",
                        "content": c.message.content,
                        "finish_reason": c.finish_reason,
                    }
                    for c in choices
                ]
                span.set_attribute("gen_ai.output.messages", _json(out))

    def _raw_response(self, brief: _Brief | None) -> None:
        from ._pricing import response_cost

        if brief is None:
            return
        usage = brief.usage
        if usage is not None:
            self.input_tokens, self.output_tokens = usage.prompt_tokens, usage.completion_tokens
            model = brief.model or ""
            self.cost = response_cost(self.dep.provider, usage, model, self.dep.endpoint.model)
        self.response_model = brief.model
        if self.span is not None:
            if brief.id:
                self.span.set_attribute("gen_ai.response.id", brief.id)
            reasons = [c.finish_reason for c in brief.choices or () if c.finish_reason]
            if reasons:
                self.span.set_attribute("gen_ai.response.finish_reasons", reasons)

    def _stream_usage(self, usage: Any) -> None:
        from ._pricing import response_cost

        if usage is None:
            return
        self.input_tokens, self.output_tokens = usage.prompt_tokens, usage.completion_tokens
        self.cost = response_cost(self.dep.provider, usage, self.dep.endpoint.model)

    def _finish(self, force_end: bool = False) -> None:
        if self.ended:
            return
        self.ended = True
        elapsed = _perf() - self.started
        attrs = self.attrs
        if self.response_model:
            attrs["gen_ai.response.model"] = self.response_model
        if self.error_type is not None:
            attrs["error.type"] = self.error_type
        otel = self.otel
        if otel is not None and otel.duration is not None:
            otel.duration.record(elapsed, attrs)
            tokens = otel.tokens
            if tokens is not None:
                if self.input_tokens is not None:
                    tokens.record(self.input_tokens, {**attrs, "gen_ai.token.type": "input"})
                if self.output_tokens is not None:
                    tokens.record(self.output_tokens, {**attrs, "gen_ai.token.type": "output"})
            if self.cost and otel.cost is not None:
                otel.cost.add(self.cost, attrs)
        if self.fan is not None and self.cost:
            self.fan.cost += self.cost
        if self.record is not None:
            self.record.call_ended(self)
        span = self.span
        if span is None:
            return
        if self.response_model:
            span.set_attribute("gen_ai.response.model", self.response_model)
        if self.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", self.input_tokens)
        if self.output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", self.output_tokens)
        if self.cost is not None:
            span.set_attribute("salvo.cost_usd", self.cost)
        if self.error_type is not None:
            span.set_attribute("error.type", self.error_type)
            if otel is not None:
                span.set_status(otel.error_status(self.error_type))
        fan = self.fan
        if fan is not None and fan.ranked and not fan.decided and not force_end:
            self.end_ns = time.time_ns()  # the race decides the outcome, then ends it
            return
        self._end_span()

    def _end_span(self, end_ns: int | None = None) -> None:
        span = self.span
        if span is None or self.span_done:
            return
        self.span_done = True
        if self.outcome is not None:
            span.set_attribute("salvo.race.outcome", self.outcome)
        span.end(end_time=end_ns)


class _TracedLimiter:
    """A KeyLimiter seen through a trace: waits are timed, the final release noticed."""

    __slots__ = ("_limiter", "_trace")

    def __init__(self, limiter: KeyLimiter, trace: CallTrace) -> None:
        self._limiter = limiter
        self._trace = trace

    @property
    def counts_tokens(self) -> bool:
        return self._limiter.counts_tokens

    async def acquire(self, tokens: int = 0) -> None:
        t = _perf()
        await self._limiter.acquire(tokens)
        self._trace.waited(_perf() - t)

    def release(self, tokens: int = 0, used: int | None = None) -> None:
        self._limiter.release(tokens, used)
        if self._trace.attempt_ok:
            self._trace.released_slot()

    def pause(self, seconds: float) -> None:
        self._limiter.pause(seconds)


class _TracedCall:
    """The client's CallOptions, as the retry loop sees them, with the traced limiter."""

    __slots__ = ("limiter", "max_retries", "model", "provider", "secret", "timeout")

    def __init__(self, opts: CallOptions, trace: CallTrace) -> None:
        self.limiter = cast("KeyLimiter", _TracedLimiter(opts.limiter, trace))
        self.max_retries = opts.max_retries
        self.timeout = opts.timeout
        self.provider = opts.provider
        self.model = opts.model
        self.secret = opts.secret


# -- fan-out -----------------------------------------------------------------------------------


class FanTrace:
    """A race, gather, batch or first_k: the parent of its contenders' spans."""

    __slots__ = (
        "children",
        "cost",
        "decided",
        "hedges",
        "kind",
        "otel",
        "ranked",
        "record",
        "span",
    )

    def __init__(self, kind: str, otel: Otel | None, record: Recorder | None, models: Any) -> None:
        self.kind = kind
        self.otel = otel
        self.record = record
        self.ranked = kind in _RANKED
        self.children: list[CallTrace] = []
        self.cost = 0.0
        self.hedges = 0
        self.decided = False
        self.span: Span | None = None
        if otel is not None and otel.tracer is not None:
            attrs: dict[str, Any] = {"salvo.fanout.kind": kind}
            if isinstance(models, str):
                attrs["salvo.fanout.models"] = [m.strip() for m in models.split(",") if m.strip()]
            elif isinstance(models, list | tuple) and all(isinstance(m, str) for m in models):
                attrs["salvo.fanout.models"] = list(models)
            self.span = otel.tracer.start_span(kind, attributes=attrs)

    def add(self, child: CallTrace) -> None:
        if self.ranked:
            self.children.append(child)

    def decide(self, result: Any) -> None:
        """Give each contender its outcome (``result``: what the fan-out returned, or None
        when it raised) and end the spans that waited for it."""
        self.decided = True
        if result is None:
            won: set[int] = set()
        elif isinstance(result, list):
            won = {id(r) for r in result}
        else:
            won = {id(result)}
        winners = []
        otel = self.otel
        for child in self.children:
            if child.result is not None and id(child.result) in won:
                child.outcome = "won"
                winners.append(child.dep.name)
                if otel is not None and otel.races_won is not None:
                    otel.races_won.add(1, {**child.attrs, "salvo.model": child.dep.name})
                if self.record is not None:
                    self.record.race_won(child)
            elif child.outcome is None:
                child.outcome = "lost"
            if child.span is not None and not child.span_done:
                if child.ended:
                    child._end_span(child.end_ns)
                else:  # a stream still being read: it ends when it closes
                    child.span.set_attribute("salvo.race.outcome", child.outcome)
        span = self.span
        if span is not None:
            if winners:
                span.set_attribute("salvo.race.winners", winners)
            span.set_attribute("salvo.fanout.contenders", len(self.children))

    def end(self, exc: BaseException | None) -> None:
        span = self.span
        if span is None:
            return
        span.set_attribute("salvo.hedges", self.hedges)
        span.set_attribute("salvo.cost_usd", self.cost)
        if exc is not None and self.otel is not None:
            etype = "cancelled" if isinstance(exc, asyncio.CancelledError) else type(exc).__name__
            span.set_attribute("error.type", etype)
            span.set_status(self.otel.error_status(etype))
        span.end()


def fanout(
    kind: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate a fan-out coroutine function (``race``, ``gather``, ``batch``, ``first_k``):
    when observed, its run gets a parent span and its contenders' outcomes. The models are
    read from the second positional argument (after the client)."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
            otel = current()
            record = RECORD.get()
            if otel is None and record is None:
                return fn(*args, **kwargs)
            models = args[1] if len(args) > 1 else kwargs.get("models", kwargs.get("model"))
            return _run_fan(FanTrace(kind, otel, record, models), fn(*args, **kwargs))

        return wrapper

    return decorate


async def _run_fan(fan: FanTrace, coro: Coroutine[Any, Any, T]) -> T:
    token = _FAN.set(fan)
    detach = _attach(fan.span)
    try:
        result = await coro
    except BaseException as exc:
        fan.decide(None)
        fan.end(exc)
        raise
    finally:
        if detach is not None:
            detach()
        _FAN.reset(token)
    fan.decide(result if fan.ranked else None)
    fan.end(None)
    return result


def _attach(span: Span | None) -> Callable[[], None] | None:
    """Make ``span`` the current OpenTelemetry span (the tasks created now inherit it)."""
    if span is None:
        return None
    from opentelemetry import context, trace

    token = context.attach(trace.set_span_in_context(span))
    return functools.partial(context.detach, token)


def hedge_started(model: str) -> None:
    """Count a hedge (a backup request started because the first was slow): for the
    enclosing fan-out's span, ``salvo.hedges``, and the proxy's series."""
    fan = _FAN.get()
    if fan is not None:
        fan.hedges += 1
        otel, record = fan.otel, fan.record
    else:
        otel, record = current(), RECORD.get()
    if otel is not None and otel.hedges is not None:
        otel.hedges.add(1, {"salvo.model": model})
    if record is not None:
        record.hedged(model)


# -- propagation -------------------------------------------------------------------------------


def inject(req: HTTPRequest) -> HTTPRequest:
    """``req`` with a ``traceparent`` (and ``tracestate``) header for the call being made."""
    from opentelemetry import propagate, trace

    call = _CURRENT.get()
    ctx = None
    if call is not None and call.span is not None:
        ctx = trace.set_span_in_context(call.span)
    headers = dict(req.headers)
    propagate.inject(headers, context=ctx)
    return req._replace(headers=headers)


# -- helpers -----------------------------------------------------------------------------------


class _BriefUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _BriefChoice(msgspec.Struct):
    finish_reason: str | None = None


class _Brief(msgspec.Struct):
    """The few fields of an OpenAI-format body (or chunk) that observability reads."""

    id: str | None = None
    model: str | None = None
    usage: _BriefUsage | None = None
    choices: list[_BriefChoice] | None = None


_DECODE_BRIEF = msgspec.json.Decoder(_Brief).decode


def _last_usage_event(tail: bytes) -> _Brief | None:
    """The last SSE ``data:`` event in ``tail`` that carries a ``usage`` object."""
    at = tail.rfind(b'"usage"')
    while at >= 0:
        begin = tail.rfind(b"data:", 0, at)
        if begin < 0:
            return None
        end = tail.find(b"\n", at)
        line = tail[begin + 5 : end if end >= 0 else len(tail)].strip()
        try:
            brief = _DECODE_BRIEF(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            at = tail.rfind(b'"usage"', 0, begin)
            continue
        return brief if brief.usage is not None else None
    return None


def _json(value: Any) -> str:
    try:
        return _ENCODE(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def first_chunk_marker(trace: CallTrace | None) -> Callable[[], None] | None:
    return None if trace is None else trace.first_chunk
