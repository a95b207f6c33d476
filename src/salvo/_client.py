"""One call: resolve the deployment, pace it, send it, retry it, parse it.

:class:`Client` owns one aiohttp session, the limiters and the config. It is an async context
manager (UNOPENED -> OPENED -> CLOSED); it also opens itself on first use, in which case
``aclose()`` is the caller's to await.
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import msgspec

from ._config import Config, load_config
from ._errors import ConfigError, SalvoError, TimeoutError
from ._http import is_transport_error, new_session, translate_transport_error
from ._limits import (
    KeyLimiter,
    Limiters,
    LimiterStatistics,
    LimitSpec,
    estimate_input_tokens,
    estimate_tokens,
)
from ._models import Deployment, resolve_deployment
from ._pricing import response_cost
from ._retry import CallStats, RetryPolicy, call_with_retries
from ._stream import CompletionStream
from ._types import EmbeddingResponse, ModelResponse
from .providers import HTTPRequest

if TYPE_CHECKING:
    import os

    import aiohttp

    from ._fanout import Result

__all__ = ["CallOptions", "Client", "ClientStatistics", "check_messages"]

log = logging.getLogger("salvo")

T = TypeVar("T")

#: Per-call keys that configure the call rather than the request body.
CALL_KEYS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "extra_headers",
        "timeout",
        "max_retries",
        "first_byte_timeout",
        "stream_idle_timeout",
        "rpm",
        "tpm",
        "max_parallel_requests",
    }
)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class ClientStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a Client's counters (``Client.statistics()``).

    ``requests``: attempts sent, retries included; ``in_flight``: attempts under way (an open
    stream counts until it is closed); ``waiting_on_limiters``: calls waiting for their key's
    limits; ``retries``: retries taken; ``errors``: failed attempts by error class (a call
    that ran out of time counts one ``TimeoutError`` more); ``connections_open``: sockets the
    session holds, busy or pooled; ``limiters``: each key's limiter, named
    ``"provider base_url key#<hash>"`` (a fingerprint, never the key).
    """

    requests: int
    in_flight: int
    waiting_on_limiters: int
    retries: int
    errors: dict[str, int]
    connections_open: int
    limiters: dict[str, LimiterStatistics]


class CallOptions:
    """Resolved per-call knobs: the deployment plus deadlines and retry budget."""

    __slots__ = (
        "dep",
        "first_byte_timeout",
        "limiter",
        "max_retries",
        "stream_idle_timeout",
        "timeout",
    )

    def __init__(
        self,
        dep: Deployment,
        timeout: float | None,
        max_retries: int,
        first_byte_timeout: float | None,
        stream_idle_timeout: float | None,
        limiter: KeyLimiter,
    ) -> None:
        self.dep = dep
        self.timeout = timeout
        self.max_retries = max_retries
        self.first_byte_timeout = first_byte_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self.limiter = limiter

    @property
    def provider(self) -> str:
        return self.dep.info.name

    @property
    def model(self) -> str:
        """The provider's name of the model (what errors and logs show)."""
        return self.dep.endpoint.model

    @property
    def secret(self) -> str | None:
        """The API key, so that errors can be scrubbed of it."""
        return self.dep.endpoint.api_key


def check_messages(messages: Any) -> None:
    """Raise ConfigError unless ``messages`` is a non-empty list of role/content mappings."""
    if not isinstance(messages, list | tuple) or not messages:
        raise ConfigError(
            "messages must be a non-empty list of mappings like "
            f"{{'role': 'user', 'content': 'Hi'}}, not {type(messages).__name__}: "
            f"{messages!r:.80}."
        )
    for i, m in enumerate(messages):
        if type(m) is dict and type(m.get("content")) is str and m.get("role") in _ROLES:
            continue  # the usual message, checked in one line
        if not isinstance(m, Mapping):
            raise ConfigError(
                f"messages[{i}] must be a mapping with 'role' and 'content', "
                f"not {type(m).__name__}: {m!r:.80}."
            )
        role = m.get("role")
        if role not in _ROLES:
            raise ConfigError(
                f"messages[{i}] has role {role!r}; use one of: {', '.join(sorted(_ROLES))}."
            )
        if "content" not in m:
            if role == "assistant" and (m.get("tool_calls") or m.get("function_call")):
                continue
            raise ConfigError(f"messages[{i}] (role {role!r}) has no 'content'.")
        content = m["content"]
        if not (content is None or isinstance(content, str | list)):
            raise ConfigError(
                f"messages[{i}]['content'] must be a string or a list of parts, "
                f"not {type(content).__name__}."
            )


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
    ) -> None:
        self.config = load_config(config)
        if isinstance(limits, Mapping):
            limits = LimitSpec.from_mapping(limits)
        self._limiters = Limiters(limits)
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
                    raise _first_byte_error(opts) from None
            await stream._prime()  # a failure until the first chunk is here is retried
            return stream

        tokens = _estimate(opts, messages, params)
        return await self._with_retries(opts, attempt, tokens, deadline)

    # -- the machinery ---------------------------------------------------------------------

    async def _with_retries(
        self,
        opts: CallOptions,
        attempt: Callable[[], Coroutine[Any, Any, T]],
        tokens: int,
        deadline: float | None = None,
    ) -> T:
        """Run ``attempt`` (one request) under the key's limiter, retried per the policy, all
        within the call's deadline (loop time; by default ``opts.timeout`` from now)."""
        loop = self._check_loop()
        if deadline is None and opts.timeout is not None:
            deadline = loop.time() + opts.timeout
        return await call_with_retries(
            opts, attempt, tokens, deadline, policy=self.retry_policy, stats=self._stats
        )

    async def _send(self, opts: CallOptions, req: HTTPRequest) -> aiohttp.ClientResponse:
        """Send and wait for the status line; an error status is read and raised here."""
        session = self._session or self._open()
        ep = opts.dep.endpoint
        first_byte = None
        try:
            if opts.first_byte_timeout is None:
                resp = await session.request(
                    req.method, req.url, headers=req.headers, data=req.body
                )
            else:
                first_byte = asyncio.timeout(opts.first_byte_timeout)
                async with first_byte:
                    resp = await session.request(
                        req.method, req.url, headers=req.headers, data=req.body
                    )
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            if first_byte is not None and first_byte.expired():
                raise _first_byte_error(opts) from None
            raise translate_transport_error(
                exc, provider=ep.provider, model=ep.model, url=req.url
            ) from None
        status = resp.status
        if status >= 400:
            body = await self._read(resp, ep, req.url)
            raise opts.dep.adapter.parse_error(ep, status, resp.headers, body)
        return resp

    async def _read(self, resp: aiohttp.ClientResponse, ep: Any, url: str) -> bytes:
        try:
            return await resp.read()
        except BaseException as exc:
            resp.close()
            if is_transport_error(exc):
                raise translate_transport_error(
                    exc, provider=ep.provider, model=ep.model, url=url
                ) from None
            raise

    async def _read_body(self, opts: CallOptions, req: HTTPRequest) -> bytes:
        """Send and read the whole body. ``first_byte_timeout`` covers the status line and
        the first bytes of the body (a server can send headers and then stall)."""
        fbt = opts.first_byte_timeout
        ep = opts.dep.endpoint
        if fbt is None:
            resp = await self._send(opts, req)
            return await self._read(resp, ep, req.url)
        first_by = asyncio.get_running_loop().time() + fbt
        resp = await self._send(opts, req)
        first_byte = asyncio.timeout_at(first_by)
        try:
            async with first_byte:
                head = await resp.content.readany()
        except BaseException as exc:
            resp.close()
            if isinstance(exc, builtins.TimeoutError) and first_byte.expired():
                raise _first_byte_error(opts) from None
            if is_transport_error(exc):
                raise translate_transport_error(
                    exc, provider=ep.provider, model=ep.model, url=req.url
                ) from None
            raise
        return head + await self._read(resp, ep, req.url)

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
        session = self._session
        conns = 0
        if session is not None and session.connector is not None:
            connector = session.connector
            acquired = getattr(connector, "_acquired", ())
            pooled = getattr(connector, "_conns", {})
            conns = len(acquired) + sum(len(v) for v in pooled.values())
        limiters = {_label(k): lim.statistics() for k, lim in self._limiters.all().items()}
        stats = self._stats
        return ClientStatistics(
            requests=stats.requests,
            in_flight=sum(v.in_flight for v in limiters.values()),
            waiting_on_limiters=sum(v.waiting for v in limiters.values()),
            retries=stats.retries,
            errors=dict(stats.errors),
            connections_open=conns,
            limiters=limiters,
        )

    def __repr__(self) -> str:
        models = ", ".join(self.config.model_names) or "none"
        return f"<salvo.Client {self._state.name.lower()} aliases=[{models}]>"


def _first_byte_error(opts: CallOptions) -> TimeoutError:
    err = TimeoutError(
        f"{opts.provider} sent nothing for model {opts.model!r} within "
        f"first_byte_timeout={opts.first_byte_timeout:g} s; salvo retries this. Raise "
        "first_byte_timeout=... if the model is slow to start answering."
    )
    err.provider, err.model = opts.provider, opts.model
    return err


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


def _label(key: Any) -> str:
    """A limiter's name in statistics: provider, base URL and a fingerprint of the key."""
    provider, base, secret = key
    if not secret:
        return f"{provider} {base}"
    return f"{provider} {base} key#{hashlib.sha256(secret.encode()).hexdigest()[:8]}"


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
