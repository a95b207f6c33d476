"""One observed call: :class:`CallTrace` wraps the client's retry loop.

It times each wait for the key's limiter (a span event and ``salvo.limiter.wait.duration``),
marks each retry (an event and ``salvo.retries``), and ends with the response's id, model,
finish reasons and usage, or with ``error.type``. A stream's span ends when the stream is
closed (``CompletionStream.add_close_callback``; the proxy's pass-through relay calls
:meth:`CallTrace.passthrough_done` for a raw ``ResponseStream``). Inside a race, a contender's
span is held until the race is decided (``_observe.FanTrace``), then gets
``salvo.race.outcome``: ``won``, ``lost`` (cancelled, ended at the moment of cancellation, or
finished too late) or ``failed``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

from ._errors import ProviderError, SalvoError
from ._otel import Otel, provider_name, server_of
from ._stream import CompletionStream
from ._traced import TracedCall, stream_error
from ._usage import Brief, decode_brief, last_usage_event, param, to_json

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._call import Route
    from ._observe import FanTrace

__all__ = ["CURRENT", "FAN", "RECORD", "CallTrace", "Recorder"]

T = TypeVar("T")
_perf = time.perf_counter


class Recorder(Protocol):
    """What the proxy keeps per request (``proxy/_log.py``'s ``RequestRecord``)."""

    def call_ended(self, trace: CallTrace) -> None: ...
    def retried(self) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def race_won(self, trace: CallTrace) -> None: ...
    def hedged(self, model: str) -> None: ...


#: The proxy's record of the request being served (None outside the proxy).
RECORD: ContextVar[Recorder | None] = ContextVar("salvo_request_record", default=None)
FAN: ContextVar[FanTrace | None] = ContextVar("salvo_fanout", default=None)
CURRENT: ContextVar[CallTrace | None] = ContextVar("salvo_call", default=None)


class CallTrace:
    """One call, from its first wait for the limiter to its response (or its stream's end)."""

    __slots__ = (
        "attempts",
        "attrs",
        "capture",
        "cost",
        "dep",
        "end_attrs",
        "end_ns",
        "ended",
        "error_type",
        "fan",
        "input_tokens",
        "last_error",
        "limiter_wait",
        "name",
        "otel",
        "outcome",
        "output_tokens",
        "pending",
        "record",
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
        opts: Route,
        operation: str,
        params: Mapping[str, Any],
        messages: Any,
        stream: bool,
        capture_content: bool,
    ) -> None:
        dep = opts.dep
        ep = dep.endpoint
        self.otel, self.record, self.dep, self.stream = otel, record, dep, stream
        self.started = _perf()
        self.capture = capture_content
        self.fan = FAN.get()
        self.attempts = 0
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
        self.end_attrs: dict[str, Any] = {}  # the span's attributes known at its end
        address, port = server_of(ep.api_base)
        self.attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider_name(dep.provider),
            "gen_ai.request.model": ep.model,
            "server.address": address,
            "server.port": port,
        }
        self.span: Span | None = None
        self.pending: dict[str, Any] | None = None  # the span's attributes, until run()
        self.name = f"{operation} {ep.model}"
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
                    value = param(params, dep.params, key)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        attrs[name] = value
            if self.capture and messages is not None:
                attrs["gen_ai.input.messages"] = to_json(messages)
            self.pending = attrs
        if self.fan is not None:
            self.fan.add(self)

    # -- running the retry loop ------------------------------------------------------------

    async def run(
        self,
        retry: Callable[..., Coroutine[Any, Any, T]],
        opts: Route,
        attempt: Callable[[], Coroutine[Any, Any, Any]],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        """``retry(call, attempt, *args, **kwargs)`` (the client's retry loop) with this
        trace's limiter and attempt wrappers in place, the trace current for propagation.
        The span starts here, so that a call that never gets this far leaves none open."""
        self.started = _perf()
        attrs, self.pending = self.pending, None
        if attrs is not None and self.otel is not None and self.otel.tracer is not None:
            kind = self.otel.client_kind
            self.span = self.otel.tracer.start_span(self.name, kind=kind, attributes=attrs)
        token = CURRENT.set(self)
        try:
            result = await retry(TracedCall(opts, self), self._wrap(attempt), *args, **kwargs)
        except BaseException as exc:
            self.failed(exc)
            raise
        finally:
            CURRENT.reset(token)
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

    def _stream_closed(self, used: int | None) -> None:
        """A CompletionStream's close callback: the span ends with the stream. It runs
        inside the close, so the exception being handled (if any) is why it closed. (A
        stream dropped unclosed is gone by then: its span ends without its usage.)"""
        stream = self.answer()
        if isinstance(stream, CompletionStream):
            self.error_type = stream_error(stream, sys.exc_info()[1], self.dep)
            self._stream_usage(stream.usage)
        self._finish()

    def answer(self) -> Any:
        """What the call returned (a stream only while something else keeps it), or None."""
        result = self.result
        return result() if isinstance(result, weakref.ref) else result

    # -- outcomes ------------------------------------------------------------------------------

    def succeeded(self, result: Any) -> None:
        self.result = result
        if self.stream:
            self.ttfc = _perf() - self.started
            if self.span is not None:
                self.span.set_attribute("gen_ai.response.time_to_first_chunk", self.ttfc)
            if isinstance(result, CompletionStream):  # ends when it closes (at once if it has)
                # Held weakly: the stream's close callback holds this trace, and a stream
                # its caller drops unclosed must be freed (slot back) at once, not by the
                # cycle collector.
                self.result = weakref.ref(result)
                result.add_close_callback(self._stream_closed)
            return  # a raw ResponseStream (the proxy's relay): ended by passthrough_done()
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
        self._raw_response(last_usage_event(tail))
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
                self._raw_response(decode_brief(result))
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
            self.end_attrs["gen_ai.response.id"] = rid
        choices = getattr(result, "choices", None)
        if choices:
            reasons = [c.finish_reason for c in choices if c.finish_reason]
            if reasons:
                self.end_attrs["gen_ai.response.finish_reasons"] = reasons
            if self.capture:
                out = [
                    {
                        "role": "assistant",
                        "content": c.message.content,
                        "finish_reason": c.finish_reason,
                    }
                    for c in choices
                ]
                self.end_attrs["gen_ai.output.messages"] = to_json(out)

    def _raw_response(self, brief: Brief | None) -> None:
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
                self.end_attrs["gen_ai.response.id"] = brief.id
            reasons = [c.finish_reason for c in brief.choices or () if c.finish_reason]
            if reasons:
                self.end_attrs["gen_ai.response.finish_reasons"] = reasons

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
        elif self.outcome == "lost" and self.result is None:  # a race's loser, cancelled:
            attrs["error.type"] = "cancelled"  # its duration is not an answer's latency
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
        end = self.end_attrs
        if self.response_model:
            end["gen_ai.response.model"] = self.response_model
        if self.input_tokens is not None:
            end["gen_ai.usage.input_tokens"] = self.input_tokens
        if self.output_tokens is not None:
            end["gen_ai.usage.output_tokens"] = self.output_tokens
        if self.cost is not None:
            end["salvo.cost_usd"] = self.cost
        if self.error_type is not None:
            end["error.type"] = self.error_type
            if otel is not None:
                span.set_status(otel.error_status(self.error_type))
        span.set_attributes(end)
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
