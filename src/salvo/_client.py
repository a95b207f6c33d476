"""One call: resolve the deployment, pace it, send it, retry it, parse it.

:class:`Client` owns one aiohttp session, the limiters and the config. It is an async context
manager (UNOPENED -> OPENED -> CLOSED); it also opens itself on first use, in which case
``aclose()`` is the caller's to await.
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ._call import CallOptions, first_byte_error, read_body, send
from ._config import Config, load_config
from ._errors import ConfigError, SalvoError
from ._http import new_session
from ._limits import (
    Limiters,
    LimitSpec,
    estimate_input_tokens,
    estimate_tokens,
)
from ._limits_redis import open_store
from ._messages import CALL_KEYS, check_messages
from ._models import Deployment, resolve_deployment
from ._pricing import response_cost
from ._retry import CallStats, RetryPolicy, call_with_retries
from ._stats import ClientStatistics, snapshot
from ._stream import CompletionStream
from ._types import EmbeddingResponse, ModelResponse
from .providers import HTTPRequest

if TYPE_CHECKING:
    import os

    import aiohttp

    from ._fanout import Result
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
        limits_store: str | RedisStore | None = None,
        limits_store_fallback: Literal["local", "fail"] | None = None,
    ) -> None:
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
        self._state = _State.UNOPENED
        self._session: aiohttp.ClientSession | None = None
        self._options: dict[Any, CallOptions] = {}
        self._rr: Counter[str] = Counter()
        self._stats = CallStats()
        self._loop: asyncio.AbstractEventLoop | None = None

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
        loop = asyncio.get_running_loop()
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

    def options(self, model: str, params: dict[str, Any]) -> CallOptions:
        """Resolve ``model`` and pop the call-configuring keys out of ``params`` (in place)."""
        if params and not CALL_KEYS.isdisjoint(params):
            over = {k: params.pop(k) for k in CALL_KEYS.intersection(params)}
        else:
            over = None
        entries = self.config.entries(model) if self.config.models else None
        idx = 0
        if entries is not None and len(entries) > 1:
            idx = self._rr[model] % len(entries)
            self._rr[model] += 1
        key: Any = (model, idx) if over is None else (model, idx, _freeze(over))
        opts = self._options.get(key)
        if opts is None:
            opts = self._resolve(model, idx, over or {})
            self._options[key] = opts
        return opts

    def _resolve(self, model: str, idx: int, over: Mapping[str, Any]) -> CallOptions:
        dep = resolve_deployment(model, config=self.config, overrides=over, entry_index=idx)
        spec = LimitSpec(dep.rpm, dep.tpm, dep.max_parallel_requests)
        limiter = self._limiters.get(dep.limit_key, spec)
        return CallOptions(
            dep,
            timeout=_pick(over.get("timeout"), dep.timeout, self.timeout),
            max_retries=_pick(over.get("max_retries"), dep.max_retries, self.max_retries),
            first_byte_timeout=_pick(over.get("first_byte_timeout"), self.first_byte_timeout),
            stream_idle_timeout=_pick(over.get("stream_idle_timeout"), self.stream_idle_timeout),
            limiter=limiter,
        )

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
        opts = self.options(model, params)
        check_messages(messages)
        if stream:
            return await self.stream_with(opts, messages, params)
        return await self.complete_with(opts, messages, params)

    async def aembedding(self, model: str, input: Any, **params: Any) -> EmbeddingResponse:
        """Embeddings for a string or a list of strings (or token arrays)."""
        opts = self.options(model, params)
        if (isinstance(input, str | list) and len(input) == 0) or input is None:
            raise ConfigError("aembedding needs a non-empty input (a string or a list).")
        dep = opts.dep
        if not dep.info.capabilities.embeddings:
            raise ConfigError(f"Provider {dep.provider} has no embeddings API in salvo.")
        req = dep.adapter.build_embedding(dep.endpoint, dep.headers, input, _merged(dep, params))
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def attempt() -> EmbeddingResponse:
            body = await self._read_body(opts, req)
            resp = dep.adapter.parse_embedding(dep.endpoint, body)
            resp.latency_s = loop.time() - started
            resp.cost_usd = response_cost(dep.provider, resp.usage, resp.model, dep.endpoint.model)
            return resp

        tokens = estimate_input_tokens(input) if opts.limiter.counts_tokens else 0
        return await self._with_retries(opts, attempt, tokens)

    async def complete_with(
        self, opts: CallOptions, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> ModelResponse:
        """A non-streaming completion on an already resolved deployment (used by fan-out)."""
        dep = opts.dep
        req = dep.adapter.build_chat(
            dep.endpoint, dep.headers, messages, _merged(dep, params), False
        )
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def attempt() -> ModelResponse:
            body = await self._read_body(opts, req)
            resp = dep.adapter.parse_chat(dep.endpoint, body)
            resp.latency_s = loop.time() - started
            resp.cost_usd = response_cost(dep.provider, resp.usage, resp.model, dep.endpoint.model)
            return resp

        tokens = _estimate(opts, messages, params)
        return await self._with_retries(opts, attempt, tokens)

    async def stream_with(
        self, opts: CallOptions, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> CompletionStream:
        """A stream on an already resolved deployment, returned once its first chunk arrived."""
        dep = opts.dep
        req = dep.adapter.build_chat(
            dep.endpoint, dep.headers, messages, _merged(dep, params), True
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The call's deadline also bounds reading the stream after it is returned.
        deadline = None if opts.timeout is None else started + opts.timeout
        fbt = opts.first_byte_timeout

        async def attempt() -> CompletionStream:
            first_by = None if fbt is None else loop.time() + fbt
            resp = await self._send(opts, req)
            stream = CompletionStream(
                resp,
                dep.adapter.stream_parser(dep.endpoint),
                endpoint=dep.endpoint,
                model=dep.name,
                started=started,
                ends_at_eof=dep.adapter.stream_ends_at_eof,
                idle_timeout=opts.stream_idle_timeout,
                deadline=deadline,
                timeout=opts.timeout,
            )
            if first_by is not None:  # the first bytes of the body, as for a plain answer
                try:
                    async with asyncio.timeout_at(first_by):
                        await stream._read()
                except builtins.TimeoutError as exc:
                    if isinstance(exc, SalvoError):
                        raise
                    raise first_byte_error(opts) from None
            await stream._prime()  # a failure until the first chunk is here is retried
            return stream

        tokens = _estimate(opts, messages, params)
        return await self._with_retries(opts, attempt, tokens, deadline)

    # -- the machinery ---------------------------------------------------------------------

    # These three return the coroutine to await rather than being coroutines themselves: a
    # frame less between the caller and aiohttp, which every resume of the request crosses.

    def _with_retries(
        self,
        opts: CallOptions,
        attempt: Callable[[], Coroutine[Any, Any, T]],
        tokens: int,
        deadline: float | None = None,
    ) -> Coroutine[Any, Any, T]:
        """Run ``attempt`` (one request) under the key's limiter, retried per the policy, all
        within the call's deadline (loop time; by default ``opts.timeout`` from now)."""
        loop = self._check_loop()
        if deadline is None and opts.timeout is not None:
            deadline = loop.time() + opts.timeout
        return call_with_retries(
            opts, attempt, tokens, deadline, policy=self.retry_policy, stats=self._stats
        )

    def _send(
        self, opts: CallOptions, req: HTTPRequest
    ) -> Coroutine[Any, Any, aiohttp.ClientResponse]:
        """Send and wait for the status line; an error status is read and raised here."""
        return send(self._session or self._open(), opts, req)

    def _read_body(self, opts: CallOptions, req: HTTPRequest) -> Coroutine[Any, Any, bytes]:
        """Send and read the whole body (``first_byte_timeout`` covers its first bytes)."""
        return read_body(self._session or self._open(), opts, req)

    # -- fan-out (the implementations live in _fanout) ---------------------------------------

    async def abatch_completion(
        self,
        model: str,
        list_of_messages: Sequence[Sequence[Mapping[str, Any]]],
        *,
        max_concurrency: int | None = None,
        on_result: Callable[[int, Result], None] | None = None,
        **params: Any,
    ) -> list[Result]:
        from ._fanout import abatch_completion

        return await abatch_completion(
            self,
            model,
            list_of_messages,
            max_concurrency=max_concurrency,
            on_result=on_result,
            **params,
        )

    @overload
    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[False] = False,
        **params: Any,
    ) -> ModelResponse: ...

    @overload
    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: Literal[True],
        **params: Any,
    ) -> CompletionStream: ...

    @overload
    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool,
        **params: Any,
    ) -> ModelResponse | CompletionStream: ...

    async def arace(
        self,
        models: str | Sequence[str],
        messages: Sequence[Mapping[str, Any]],
        *,
        stream: bool = False,
        **params: Any,
    ) -> ModelResponse | CompletionStream:
        from ._fanout import arace

        return await arace(self, models, messages, stream=stream, **params)

    async def agather_all(
        self, models: str | Sequence[str], messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> list[Result]:
        from ._fanout import agather_all

        return await agather_all(self, models, messages, **params)

    # -- observability -----------------------------------------------------------------------

    def statistics(self) -> ClientStatistics:
        """A snapshot of this client's counters, limiters and open connections."""
        return snapshot(self._session, self._stats, self._limiters)

    def __repr__(self) -> str:
        models = ", ".join(self.config.model_names) or "none"
        return f"<salvo.Client {self._state.name.lower()} aliases=[{models}]>"


def _estimate(opts: CallOptions, messages: Any, params: Mapping[str, Any]) -> int:
    """The tokens to charge a chat call, when its key has a tpm limit (else 0)."""
    if not opts.limiter.counts_tokens:
        return 0
    budget = None
    for source in (params, opts.dep.params):
        budget = source.get("max_tokens") or source.get("max_completion_tokens")
        if budget is not None:
            break
    return estimate_tokens(messages, budget)


def _pick(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _merged(dep: Deployment, params: Mapping[str, Any]) -> Mapping[str, Any]:
    if not dep.params:
        return params
    return {**dep.params, **params}


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
