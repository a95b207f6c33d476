"""A USD budget shared by every process on one Redis store (issue 13's budgets, across processes).

:class:`RedisBudget` has the interface the budget code calls: ``await reserve(usd)`` before a
request (True: reserved; False: it would pass the budget, so the request is not sent) and
``settle(reserved, actual)`` after the answer (the reservation is released and the real cost
added, off the request's path in the store's next pipelined flush). ``reserve`` is one Lua
script: atomic across processes, so settled spend never exceeds the budget when every
reservation is a worst case.

Kept in one hash, ``salvo:{budget:<hash of name>}:b`` (``spent``, ``reserved``), which expires
``ttl`` seconds (default 30 days) after its last use. Limits, honestly: while Redis is
unreachable ``reserve`` raises :class:`~salvo._redis_store.LimitsStoreError` (a budget does not
fall back to per-process shares: overspending is the one thing a budget must not do); a process
killed between reserve and settle leaves its reservation counted (the budget errs on the side
of spending less), until the hash expires or ``reset()``.
"""

from __future__ import annotations

import hashlib

from ._errors import ConfigError
from ._redis_store import LimitsStoreError, RedisStore, StoreDown

__all__ = ["RedisBudget"]


class RedisBudget:
    """``limit_usd`` dollars, shared through ``store`` by every process naming ``name``."""

    __slots__ = ("_key", "_ttl_ms", "limit_usd", "name", "store")

    def __init__(
        self, store: RedisStore, limit_usd: float, *, name: str = "default", ttl: float = 30 * 86400
    ) -> None:
        if not limit_usd >= 0:
            raise ConfigError(f"budget_usd must be a number >= 0, not {limit_usd!r}.")
        self.store = store
        self.limit_usd = float(limit_usd)
        self.name = name
        digest = hashlib.sha256(name.encode()).hexdigest()[:24]
        self._key = store.key(f"budget:{digest}", "b")
        self._ttl_ms = int(ttl * 1000)

    async def reserve(self, usd: float) -> bool:
        """Reserve ``usd`` if the budget allows it (atomically, across processes)."""
        args = [self.limit_usd, max(usd, 0.0), self._ttl_ms]
        try:
            return bool(await self.store.run("BUDGET_RESERVE", [self._key], args))
        except StoreDown:
            raise LimitsStoreError(
                f"The budget {self.name!r} is kept in the limits store, which is unreachable: "
                "no request is sent while it cannot be reserved."
            ) from None

    def settle(self, reserved: float, actual: float) -> None:
        """Release ``reserved`` and add ``actual`` (queued; sent in the next flush)."""
        self.store.later("BUDGET_SETTLE", [self._key], [reserved, max(actual, 0.0), self._ttl_ms])

    async def spent(self) -> tuple[float, float]:
        """(settled USD, reserved USD), read from the store."""
        redis = self.store.connect()
        await self.store.flush()
        got = await redis.hmget(self._key, ["spent", "reserved"])
        return float(got[0] or 0.0), float(got[1] or 0.0)

    async def reset(self) -> None:
        """Forget what was spent and reserved (a new budget period)."""
        await self.store.connect().delete(self._key)
