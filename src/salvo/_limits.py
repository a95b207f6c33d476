"""Per-key pacing: requests per minute, tokens per minute, a concurrency cap, and 429 pauses.

Calls that share a key (provider, api_base, api key) share one :class:`KeyLimiter`. A Client
creates its limiters itself, so they live on the Client's one event loop.

- ``rpm``: an ``aiolimiter.AsyncLimiter`` with a bucket of one request, refilled every
  ``60/rpm`` seconds. Pacing is smooth: ``rpm=600`` admits a request every 100 ms, never a
  burst of 600 and then a wait.
- ``tpm``: an ``AsyncLimiter`` holding one second's worth of tokens (``tpm/60``). Each attempt
  is charged its estimate before it is sent. aiolimiter cannot give capacity back, so the
  correction from the response's ``usage`` is kept beside the bucket: a request that used
  more than estimated leaves a *debt* that the next acquire pays into the bucket (blocking)
  before its own charge, so the bucket sees every token really used; one that used less
  leaves a *credit* that the next acquire deducts from its charge. A credit never exceeds
  one bucket and drains at the bucket's own rate (it stands for phantom tokens in the
  bucket, which leak away too), so it can never let calls exceed the rate. An estimate
  larger than the bucket is charged one bucketful now and the rest as debt: a lone large
  request on an idle key is not delayed, and the next one pays for it.
- ``max_parallel_requests``: at most this many attempts of the key in flight at once; an open
  stream holds its place until it is closed.
- A 429 that says how long to wait pauses every call of the key, not only the one that got it.

A call waits for capacity; it never fails for lack of it, with one exception: a call whose
deadline falls before a 429 pause of its key ends fails at once with a
:class:`~salvo.RateLimitError` (``retry_after``: the pause left) instead of sitting the pause out
and timing out. A waiter that is cancelled gives its place back: its place in the concurrency
queue goes to the next waiter, and capacity it never took from a bucket stays there.

:class:`Limiter` is what the retry loop and the fan-out see; :class:`KeyLimiter` is the
in-process one, ``salvo._limits_redis.RedisKeyLimiter`` the one shared through Redis.
:class:`Limiters` keeps one per key and forgets the ones at rest, so a service that passes a
different API key on every call does not grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import RateLimitError
from ._estimate import estimate_input_tokens, estimate_tokens
from ._limit_spec import LimiterStatistics, LimitSpec

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

    from ._redis_store import RedisStore as LimitsStore

__all__ = [
    "KeyLimiter",
    "Limiter",
    "LimitSpec",
    "LimiterStatistics",
    "Limiters",
    "estimate_input_tokens",
    "estimate_tokens",
]


class Limiter(Protocol):
    """One key's limits, in-process or shared: ``await acquire(tokens, deadline=...)`` before
    each attempt, then exactly one ``release(tokens, used)``."""

    spec: LimitSpec

    @property
    def in_flight(self) -> int: ...
    @property
    def counts_tokens(self) -> bool: ...
    def configure(self, spec: LimitSpec) -> None: ...
    async def acquire(self, tokens: int = 0, *, deadline: float | None = None) -> None: ...
    def release(self, tokens: int = 0, used: int | None = None) -> None: ...
    def pause(self, seconds: float) -> None: ...
    def at_rest(self) -> bool: ...
    def statistics(self) -> LimiterStatistics: ...


def key_paused(remaining: float) -> RateLimitError:
    """The error of a call that would wait for its key's 429 pause past its deadline (the retry
    loop fills in ``provider`` and ``model``)."""
    return RateLimitError(
        f"The key is paused for another {remaining:.3g} s after a 429, longer than this call "
        "has left before its deadline: failing now rather than waiting to time out.",
        status_code=429,
        provider="",
        model="",
        retry_after=remaining,
    )


class KeyLimiter:
    """The limits of one key: ``await acquire(tokens)`` before each attempt, then exactly one
    ``release(tokens, used)`` (``used``: the response's total tokens, when known)."""

    __slots__ = (
        "__weakref__",
        "_active",
        "_cap",
        "_credit",
        "_credit_at",
        "_debt",
        "_gate",
        "_paused_until",
        "_rpm",
        "_tpm",
        "_tpm_cap",
        "spec",
        "waiting",
    )

    def __init__(self, spec: LimitSpec | None = None) -> None:
        self.spec = LimitSpec()
        self._rpm: AsyncLimiter | None = None
        self._tpm: AsyncLimiter | None = None
        self._tpm_cap = 0.0
        self._cap: int | None = None
        self._gate: deque[asyncio.Future[None]] = deque()
        self._active = 0
        self.waiting = 0
        self._paused_until = 0.0
        self._debt = 0.0
        self._credit = 0.0
        self._credit_at = 0.0
        if spec:
            self.configure(spec)

    def configure(self, spec: LimitSpec) -> None:
        """Apply the limits ``spec`` sets; the others keep their current value. Waiters already
        queued on a replaced bucket finish there."""
        new = spec.over(self.spec)
        if new.rpm != self.spec.rpm or new.tpm != self.spec.tpm:
            from aiolimiter import AsyncLimiter  # imported when a rate is first configured

            if new.rpm != self.spec.rpm:
                self._rpm = AsyncLimiter(1, 60.0 / new.rpm) if new.rpm else None
            if new.tpm != self.spec.tpm:
                self._tpm_cap = new.tpm / 60.0 if new.tpm else 0.0
                self._tpm = AsyncLimiter(self._tpm_cap, 1.0) if new.tpm else None
                self._debt = self._credit = 0.0
        self._cap = new.max_parallel_requests
        self.spec = new
        self._open_gate()

    @property
    def in_flight(self) -> int:
        return self._active

    @property
    def counts_tokens(self) -> bool:
        return self._tpm is not None

    # -- acquire / release -------------------------------------------------------------------

    async def acquire(self, tokens: int = 0, *, deadline: float | None = None) -> None:
        """Wait until the key may send one more request of about ``tokens`` tokens; with
        ``deadline`` (loop time), fail at once if a 429 pause of the key outlasts it."""
        if (
            self._rpm is None
            and self._tpm is None
            and self._free()
            and not self._paused_until  # 0.0 unless a 429 paused the key
        ):
            self._active += 1
            return
        if deadline is not None and self._paused_until > deadline:
            raise key_paused(self._paused_until - asyncio.get_running_loop().time())
        self.waiting += 1
        try:
            await self._enter()
            try:
                await self._pace(tokens, deadline)
            except BaseException:
                self._leave()
                raise
        finally:
            self.waiting -= 1

    def release(self, tokens: int = 0, used: int | None = None) -> None:
        """End an attempt; with ``used`` known, correct the token charge of ``tokens``."""
        self._leave()
        if used is not None and self._tpm is not None:
            self._settle(float(max(tokens, 1)), float(used))

    def pause(self, seconds: float) -> None:
        """Hold every call of this key for ``seconds`` (after a 429 that said how long)."""
        until = asyncio.get_running_loop().time() + seconds
        if until > self._paused_until:
            self._paused_until = until

    # -- the concurrency gate (FIFO; a cancelled waiter leaves its place to the next) ----------

    def _free(self) -> bool:
        return not self._gate and (self._cap is None or self._active < self._cap)

    async def _enter(self) -> None:
        if self._free():
            self._active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gate.append(fut)
        try:
            await fut  # _open_gate counts us in before it wakes us
        except BaseException:
            if fut.cancelled():
                with contextlib.suppress(ValueError):
                    self._gate.remove(fut)
            else:  # let in, then cancelled before we could run: pass the place on
                self._leave()
            raise

    def _leave(self) -> None:
        self._active -= 1
        if self._gate:
            self._open_gate()

    def _open_gate(self) -> None:
        gate = self._gate
        while gate and (self._cap is None or self._active < self._cap):
            fut = gate.popleft()
            if not fut.done():
                self._active += 1
                fut.set_result(None)

    # -- rates ----------------------------------------------------------------------------

    async def _pace(self, tokens: int, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A pause can start or grow while we sleep or wait for the rpm bucket: look again.
            while (wait := self._paused_until - loop.time()) > 0:
                if deadline is not None and self._paused_until > deadline:
                    raise key_paused(wait)
                await asyncio.sleep(wait)
            if self._paused_until:
                self._paused_until = 0.0
            rpm = self._rpm
            if rpm is None:
                break
            await rpm.acquire()
            if self._paused_until <= loop.time():
                break
        if self._tpm is not None:
            await self._charge(float(max(tokens, 1)), loop)

    async def _charge(self, need: float, loop: asyncio.AbstractEventLoop) -> None:
        bucket, cap = self._tpm, self._tpm_cap
        assert bucket is not None
        while self._debt > 1e-6:  # others' tokens first, a bucketful at a time
            piece = min(self._debt, cap)
            self._debt -= piece
            try:
                await bucket.acquire(piece)
            except BaseException:
                self._debt += piece
                raise
        credit = min(self._credit_now(loop), need)
        self._credit -= credit
        need -= credit
        if need <= 0:
            return
        first = min(need, cap)
        try:
            await bucket.acquire(first)
        except BaseException:
            self._credit += credit
            raise
        self._debt += need - first

    def _credit_now(self, loop: asyncio.AbstractEventLoop) -> float:
        now = loop.time()
        credit = max(self._credit - (now - self._credit_at) * self._tpm_cap, 0.0)
        self._credit, self._credit_at = credit, now
        return credit

    def _settle(self, estimate: float, used: float) -> None:
        diff = used - estimate
        if diff > 0:
            self._debt += diff
            return
        give = -diff
        paid = min(self._debt, give)
        self._debt -= paid
        give -= paid
        if give > 0:
            credit = self._credit_now(asyncio.get_running_loop())
            self._credit = min(credit + give, self._tpm_cap)

    # -- observability -------------------------------------------------------------------------

    def at_rest(self) -> bool:
        """Nothing in flight or waiting, no pause, no debt, every bucket drained: a new limiter
        with the same spec would behave exactly as this one."""
        if self._active or self.waiting or self._gate or self._debt > 1e-6:
            return False
        if self._paused_until > _now():
            return False
        if self._rpm is not None and not self._rpm.has_capacity(1):
            return False
        return self._tpm is None or self._tpm.has_capacity(self._tpm_cap)

    def statistics(self) -> LimiterStatistics:
        now = _now() if self._paused_until else 0.0
        return LimiterStatistics(
            rpm=self.spec.rpm,
            tpm=self.spec.tpm,
            max_parallel_requests=self.spec.max_parallel_requests,
            in_flight=self._active,
            waiting=self.waiting,
            paused_for=max(self._paused_until - now, 0.0) if self._paused_until else 0.0,
            tokens_owed=round(self._debt, 3),
        )

    def __repr__(self) -> str:
        return f"<KeyLimiter {self.spec!r} in_flight={self._active} waiting={self.waiting}>"


#: ``Limiters`` sweeps its limiters at rest into a weak map when it holds this many (then
#: twice as many as survived the last sweep).
_SWEEP_MIN = 1024


class Limiters:
    """Key -> limiter. A key's limiter is created on its first call, from that call's limits
    over the Client's defaults; a later call that sets limits reconfigures it.

    Limiters at rest (:meth:`Limiter.at_rest`) are moved to a weak map when the table grows:
    one still referenced (by a resolved call's options) stays the key's limiter, one nobody
    holds is dropped, and a new one made for its key behaves the same. So 100,000 one-off API
    keys cost what their live limiters cost, not 100,000 limiters.
    """

    __slots__ = ("_by_key", "_resting", "_sweep_at", "default", "store")

    def __init__(self, default: LimitSpec | None = None, store: LimitsStore | None = None) -> None:
        self.default = default or LimitSpec()
        self.store = store
        self._by_key: dict[Any, Limiter] = {}
        self._resting: weakref.WeakValueDictionary[Any, Limiter] = weakref.WeakValueDictionary()
        self._sweep_at = _SWEEP_MIN

    def get(self, key: Any, spec: LimitSpec | None = None) -> Limiter:
        limiter = self._by_key.get(key)
        if limiter is None:
            limiter = self._resting.pop(key, None)
            if limiter is None:
                base = spec.over(self.default) if spec else self.default
                store = self.store
                limiter = KeyLimiter(base) if store is None else store.limiter(key, base)
            self._by_key[key] = limiter
            if len(self._by_key) >= self._sweep_at:
                self._sweep()
        if spec and spec.over(limiter.spec) != limiter.spec:
            limiter.configure(spec)
        return limiter

    def _sweep(self) -> None:
        by_key = self._by_key
        for key in [k for k, lim in by_key.items() if lim.at_rest()]:
            self._resting[key] = by_key.pop(key)
        self._sweep_at = max(2 * len(by_key), _SWEEP_MIN)

    def all(self) -> Mapping[Any, Limiter]:
        if not self._resting:
            return self._by_key
        return {**dict(self._resting.items()), **self._by_key}

    async def aclose(self) -> None:
        """Give back what this process holds in the shared store, and close it."""
        if self.store is not None:
            await self.store.aclose()

    @property
    def store_state(self) -> str:
        """``"local"`` without a store, else the store's ``"redis"`` or ``"fallback"``."""
        return "local" if self.store is None else self.store.state


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # statistics() read outside the loop
        return time.monotonic()
