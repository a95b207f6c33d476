"""Observing calls: the one facade the client, fan-out and proxy call into.

Two consumers are fed from here: OpenTelemetry (spans and metrics, see ``_otel.py``), when an
SDK is configured, and the proxy's per-request record (``RECORD``, set by the proxy for the
request it serves: Prometheus series and the access log). When neither is there,
:func:`start` returns None after one module-attribute probe and one context-variable read,
and the client runs exactly as it would without this module; :func:`fanout` returns the
undecorated coroutine. A call's trace is ``_calltrace.CallTrace``; a fan-out's is
:class:`FanTrace`, the parent of its contenders' spans.

For fan-out code: decorate the coroutine function with ``@fanout("race")`` (or ``"gather"``,
``"batch"``, ``"first_k"``); the contenders' calls made inside it become its children, and
for ``race`` and ``first_k`` the ones whose results it returns (the result, or each item of a
returned list) are ``won``. Call :func:`hedge_started` when starting a hedge request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._calltrace import CURRENT, FAN, RECORD, CallTrace, Recorder
from ._errors import ConfigError
from ._otel import Otel, current

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._call import Route
    from .providers import HTTPRequest

__all__ = [
    "RECORD",
    "CallTrace",
    "FanTrace",
    "Recorder",
    "check_propagation",
    "fanout",
    "hedge_started",
    "inject",
    "propagating",
    "start",
]

P = ParamSpec("P")
T = TypeVar("T")
_RANKED = frozenset({"race", "first_k"})


def check_propagation() -> None:
    """``Client(otel_propagate=True)``: a ConfigError now when the API is missing."""
    try:
        import opentelemetry.propagate  # noqa: F401
    except ImportError:
        raise ConfigError(
            "otel_propagate=True needs the OpenTelemetry API: pip install 'salvo-llm[otel]'."
        ) from None


def start(
    route: Route,
    operation: str,
    params: Mapping[str, Any],
    messages: Any = None,
    *,
    stream: bool = False,
    capture_content: bool = False,
) -> CallTrace | None:
    """A trace for one call about to start (pass it to ``Client.send(trace=)``), or None
    when nobody is listening. ``capture_content``: the Client's switch (messages in spans)."""
    otel = current()
    record = RECORD.get()
    if otel is None and record is None:
        return None
    return CallTrace(otel, record, route, operation, params, messages, stream, capture_content)


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
            answer = child.answer()
            if answer is not None and id(answer) in won:
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
            if self.ranked:
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
    token = FAN.set(fan)
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
        FAN.reset(token)
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
    fan = FAN.get()
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

    call = CURRENT.get()
    ctx = None
    if call is not None and call.span is not None:
        ctx = trace.set_span_in_context(call.span)
    headers = dict(req.headers)
    propagate.inject(headers, context=ctx)
    return req._replace(headers=headers)


def propagating(
    attempt: functools.partial[Coroutine[Any, Any, T]],
) -> Callable[[], Coroutine[Any, Any, T]]:
    """``attempt``, a partial of ``_call.fetch`` or ``_call.open_stream`` (session, route,
    request, ...), with :func:`inject` applied to its request on each call: each attempt
    carries the traceparent of the span current then."""
    func, args, kwargs = attempt.func, attempt.args, attempt.keywords
    head, request, tail = args[:2], args[2], args[3:]

    def injected() -> Coroutine[Any, Any, T]:
        return func(*head, inject(request), *tail, **kwargs)

    return injected
