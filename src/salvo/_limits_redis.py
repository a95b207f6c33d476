"""One key's limits shared through Redis (:class:`RedisKeyLimiter`), and choosing the store.

The same calling convention as the in-process :class:`~salvo._limits.KeyLimiter`, so the retry
loop and the fan-out never know which one they hold:

- ``acquire``: one script, one round trip in the common case: it checks the key's 429 pause
  against the call's deadline, takes a ``max_parallel_requests`` lease, and reserves the next
  rpm and tpm slots (GCRA); the caller then sleeps until its slot, if it has to. A call that
  finds every lease taken waits in line in its process (one poller per key and process, woken
  at once by the process's own releases, otherwise every ~20 ms). A wait longer than 50 ms
  ends with a look at the pause (a 429 seen meanwhile by another process), one more round trip.
- ``release``: the lease and the tpm correction from usage go back off the request path, in
  the store's next pipelined flush.
- A cancelled waiter gives its lease and tokens back, and its rpm slot when no one reserved
  after it.
- Redis unreachable: the call goes on under an in-process limiter holding 1/N of each limit
  (N: the live processes the store last counted), or fails with
  :class:`~salvo._redis_store.LimitsStoreError` when ``limits_store_fallback="fail"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._limit_spec import LimiterStatistics, LimitSpec
from ._limits import KeyLimiter, _now, key_paused
from ._redis_store import RedisStore, StoreDown

if TYPE_CHECKING:
    from ._config import Config

__all__ = ["RedisKeyLimiter", "open_store"]

_FULL, _PAUSED = 2, 1
#: A wait for a rate slot longer than this ends with a look at the key's pause.
_RECHECK = 0.05


class RedisKeyLimiter:
    """The limits of one key, kept in a :class:`RedisStore` shared by every process."""

    __slots__ = (
        "__weakref__",
        "_active",
        "_keys",
        "_leases",
        "_local",
        "_local_held",
        "_local_n",
        "_lock",
        "_paused_until",
        "_wake",
        "spec",
        "store",
        "waiting",
    )

    def __init__(self, store: RedisStore, key: Any, spec: LimitSpec) -> None:
        self.store = store
        self.spec = spec
        digest = hashlib.sha256("\n".join(map(str, key)).encode()).hexdigest()[:32]
        self._keys = [store.key(digest, part) for part in "rtpl"]
        self._active = 0
        self.waiting = 0
        self._leases: list[str] = []
        self._local = KeyLimiter()  # the fallback, sized when first used
        self._local_held = 0
        self._local_n = 0
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._paused_until = 0.0

    def configure(self, spec: LimitSpec) -> None:
        self.spec = spec.over(self.spec)
        self._local_n = 0  # resize the fallback on its next use

    @property
    def in_flight(self) -> int:
        return self._active

    @property
    def counts_tokens(self) -> bool:
        return self.spec.tpm is not None

    # -- acquire / release -------------------------------------------------------------------

    async def acquire(self, tokens: int = 0, *, deadline: float | None = None) -> None:
        """Wait until the key may send one more request of about ``tokens`` tokens."""
        self.waiting += 1
        try:
            if self.store.state == "redis":
                try:
                    await self._acquire_shared(tokens, deadline)
                except StoreDown:
                    pass
                else:
                    self._active += 1
                    return
            await self._acquire_local(tokens, deadline)
            self._local_held += 1
            self._active += 1
        finally:
            self.waiting -= 1

    async def _acquire_shared(self, tokens: int, deadline: float | None) -> None:
        store, spec, loop = self.store, self.spec, asyncio.get_running_loop()
        ri = 60000.0 / spec.rpm if spec.rpm else 0.0
        ti = 60000.0 / spec.tpm if spec.tpm else 0.0
        cap = spec.max_parallel_requests or 0
        lease = store.lease_id() if cap else ""
        held = False
        try:
            while True:
                left = -1.0 if deadline is None else max((deadline - loop.time()) * 1000.0, 0.0)
                args = [ri, ti, max(tokens, 1), 0 if held else cap, "" if held else lease]
                args += [store.lease_ttl * 1000.0, left]
                out = await store.run("ACQUIRE", self._keys, args)
                if out[0] == _FULL:
                    out = await self._wait_for_lease(args, deadline)
                if out[0] == _PAUSED:
                    raise key_paused(float(out[1]) / 1000.0)
                if lease and not held:
                    held = True
                    store.leased.setdefault(self._keys[3], set()).add(lease)
                wait = float(out[1]) / 1000.0
                if wait <= 0:
                    break
                try:
                    await asyncio.sleep(wait)
                except BaseException:
                    store.later("GIVE_BACK", self._give_keys(), [out[2], ri, out[3], ""])
                    raise
                if wait < _RECHECK or float(await store.run("PAUSED", self._keys[2:3], [])) <= 0:
                    break
        except BaseException as exc:
            if lease:  # held, or maybe taken by a script whose answer we never saw
                self._drop_lease(lease, give_back=not isinstance(exc, StoreDown))
            raise
        if held:
            self._leases.append(lease)

    async def _wait_for_lease(self, args: list[Any], deadline: float | None) -> Any:
        """Poll for a free lease, one poller per key in this process, the others in line."""
        if self._lock is None:
            self._lock, self._wake = asyncio.Lock(), asyncio.Event()
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        async with self._lock:
            while True:
                if deadline is not None:
                    args[6] = max((deadline - loop.time()) * 1000.0, 0.0)
                out = await self.store.run("ACQUIRE", self._keys, args)
                if out[0] != _FULL:
                    return out
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(random.uniform(0.01, 0.03)):
                        await wake.wait()

    async def _acquire_local(self, tokens: int, deadline: float | None) -> None:
        n = self.store.processes
        if self._local_n != n:
            self._local.configure(_share(self.spec, n))
            self._local_n = n
        await self._local.acquire(tokens, deadline=deadline)

    def _give_keys(self) -> list[str]:
        return [self._keys[0], self._keys[1], self._keys[3]]

    def _drop_lease(self, lease: str, *, give_back: bool) -> None:
        ids = self.store.leased.get(self._keys[3])
        if ids is not None:
            ids.discard(lease)
            if not ids:
                del self.store.leased[self._keys[3]]
        if give_back:
            self.store.later("GIVE_BACK", self._give_keys(), ["", 0, 0, lease])
        if self._wake is not None:
            self._wake.set()

    def release(self, tokens: int = 0, used: int | None = None) -> None:
        """End an attempt; with ``used`` known, correct the token charge of ``tokens``."""
        self._active -= 1
        if self._local_held:
            self._local_held -= 1
            self._local.release(tokens, used)
            return
        if self._leases:
            self._drop_lease(self._leases.pop(), give_back=True)
        tpm = self.spec.tpm
        if used is not None and tpm:
            diff = used - max(tokens, 1)
            if diff:
                self.store.later("ADJUST", self._keys[1:2], [diff * 60000.0 / tpm])

    def pause(self, seconds: float) -> None:
        """Hold every call of this key, in every process, for ``seconds``."""
        self._local.pause(seconds)
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + seconds)
        self.store.later("PAUSE", self._keys[2:3], [seconds * 1000.0])

    # -- observability -------------------------------------------------------------------------

    def at_rest(self) -> bool:
        if self._active or self.waiting or self._leases:
            return False
        return self._paused_until <= _now() and self._local.at_rest()

    def statistics(self) -> LimiterStatistics:
        local = self._local.statistics()
        left = 0.0
        if self._paused_until:
            with contextlib.suppress(RuntimeError):
                left = max(self._paused_until - asyncio.get_running_loop().time(), 0.0)
        return LimiterStatistics(
            rpm=self.spec.rpm,
            tpm=self.spec.tpm,
            max_parallel_requests=self.spec.max_parallel_requests,
            in_flight=self._active,
            waiting=self.waiting,
            paused_for=left,
            tokens_owed=local.tokens_owed,
        )

    def __repr__(self) -> str:
        return f"<RedisKeyLimiter {self.spec!r} in_flight={self._active} {self.store.state}>"


def _share(spec: LimitSpec, n: int) -> LimitSpec:
    """One of ``n`` processes' share of ``spec``: rates divided, the cap rounded up."""
    cap = spec.max_parallel_requests
    return LimitSpec(
        spec.rpm / n if spec.rpm else None,
        spec.tpm / n if spec.tpm else None,
        math.ceil(cap / n) if cap else None,
    )


def open_store(
    store: str | RedisStore | None,
    fallback: str | None,
    config: Config,
    env: Mapping[str, str] = os.environ,
) -> RedisStore | None:
    """The Client's store: its ``limits_store`` argument, else the config's
    ``salvo_settings.limits_store``, else ``SALVO_LIMITS_STORE``; None: in-process limits."""
    if isinstance(store, RedisStore):
        return store
    url = store or config.settings.get("limits_store") or env.get("SALVO_LIMITS_STORE")
    if not url:
        return None
    if not isinstance(url, str):
        raise ConfigError(f"limits_store must be a redis:// URL, not {type(url).__name__}.")
    mode = (
        fallback
        or config.settings.get("limits_store_fallback")
        or env.get("SALVO_LIMITS_STORE_FALLBACK")
        or "local"
    )
    return RedisStore(url, fallback=str(mode))
