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

A call waits for capacity; it never fails for lack of it. A waiter that is cancelled gives its
place back: its place in the concurrency queue goes to the next waiter, and capacity it never
took from a bucket stays there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import ConfigError

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

__all__ = [
    "KeyLimiter",
    "LimitSpec",
    "LimiterStatistics",
    "Limiters",
    "estimate_input_tokens",
    "estimate_tokens",
]

_FIELDS = ("rpm", "tpm", "max_parallel_requests")


class LimitSpec:
    """The limits of a key; ``None`` (or 0) means "no limit of this kind"."""

    __slots__ = _FIELDS

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        max_parallel_requests: int | None = None,
    ) -> None:
        for name, value in zip(_FIELDS, (rpm, tpm, max_parallel_requests), strict=True):
            ok = value is None or (
                isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            )
            if not ok or (name == "max_parallel_requests" and not isinstance(value, int | None)):
                raise ConfigError(f"{name} must be a positive number or None, not {value!r}.")
        self.rpm = rpm or None
        self.tpm = tpm or None
        self.max_parallel_requests = max_parallel_requests or None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LimitSpec:
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise ConfigError(
                f"Unknown limit(s) {', '.join(sorted(unknown))}; use rpm, tpm and "
                "max_parallel_requests."
            )
        return cls(**values)

    def over(self, base: LimitSpec) -> LimitSpec:
        """This spec's limits where set, ``base``'s elsewhere."""
        return LimitSpec(
            self.rpm or base.rpm,
            self.tpm or base.tpm,
            self.max_parallel_requests or base.max_parallel_requests,
        )

    def _tuple(self) -> tuple[Any, ...]:
        return (self.rpm, self.tpm, self.max_parallel_requests)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LimitSpec) and self._tuple() == other._tuple()

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __bool__(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_parallel_requests)

    def __repr__(self) -> str:
        return (
            f"LimitSpec(rpm={self.rpm}, tpm={self.tpm}, "
            f"max_parallel_requests={self.max_parallel_requests})"
        )


class LimiterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one key's limiter (part of ``Client.statistics()``)."""

    rpm: float | None
    tpm: float | None
    max_parallel_requests: int | None
    in_flight: int
    waiting: int
    paused_for: float
    tokens_owed: float


class KeyLimiter:
    """The limits of one key: ``await acquire(tokens)`` before each attempt, then exactly one
    ``release(tokens, used)`` (``used``: the response's total tokens, when known)."""

    __slots__ = (
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

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until the key may send one more request of about ``tokens`` tokens."""
        if (
            self._rpm is None
            and self._tpm is None
            and self._free()
            and not self._paused_until  # 0.0 unless a 429 paused the key
        ):
            self._active += 1
            return
        self.waiting += 1
        try:
            await self._enter()
            try:
                await self._pace(tokens)
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

    async def _pace(self, tokens: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # A pause can start or grow while we sleep or wait for the rpm bucket: look again.
            while (wait := self._paused_until - loop.time()) > 0:  # noqa: ASYNC110
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


class Limiters:
    """Key -> KeyLimiter. A key's limiter is created on its first call, from that call's
    limits over the Client's defaults; a later call that sets limits reconfigures it."""

    __slots__ = ("_by_key", "default")

    def __init__(self, default: LimitSpec | None = None) -> None:
        self.default = default or LimitSpec()
        self._by_key: dict[Any, KeyLimiter] = {}

    def get(self, key: Any, spec: LimitSpec | None = None) -> KeyLimiter:
        limiter = self._by_key.get(key)
        if limiter is None:
            base = spec.over(self.default) if spec else self.default
            limiter = self._by_key[key] = KeyLimiter(base)
        elif spec and spec.over(limiter.spec) != limiter.spec:
            limiter.configure(spec)
        return limiter

    def all(self) -> Mapping[Any, KeyLimiter]:
        return self._by_key


def _now() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # statistics() read outside the loop
        return time.monotonic()


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    chars = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                t = part.get("text")
                if isinstance(t, str):
                    chars += len(t)
    return chars


def estimate_tokens(messages: Any, max_tokens: Any) -> int:
    """A cheap estimate of a chat request's tokens: ~4 characters a token, 4 a message, plus
    the completion budget when the caller set one (corrected from ``usage`` afterwards)."""
    chars = 0
    for m in messages:
        chars += _text_chars(m.get("content"))
    out = chars // 4 + 4 * len(messages)
    if isinstance(max_tokens, int):
        out += max_tokens
    return out


def estimate_input_tokens(value: Any) -> int:
    """The same estimate for an embeddings input: a string, strings, or token arrays."""
    if isinstance(value, str):
        return len(value) // 4 + 1
    if isinstance(value, list):
        if value and isinstance(value[0], int):
            return len(value)
        return sum(estimate_input_tokens(v) for v in value)
    return 1
