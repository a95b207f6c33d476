"""Per-deployment pacing: requests per minute, tokens per minute, and a concurrency cap.

Calls that share a key (provider, api_base, api key) share one :class:`KeyLimiter`. Pacing is
smooth: ``rpm=600`` admits one request every 100 ms (an ``aiolimiter.AsyncLimiter`` with a
bucket of one), never a burst of 600. A call waits for capacity; it is never failed for lack
of it. A cancelled waiter gives its place back. When the provider answers 429 with a delay,
the whole key pauses for that long. Limiters belong to one Client, hence one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

__all__ = ["KeyLimiter", "LimitSpec", "Limiters", "estimate_tokens"]


class LimitSpec:
    __slots__ = ("max_parallel_requests", "rpm", "tpm")

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        max_parallel_requests: int | None = None,
    ) -> None:
        self.rpm = rpm or None
        self.tpm = tpm or None
        self.max_parallel_requests = max_parallel_requests or None

    def __bool__(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_parallel_requests)

    def __repr__(self) -> str:
        return (
            f"LimitSpec(rpm={self.rpm}, tpm={self.tpm}, "
            f"max_parallel_requests={self.max_parallel_requests})"
        )


class KeyLimiter:
    """The limits of one key. ``async with limiter.slot(tokens):`` around each attempt."""

    __slots__ = (
        "_paused_until",
        "_rpm",
        "_sem",
        "_tpm",
        "_tpm_cap",
        "in_flight",
        "spec",
        "waiting",
    )

    def __init__(self, spec: LimitSpec) -> None:
        from aiolimiter import AsyncLimiter  # imported when a limit is first configured

        self.spec = spec
        self._rpm = AsyncLimiter(1, 60.0 / spec.rpm) if spec.rpm else None
        # A one-second bucket of tpm/60 tokens: smooth, and one request never needs more
        # than the bucket holds (its estimate is clamped to it).
        self._tpm_cap = spec.tpm / 60.0 if spec.tpm else 0.0
        self._tpm = AsyncLimiter(self._tpm_cap, 1.0) if spec.tpm else None
        n = spec.max_parallel_requests
        self._sem = asyncio.Semaphore(n) if n else None
        self._paused_until = 0.0
        self.in_flight = 0
        self.waiting = 0

    def pause(self, seconds: float) -> None:
        """Hold every call on this key for ``seconds`` (after a 429 that said how long)."""
        until = asyncio.get_running_loop().time() + seconds
        if until > self._paused_until:
            self._paused_until = until

    async def acquire(self, tokens: int) -> None:
        self.waiting += 1
        try:
            loop = asyncio.get_running_loop()
            # A pause can be extended while we sleep, so look again after each nap.
            while (wait := self._paused_until - loop.time()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
            if self._sem is not None:
                await self._sem.acquire()
            try:
                if self._rpm is not None:
                    await self._rpm.acquire()
                if self._tpm is not None:
                    await self._tpm.acquire(min(float(max(tokens, 1)), self._tpm_cap))
            except BaseException:
                if self._sem is not None:
                    self._sem.release()
                raise
        finally:
            self.waiting -= 1
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self._sem is not None:
            self._sem.release()


class Limiters:
    """Key -> KeyLimiter, created on first use from the deployment's or the call's spec."""

    __slots__ = ("_by_key", "default")

    def __init__(self, default: LimitSpec | None = None) -> None:
        self.default = default or LimitSpec()
        self._by_key: dict[Any, KeyLimiter] = {}

    def get(self, key: Any, spec: LimitSpec | None) -> KeyLimiter | None:
        limiter = self._by_key.get(key)
        if limiter is not None:
            return limiter
        spec = spec if spec else self.default
        if not spec:
            return None
        limiter = self._by_key[key] = KeyLimiter(spec)
        return limiter

    def all(self) -> Mapping[Any, KeyLimiter]:
        return self._by_key


def estimate_tokens(messages: Any, max_tokens: Any) -> int:
    """A cheap upper-ish estimate of a request's tokens: ~4 characters a token plus the
    completion budget when the caller set one."""
    chars = 0
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            chars += len(c)
        elif isinstance(c, list):
            for part in c:
                if isinstance(part, Mapping):
                    t = part.get("text")
                    if isinstance(t, str):
                        chars += len(t)
    out = chars // 4 + 4 * len(messages)
    if isinstance(max_tokens, int):
        out += max_tokens
    return out
