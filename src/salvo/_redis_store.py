"""The connection to a Redis limits store: its scripts, its health, its background work.

One :class:`RedisStore` per Client (``limits_store="redis://..."``). It talks to Redis through
redis-py's asyncio client (the optional extra ``salvo-llm[redis]``, imported on first use) with
short socket timeouts and no client-side retries, so a dead or hung Redis costs a call at most
``timeout`` seconds once; after that the store is in ``"fallback"`` until a probe (once a
``probe_interval``) finds Redis answering again.

Off the request path, pipelined: lease returns, tpm corrections from usage, 429 pauses and
cancelled waiters' give-backs go through an outbox that one task flushes in a single pipeline
per burst. A second task renews this process's leases (every ``lease_ttl / 3``) and its
heartbeat in ``salvo:procs``, whose live count is the N of the fallback's 1/N share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _redis_lua as lua
from ._errors import ConfigError, SalvoError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from ._limit_spec import LimitSpec
    from ._limits import Limiter

__all__ = ["LimitsStoreError", "RedisStore", "StoreDown"]

log = logging.getLogger("salvo")


#: Connections to Redis per process (calls beyond it wait for one, up to ``timeout``).
_MAX_CONNECTIONS = 32

#: How long the outbox waits after its first entry before it flushes (seconds).
_COALESCE = 0.002


class LimitsStoreError(SalvoError):
    """The shared limits store is unreachable and ``limits_store_fallback="fail"``."""


class StoreDown(Exception):
    """Internal: an operation found Redis unreachable (the caller falls back)."""


class RedisStore:
    """Redis at ``url``, shared by every process that names it."""

    def __init__(
        self,
        url: str,
        *,
        fallback: str = "local",
        lease_ttl: float = 30.0,
        timeout: float = 1.0,
        probe_interval: float = 1.0,
        prefix: str = "salvo:",
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "limits_store must be a redis://, rediss:// or unix:// URL, not "
                f"{url.split(':')[0]!r}."
            )
        if fallback not in ("local", "fail"):
            raise ConfigError(f"limits_store_fallback must be 'local' or 'fail', not {fallback!r}.")
        if not 0 < lease_ttl <= 300 or not 0 < timeout <= 60:
            raise ConfigError("lease_ttl must be in (0, 300] s and timeout in (0, 60] s.")
        self.url = url
        self.fallback = fallback
        self.lease_ttl = lease_ttl
        self.timeout = timeout
        self.probe_interval = probe_interval
        self.prefix = prefix
        self.state = "redis"
        #: Live processes sharing the store, as last counted (the fallback's N).
        self.processes = 1
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._ops: list[tuple[str, Sequence[str], Sequence[Any]]] = []
        self._ops_ready: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._probe: asyncio.Task[None] | None = None
        #: lease set key -> lease ids this process holds there (renewed in the background).
        self.leased: dict[str, set[str]] = {}
        self._lease_no = 0
        self._closed = False
        self._down: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
        self._no_script: type[BaseException] = Exception

    def __repr__(self) -> str:
        return f"<RedisStore {self.state} processes={self.processes}>"

    # -- connection ------------------------------------------------------------------------------

    def connect(self) -> Redis:
        redis = self._redis
        if redis is None:
            try:
                from redis.asyncio import Redis
            except ImportError:
                raise ConfigError(
                    "limits_store needs the redis client: pip install 'salvo-llm[redis]'."
                ) from None
            from redis.asyncio import BlockingConnectionPool
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # A bounded pool that makes a burst wait for a connection (a plain pool raises
            # "Too many connections", which would look like Redis being down).
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=_MAX_CONNECTIONS,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
            )
            redis = self._redis = Redis(connection_pool=pool)
            from redis.exceptions import NoScriptError, RedisError

            self._no_script = NoScriptError

            #: What "Redis did not answer" looks like: redis-py's errors and the socket's.
            self._down = (OSError, asyncio.TimeoutError, RedisError)
            for name in lua.__all__:
                self._scripts[name] = redis.register_script(getattr(lua, name))
            self._ops_ready = asyncio.Event()
            self._tasks = [
                asyncio.get_running_loop().create_task(self._flush_loop()),
                asyncio.get_running_loop().create_task(self._renew_loop()),
            ]
        return redis

    def limiter(self, key: Any, spec: LimitSpec) -> Limiter:
        """The shared limiter of ``key`` (provider, base URL, API key) in this store."""
        from ._limits_redis import RedisKeyLimiter

        return RedisKeyLimiter(self, key, spec)

    def key(self, digest: str, part: str) -> str:
        return f"{self.prefix}{{{digest}}}:{part}"

    def lease_id(self) -> str:
        self._lease_no += 1
        return f"{self.id}:{self._lease_no}"

    async def run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script on the request path; :class:`StoreDown` (or :class:`LimitsStoreError`)
        when Redis does not answer in time."""
        redis = self.connect()
        if self.state != "redis":
            raise StoreDown
        try:
            async with asyncio.timeout(self.timeout * 2):
                try:
                    out = await redis.evalsha(self._scripts[script].sha, len(keys), *keys, *args)
                except self._no_script:  # Redis restarted or flushed its scripts: load, retry
                    out = await self._scripts[script](keys=keys, args=args, client=redis)
        except self._down as exc:
            _check_cancelled()
            self.down(exc)
            raise StoreDown from exc
        _check_cancelled()
        return out

    def down(self, exc: BaseException) -> None:
        """Redis failed: raise in "fail" mode, else go to the fallback (WARNING once)."""
        if self.fallback == "fail":
            raise LimitsStoreError(
                f"The limits store at {_safe_url(self.url)} did not answer ({type(exc).__name__}: "
                f"{exc}); limits_store_fallback='fail'."
            ) from exc
        if self.state == "redis":
            self.state = "fallback"
            log.warning(
                "salvo: the limits store at %s is unreachable (%s: %s); each process now "
                "keeps 1/%d of every limit until it answers again.",
                _safe_url(self.url),
                type(exc).__name__,
                exc,
                self.processes,
            )
            if self._probe is None and not self._closed:
                self._probe = asyncio.get_running_loop().create_task(self._probe_loop())

    async def _probe_loop(self) -> None:
        redis = self.connect()
        try:
            while not self._closed:
                await asyncio.sleep(self.probe_interval)
                try:
                    async with asyncio.timeout(self.timeout * 2):
                        await redis.ping()
                except self._down:
                    continue
                self.state = "redis"
                log.warning("salvo: the limits store at %s answers again.", _safe_url(self.url))
                self._ops_ready_set()
                return
        finally:
            self._probe = None

    # -- off the request path ---------------------------------------------------------------

    def later(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue a script for the next pipelined flush (dropped while Redis is down: leases
        expire on their own, corrections and pauses are lost)."""
        if self._closed or self.state != "redis":
            return
        self._ops.append((script, keys, args))
        self._ops_ready_set()

    def _ops_ready_set(self) -> None:
        if self._ops_ready is not None:
            self._ops_ready.set()

    async def _flush_loop(self) -> None:
        ready = self._ops_ready
        assert ready is not None
        while not self._closed:
            await ready.wait()
            await asyncio.sleep(_COALESCE)  # let a burst of releases share one pipeline
            ready.clear()
            await self.flush()
            _check_cancelled()

    async def flush(self) -> None:
        ops, self._ops = self._ops, []
        if not ops or self._redis is None:
            return
        try:
            async with (
                asyncio.timeout(self.timeout * 2),
                self._redis.pipeline(transaction=False) as pipe,
            ):
                for script, keys, args in ops:
                    await self._scripts[script](keys=keys, args=args, client=pipe)
                await pipe.execute()
        except self._down as exc:
            with contextlib.suppress(LimitsStoreError):
                self.down(exc)

    async def _renew_loop(self) -> None:
        period = min(self.lease_ttl / 3.0, 5.0)
        procs = self.prefix + "procs"
        live_ms = max(period * 3.0, 1.0) * 1000.0
        while not self._closed:
            if self.state == "redis" and self._redis is not None:
                try:
                    async with (
                        asyncio.timeout(self.timeout * 2),
                        self._redis.pipeline(transaction=False) as pipe,
                    ):
                        for lkey, ids in list(self.leased.items()):
                            if ids:
                                args: list[Any] = [self.lease_ttl * 1000.0, *ids]
                                await self._scripts["RENEW"](keys=[lkey], args=args, client=pipe)
                        await self._scripts["HEARTBEAT"](
                            keys=[procs], args=[self.id, live_ms, "0"], client=pipe
                        )
                        out = await pipe.execute()
                    self.processes = max(int(out[-1]), 1)
                except self._down as exc:
                    with contextlib.suppress(LimitsStoreError):
                        self.down(exc)
            _check_cancelled()
            await asyncio.sleep(period)

    async def aclose(self) -> None:
        """Return this process's leases, leave the process set, close the connection."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._tasks, *([self._probe] if self._probe else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout * 2)
        redis, self._redis = self._redis, None
        if redis is None:
            return
        if self.state == "redis":
            for lkey, ids in self.leased.items():
                for lease in ids:
                    self._ops.append(("GIVE_BACK", [lkey, lkey, lkey], ["", 0, 0, lease]))
            self._ops.append(("HEARTBEAT", [self.prefix + "procs"], [self.id, 1000, "1"]))
            self._redis = redis
            try:
                await self.flush()
            finally:
                self._redis = None
        self.leased.clear()
        await redis.aclose()
        await redis.connection_pool.disconnect()  # the Client does not own a pool it was given


def _check_cancelled() -> None:
    """Raise CancelledError when this task is being cancelled: redis-py can swallow one that
    lands while it opens a connection, and a cancelled call must not go on as if it were not."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _safe_url(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"
