"""When to retry and how long to wait: the server's word first, then capped backoff.

Retried: 408, 409, 429, 5xx (529 included) and transport failures. ``x-should-retry`` from
the server overrides the status rule. ``retry-after-ms`` / ``retry-after`` win over backoff
when present, capped at :data:`MAX_RETRY_AFTER`; a longer requested delay is not waited for.
Otherwise ``min(0.5 * 2**n, 8)`` seconds times a jitter of 75-100 %.
"""

from __future__ import annotations

import random

from ._errors import ProviderError, SalvoError, TransportError

__all__ = ["MAX_RETRY_AFTER", "RETRY_STATUSES", "RetryPolicy"]

RETRY_STATUSES = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 60.0
INITIAL_DELAY = 0.5
MAX_DELAY = 8.0


class RetryPolicy:
    """Decides whether an error is retried and after how long.

    ``wait=False`` keeps the decisions but sleeps zero seconds (for tests).
    """

    __slots__ = ("_rng", "initial_delay", "max_delay", "max_retry_after", "wait")

    def __init__(
        self,
        *,
        wait: bool = True,
        initial_delay: float = INITIAL_DELAY,
        max_delay: float = MAX_DELAY,
        max_retry_after: float = MAX_RETRY_AFTER,
        seed: int | None = None,
    ) -> None:
        self.wait = wait
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self._rng = random.Random(seed)

    def is_retryable(self, exc: SalvoError) -> bool:
        if isinstance(exc, TransportError):
            return True
        if isinstance(exc, ProviderError):
            if exc.should_retry is not None:
                return exc.should_retry
            if exc.status_code == 429 and _is_quota(exc):
                return False
            return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
        return False

    def delay(self, exc: SalvoError, retries_taken: int) -> float | None:
        """Seconds to wait before the next attempt, or None when not to retry at all."""
        if not self.is_retryable(exc):
            return None
        server = exc.retry_after if isinstance(exc, ProviderError) else None
        if server is not None and server > 0:
            if server > self.max_retry_after:
                return None
            return server if self.wait else 0.0
        if not self.wait:
            return 0.0
        base = min(self.initial_delay * 2.0**retries_taken, self.max_delay)
        return base * (1.0 - 0.25 * self._rng.random())


def _is_quota(exc: ProviderError) -> bool:
    body = exc.body
    if isinstance(body, dict):
        return "insufficient_quota" in (body.get("code"), body.get("type"))
    return False
