"""The Client and its seam: :meth:`Client.route` resolves a model into a Route,
:meth:`Client.send` sends an HTTPRequest along it (limiter, retries, deadline, size limits,
error mapping) and is the one way bytes leave salvo; the client's own calls (``_calls.py``),
the proxy and the batch backends are built on it.

:class:`Client` owns one aiohttp session, the limiters and the config. It is an async context
manager (UNOPENED -> OPENED -> CLOSED); it also opens itself on first use, in which case
``aclose()`` is the caller's to await.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from . import _compat, _observe
from ._aio import asyncio_loop
from ._body import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_EVENT_BYTES
from ._budget import Budget, LocalBudget, check_limit, spend_call, spend_stream
from ._call import Route, Slot, fetch, open_stream
from ._caller import Result
from ._calls import complete, embed, open_completion_stream
from ._config import Config, load_config
from ._errors import ConfigError, SalvoError
from ._fanout import abatch_completion as _abatch_completion
from ._fanout import agather_all as _agather_all
from ._hedge import HedgeState
from ._http import new_session
from ._limits import Limiters, LimitSpec
from ._limits_redis import open_store
from ._messages import check_messages
from ._race import afirst_k as _afirst_k
from ._race import arace as _arace
from ._response import Response, ResponseStream
from ._retry import CallStats, RetryPolicy, call_with_retries
from ._routes import RouteTable
from ._stats import ClientStatistics, snapshot
from ._stream import CompletionStream
from ._types import EmbeddingResponse, ModelResponse
from .providers import HTTPRequest

if TYPE_CHECKING:
    import os

    import aiohttp

    from ._calltrace import CallTrace
    from ._redis_store import RedisStore

__all__ = ["Client"]

log = logging.getLogger("salvo")

T = TypeVar("T")


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class Client:
    """An async LLM client: one aiohttp session, the config, the limiters, the retry policy.

    ::

        async with salvo.Client(config="config.yaml") as client:
            resp = await client.arace(["fast", "smart"], messages)
    """

    def __init__(
        self,
        *,
        config: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
        limits: Mapping[str, int] | LimitSpec | None = None,
        timeout: float | None = 600.0,
        max_retries: int = 2,
        connect_timeout: float | None = 10.0,
        first_byte_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        max_concurrency: int = 100,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        hedge_budget: float | None = 0.1,
        hedge_delay: float = 1.0,
        budget_usd: float | Budget | None = None,
        otel_propagate: bool = False,
        capture_content: bool = False,
        limits_store: str | RedisStore | None = None,
        limits_store_fallback: Literal["local", "fail"] | None = None,
    ) -> None:
        """``max_body_bytes``: the largest decoded response body read into memory (64 MB);
        ``max_event_bytes``: the largest single SSE event of a stream (16 MB). Past either,
        the call fails with a ResponseDecodeError / StreamError that names the limit.
        ``hedge_budget``: hedged races may add at most this fraction of extra requests over a
        rolling window (None: no cap); ``hedge_delay``: the delay of ``hedge="pNN"`` until a
        deployment has enough latency samples; ``budget_usd``: a spend budget for every chat
        call (a number, or any object with ``reserve``/``settle``, e.g. a shared one).
        ``otel_propagate``: add the call's OpenTelemetry trace context (``traceparent``) to each
        upstream request (off by default: some providers reject unknown headers; needs the
        ``otel`` extra); ``capture_content``: record messages in the spans (never by default)."""
        _check_size("max_body_bytes", max_body_bytes)
        _check_size("max_event_bytes", max_event_bytes)
        self.config = load_config(config)
        if isinstance(limits, Mapping):
            limits = LimitSpec.from_mapping(limits)
        store = open_store(limits_store, limits_store_fallback, self.config)
        self._limiters = Limiters(limits, store)
        self.timeout = timeout
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self.max_concurrency = max_concurrency
        self.max_body_bytes = max_body_bytes
        self.max_event_bytes = max_event_bytes
        if otel_propagate:
            _observe.check_propagation()
        self.otel_propagate = otel_propagate
        self.capture_content = capture_content
        self._state = _State.UNOPENED
        self._session: aiohttp.ClientSession | None = None
        self._options = RouteTable(self.config, self._limiters, self)
        self._stats = CallStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Latency windows, hedge budget and racing counters.
        self.hedging = HedgeState(hedge_budget, hedge_delay)
        if budget_usd is None or isinstance(budget_usd, Budget):
            self.budget: Budget | None = budget_usd
        elif store is not None:  # shared with every process on the same limits store
            from ._budget_redis import RedisBudget

            self.budget = RedisBudget(store, check_limit(budget_usd, "budget_usd"))
        else:
            self.budget = LocalBudget(budget_usd)
        self._budgets: tuple[Budget, ...] = () if self.budget is None else (self.budget,)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self._check_loop()
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open(self) -> aiohttp.ClientSession:
        if self._state is _State.CLOSED:
            raise SalvoError(
                "This salvo Client is closed; create a new Client (or use the module-level "
                "functions, which manage one for you)."
            )
        if self._session is None:
            self._session = new_session(connect_timeout=self.connect_timeout)
            self._state = _State.OPENED
        return self._session

    async def aclose(self) -> None:
        """Close the session and every pooled connection. Idempotent."""
        self._state = _State.CLOSED
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await self._limiters.aclose()

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def _check_loop(self) -> asyncio.AbstractEventLoop:
        """A Client (its session, its limiters) belongs to the loop it was first used on."""
        loop = asyncio_loop()  # a ConfigError under trio, not "no running event loop"
        if loop is self._loop:
            return loop
        if self._loop is None:
            self._loop = loop
            return loop
        raise SalvoError(
            "This salvo Client was first used on another event loop; its connections and rate "
            "limiters belong to that loop. Create one Client per event loop (for example "
            "inside the coroutine you pass to asyncio.run), or use the module-level functions, "
            "which keep one client per loop."
        )

    # -- resolution ----------------------------------------------------------------------------

    def route(self, model: str, params: dict[str, Any]) -> Route:
        """Resolve ``model`` (a config alias, stepping its round-robin, or
        ``provider/model``) into a :class:`Route` for :meth:`send`, popping the
        call-configuring keys (``api_key``, ``api_base``, ``timeout``, ``max_retries``, ...)
        out of ``params`` in place. Raises ConfigError before anything is sent."""
        return self._options.route(model, params)

    def options(self, model: str, params: dict[str, Any]) -> Route:
        """The former name of :meth:`route`."""
        return self._options.route(model, params)

    # -- one call ------------------------------------------------------------------------------

    @overload
    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[False] = False,
        **params: Any,
    ) -> ModelResponse: ...

    @overload
    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[True],
        **params: Any,
    ) -> CompletionStream: ...

    @overload
    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool,
        **params: Any,
    ) -> ModelResponse | CompletionStream: ...

    async def acompletion(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        **params: Any,
    ) -> ModelResponse | CompletionStream:
        """One chat completion: a ModelResponse, or with ``stream=True`` a CompletionStream
        whose first chunk has already arrived."""
        if params and not _compat.CALL_LEVEL.isdisjoint(params):  # mock_response, fallbacks
            from ._litellm_calls import acompletion_call_level

            return await acompletion_call_level(self, model, messages, stream, params)
        route = self._options.route(model, params)
        check_messages(messages)
        if stream:
            return await self.stream_with(route, messages, params)
        return await self.complete_with(route, messages, params)

    async def aembedding(self, model: str, input: Any, **params: Any) -> EmbeddingResponse:
        """Embeddings for a string or a list of strings (or token arrays)."""
        return await embed(self, self._options.route(model, params), input, params)

    def embedding_with(
        self, route: Route, input: Any, params: Mapping[str, Any]
    ) -> Coroutine[Any, Any, EmbeddingResponse]:
        """Embeddings on an already resolved route (the proxy resolves once per request)."""
        return embed(self, route, input, params)

    async def complete_with(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        *,
        budget: Budget | None = None,
    ) -> ModelResponse:
        """A non-streaming completion on an already resolved route (used by fan-out), under
        the client's budget and ``budget`` (reserve the worst case, then settle)."""
        if budget is None and not self._budgets:
            resp = await complete(self, route, messages, params)
        else:
            budgets = self._budgets if budget is None else (*self._budgets, budget)
            resp = await spend_call(
                budgets,
                route.dep,
                messages,
                params,
                lambda: complete(self, route, messages, params),
            )
        self.hedging.record(route.dep, resp.latency_s, False)
        return resp

    async def stream_with(
        self,
        route: Route,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        *,
        budget: Budget | None = None,
    ) -> CompletionStream:
        """A stream on an already resolved route, returned once its first chunk arrived."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if budget is None and not self._budgets:
            stream = await open_completion_stream(self, route, messages, params)
        else:
            budgets = self._budgets if budget is None else (*self._budgets, budget)
            stream = await spend_stream(
                budgets,
                route.dep,
                messages,
                params,
                lambda: open_completion_stream(self, route, messages, params),
            )
        self.hedging.record(route.dep, loop.time() - started, True)
        return stream

    # -- the seam ------------------------------------------------------------------------------

    @overload
    def send(
        self,
        request: HTTPRequest,
        route: Route,
        *,
        stream: Literal[False] = False,
        accept: None = None,
        tokens: int = 0,
        deadline: float | None = None,
        trace: CallTrace | None = None,
    ) -> Coroutine[Any, Any, Response]: ...

    @overload
    def send(
        self,
        request: HTTPRequest,
        route: Route,
        *,
        stream: Literal[True],
        accept: None = None,
        tokens: int = 0,
        deadline: float | None = None,
        trace: CallTrace | None = None,
    ) -> Coroutine[Any, Any, ResponseStream]: ...

    @overload
    def send(
        self,
        request: HTTPRequest,
        route: Route,
        *,
        stream: Literal[False] = False,
        accept: Callable[[Response], Awaitable[T]],
        tokens: int = 0,
        deadline: float | None = None,
        trace: CallTrace | None = None,
    ) -> Coroutine[Any, Any, T]: ...

    @overload
    def send(
        self,
        request: HTTPRequest,
        route: Route,
        *,
        stream: Literal[True],
        accept: Callable[[ResponseStream], Awaitable[T]],
        tokens: int = 0,
        deadline: float | None = None,
        trace: CallTrace | None = None,
    ) -> Coroutine[Any, Any, T]: ...

    def send(
        self,
        request: HTTPRequest,
        route: Route,
        *,
        stream: bool = False,
        accept: Callable[[Any], Awaitable[Any]] | None = None,
        tokens: int = 0,
        deadline: float | None = None,
        trace: CallTrace | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Send ``request`` along ``route`` (from :meth:`route`): the one way bytes leave salvo.

        Each attempt waits for the route's limiter (``tokens``: the estimate to charge a
        tokens-per-minute limit), sends (a callable ``request.body`` is called for a fresh
        body, a deployment's ``auth`` hook adds its headers), and raises the adapter's
        :class:`~salvo.ProviderError` for an error status (at most a few KB of its body kept).
        Failures are retried per the client's retry policy, all within ``deadline`` (loop
        time; by default the route's ``timeout`` from now), which raises
        :class:`~salvo.TimeoutError`. aiohttp's exceptions arrive as salvo's.

        - ``stream=False``: the whole body is read (at most ``max_body_bytes``, else
          :class:`~salvo.ResponseDecodeError`) and a :class:`Response` is returned; the
          limiter slot is free again.
        - ``stream=True``: a :class:`ResponseStream` is returned as soon as the status line
          arrived (with ``first_byte_timeout``, once its first bytes did). It holds the
          limiter slot until it is closed or read to the end: ``async with`` it.
        - ``accept``: an async function run inside each attempt on the Response (or the
          ResponseStream), whose result is returned: parse a body, prime a stream. A
          :class:`~salvo.SalvoError` it raises is handled like a failed send (retried per the
          policy); with ``stream=True`` the stream is closed when it raises, and its result
          owns the stream otherwise.
        - ``trace``: an observer of this call (salvo's OpenTelemetry / proxy instrumentation,
          from ``_observe.start``), None by default: it wraps the retry loop (limiter waits,
          retries, the outcome). With ``otel_propagate=True`` each attempt carries the
          call's ``traceparent``.

        ::

            route = client.route("openai/gpt-4o-mini", {})
            req = HTTPRequest("GET", url, route.dep.headers, b"")
            resp = await client.send(req, route)
            async with await client.send(req, route, stream=True) as body:
                async for piece in body:
                    ...
        """
        if type(route) is not Route:
            raise ConfigError(f"send() takes a Route from Client.route(), not {route!r}.")
        loop = self._check_loop()
        if deadline is None and route.timeout is not None:
            deadline = loop.time() + route.timeout
        session = self._session or self._open()
        policy, stats = self.retry_policy, self._stats
        attempt: functools.partial[Coroutine[Any, Any, Any]]
        slot = None
        if stream:
            slot = Slot(route.limiter, tokens)
            attempt = functools.partial(
                open_stream, session, route, request, slot, deadline, accept
            )
        else:
            attempt = functools.partial(fetch, session, route, request, self.max_body_bytes, accept)
        if self.otel_propagate:  # a traceparent per attempt (the span is current only then)
            run: Callable[[], Coroutine[Any, Any, Any]] = _observe.propagating(attempt)
        else:
            run = attempt
        if trace is not None:
            return trace.run(
                call_with_retries, route, run, tokens, deadline, policy=policy, stats=stats,
                slot=slot,
            )  # fmt: skip
        return call_with_retries(
            route, run, tokens, deadline, policy=policy, stats=stats, slot=slot
        )

    # -- fan-out (implemented in _fanout and _race, on the FanoutClient protocol) -----------

    async def abatch_completion(
        self,
        model: str,
        list_of_messages: Sequence[Sequence[Mapping[str, Any]]],
        *,
        max_concurrency: int | None = None,
        on_result: Callable[[int, Result], None] | None = None,
        max_cost_usd: float | None = None,
        **params: Any,
    ) -> list[Result]:
        return await _abatch_completion(
            self,
            model,
            list_of_messages,
            max_concurrency=max_concurrency,
            on_result=on_result,
            max_cost_usd=max_cost_usd,
            **params,
        )

    @overload
    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[False] = False,
        hedge: float | str | None = None,
        max_cost_usd: float | None = None,
        **params: Any,
    ) -> ModelResponse: ...

    @overload
    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[True],
        hedge: float | str | None = None,
        max_cost_usd: float | None = None,
        **params: Any,
    ) -> CompletionStream: ...

    @overload
    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool,
        hedge: float | str | None = None,
        max_cost_usd: float | None = None,
        **params: Any,
    ) -> ModelResponse | CompletionStream: ...

    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        hedge: float | str | None = None,
        max_cost_usd: float | None = None,
        **params: Any,
    ) -> ModelResponse | CompletionStream:
        """The first answer among ``models`` (``hedge=``: start them one after another,
        seconds apart or at a latency percentile like ``"p95"``); see :mod:`salvo._race`."""
        return await _arace(
            self, models, messages, stream=stream, hedge=hedge, max_cost_usd=max_cost_usd, **params
        )

    async def afirst_k(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        k: int,
        *,
        hedge: float | str | None = None,
        max_cost_usd: float | None = None,
        **params: Any,
    ) -> list[ModelResponse]:
        """The first ``k`` successful answers, in arrival order; the rest closed."""
        return await _afirst_k(
            self, models, messages, k, hedge=hedge, max_cost_usd=max_cost_usd, **params
        )

    async def agather_all(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        max_cost_usd: float | None = None,
        **params: Any,
    ) -> list[Result]:
        return await _agather_all(self, models, messages, max_cost_usd=max_cost_usd, **params)

    # -- observability -----------------------------------------------------------------------

    def statistics(self) -> ClientStatistics:
        """A snapshot of this client's counters, limiters, open connections, spend and races."""
        return snapshot(
            self._session, self._stats, self._limiters, self.hedging.statistics(), self.budget
        )

    @property
    def spent_usd(self) -> float | None:
        """What calls under ``budget_usd`` have settled so far (None without a budget, or with
        a budget that does not keep a ``spent_usd``)."""
        spent = getattr(self.budget, "spent_usd", None)
        return spent if isinstance(spent, float) else None

    def __repr__(self) -> str:
        models = ", ".join(self.config.model_names) or "none"
        return f"<salvo.Client {self._state.name.lower()} aliases=[{models}]>"


def _check_size(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of bytes, not {value!r}.")
