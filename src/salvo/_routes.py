"""Model string -> :class:`~salvo._call.Route`, resolved once and cached (bounded).

A route is cached per (model, round-robin index, per-call overrides): the overrides include
``api_key``, so a multi-tenant service that passes each user's key makes one entry per key.
The cache is therefore bounded (:data:`MAX_ROUTES`, oldest entry out first): a miss costs one
resolution (a few microseconds), never unbounded memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

from . import _compat
from ._call import Route
from ._config import Config
from ._limits import Limiters, LimitSpec, estimate_tokens
from ._messages import CALL_KEYS
from ._models import Deployment, resolve_deployment

__all__ = ["MAX_ROUTES", "RouteTable", "estimate_chat_tokens", "merged_params"]

#: Routes kept per Client; older ones are resolved again when next used.
MAX_ROUTES = 2048


class Defaults(Protocol):
    """The client-wide values a route falls back on (read when a route is resolved)."""

    @property
    def timeout(self) -> float | None: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def first_byte_timeout(self) -> float | None: ...
    @property
    def stream_idle_timeout(self) -> float | None: ...


class RouteTable:
    """A Client's resolved routes and its round-robin counters."""

    __slots__ = ("_cache", "_rr", "config", "defaults", "limiters", "max_size")

    def __init__(
        self,
        config: Config,
        limiters: Limiters,
        defaults: Defaults,
        max_size: int = MAX_ROUTES,
    ) -> None:
        self.config = config
        self.limiters = limiters
        self.defaults = defaults
        self.max_size = max_size
        self._cache: dict[Any, Route] = {}
        self._rr: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._cache)

    def route(self, model: str, params: dict[str, Any]) -> Route:
        """Resolve ``model`` and pop the call-configuring keys out of ``params`` (in place);
        LiteLLM's client-side arguments are mapped onto salvo's or consumed first."""
        if _compat.ACTIVE or (params and not _compat.LITELLM_KEYS.isdisjoint(params)):
            _compat.litellm_args(self.config, model, params)
        if params and not CALL_KEYS.isdisjoint(params):
            over = {k: params.pop(k) for k in CALL_KEYS.intersection(params)}
        else:
            over = None
        entries = self.config.entries(model) if self.config.models else None
        idx = 0
        if entries is not None and len(entries) > 1:
            idx = self._rr[model] % len(entries)
            self._rr[model] += 1
        cache = self._cache
        if over is None:
            key: Any = (model, idx)
            route = cache.get(key)
        else:
            key = (model, idx, tuple(sorted(over.items())))  # builtins only: no Python frames
            try:
                route = cache.get(key)
            except TypeError:  # a value that cannot be hashed (a list, a mapping)
                key = (model, idx, _freeze(over))
                route = cache.get(key)
        if route is None:
            route = self._resolve(model, idx, over or {})
            if len(cache) >= self.max_size:
                del cache[next(iter(cache))]  # the oldest entry
            cache[key] = route
        return route

    def _resolve(self, model: str, idx: int, over: Mapping[str, Any]) -> Route:
        dep = resolve_deployment(model, config=self.config, overrides=over, entry_index=idx)
        spec = LimitSpec(dep.rpm, dep.tpm, dep.max_parallel_requests)
        limiter = self.limiters.get(dep.limit_key, spec)
        d = self.defaults
        return Route(
            dep,
            timeout=_pick(over.get("timeout"), dep.timeout, d.timeout),
            max_retries=_pick(over.get("max_retries"), dep.max_retries, d.max_retries),
            first_byte_timeout=_pick(over.get("first_byte_timeout"), d.first_byte_timeout),
            stream_idle_timeout=_pick(over.get("stream_idle_timeout"), d.stream_idle_timeout),
            limiter=limiter,
        )


def estimate_chat_tokens(route: Route, messages: Any, params: Mapping[str, Any]) -> int:
    """The tokens to charge a chat call, when its key has a tpm limit (else 0)."""
    if not route.limiter.counts_tokens:
        return 0
    budget = None
    for source in (params, route.dep.params):
        budget = source.get("max_tokens") or source.get("max_completion_tokens")
        if budget is not None:
            break
    return estimate_tokens(messages, budget)


def merged_params(dep: Deployment, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """The deployment's default parameters under the call's."""
    if not dep.params:
        return params
    return {**dep.params, **params}


def _pick(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
