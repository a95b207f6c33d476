"""Rolling latency windows per deployment, for ``hedge="p95"``.

Every successful call feeds the window of its deployment (provider, base URL, model): the time
to the full answer for plain calls, the time to the first chunk for streams (a window of its
own). A race loser that was cancelled is not a sample: its elapsed time is only a lower bound of
its latency. Each window keeps the last :data:`WINDOW` samples in a ring; the client keeps at
most :data:`MAX_DEPLOYMENTS` windows (past that, the oldest window is dropped), so a client
that sees a new base URL on every call cannot grow without bound.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MAX_DEPLOYMENTS",
    "MIN_SAMPLES",
    "WINDOW",
    "LatencyWindow",
    "LatencyWindows",
    "window_key",
]

#: Samples kept per deployment and kind (full answer / first chunk).
WINDOW = 200
#: Below this many samples a window gives no percentile, and hedges use the default delay.
MIN_SAMPLES = 20
#: Windows kept per client.
MAX_DEPLOYMENTS = 1024


class LatencyWindow:
    """The last ``size`` latencies of one deployment, in a ring."""

    __slots__ = ("_next", "_ring", "count")

    def __init__(self, size: int = WINDOW) -> None:
        self._ring: list[float] = [0.0] * size
        self._next = 0
        self.count = 0  # samples held (at most size)

    def add(self, seconds: float) -> None:
        ring = self._ring
        ring[self._next] = seconds
        self._next = (self._next + 1) % len(ring)
        if self.count < len(ring):
            self.count += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100, nearest rank) of the samples held, or None with
        fewer than :data:`MIN_SAMPLES`."""
        n = self.count
        if n < MIN_SAMPLES:
            return None
        held = sorted(self._ring[:n] if n < len(self._ring) else self._ring)
        rank = max(1, math.ceil(q / 100.0 * n))
        return held[min(rank, n) - 1]


class LatencyWindows:
    """A client's windows, keyed by deployment and kind."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[Any, LatencyWindow] = {}

    def record(self, key: Any, seconds: float) -> None:
        window = self._by_key.get(key)
        if window is None:
            if len(self._by_key) >= MAX_DEPLOYMENTS:
                del self._by_key[next(iter(self._by_key))]
            window = self._by_key[key] = LatencyWindow()
        window.add(seconds)

    def percentile(self, key: Any, q: float) -> float | None:
        window = self._by_key.get(key)
        return None if window is None else window.percentile(q)

    def samples(self, key: Any) -> int:
        window = self._by_key.get(key)
        return 0 if window is None else window.count

    def __len__(self) -> int:
        return len(self._by_key)


def window_key(dep: Any, stream: bool) -> tuple[str, str, str, bool]:
    """A deployment's window: provider, base URL, provider model name, and the kind."""
    ep = dep.endpoint
    return (ep.provider, ep.api_base, ep.model, stream)
