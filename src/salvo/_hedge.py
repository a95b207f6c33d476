"""Hedged races: when to start the next contender, and how many hedges a client may afford.

A hedged race (Dean and Barroso, "The Tail at Scale") sends to one contender and starts the
next only if no answer came within a delay: a fixed number of seconds (``hedge=0.5``) or a
percentile of the latency observed for the contender's deployment (``hedge="p95"``, from the
client's :class:`~salvo._latency.LatencyWindows`; until a window holds
:data:`~salvo._latency.MIN_SAMPLES` samples, the client's ``hedge_delay``).

The hedge budget (``Client(hedge_budget=0.1)``) bounds amplification: over a rolling window of
:data:`BUDGET_WINDOW_S` seconds, hedges may add at most that fraction to the requests hedged
races would have sent without hedging (their first contenders, and the replacements of failed
ones). When it is spent, races wait on the contenders they already started, so an outage that
slows every answer does not double the load on it.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec

from ._errors import ConfigError
from ._latency import LatencyWindows, window_key

__all__ = [
    "BUDGET_WINDOW_S",
    "HedgeBudget",
    "HedgeSpec",
    "HedgeState",
    "HedgeStatistics",
    "parse_hedge",
]

#: The hedge budget's rolling window, in seconds (kept as one-second buckets).
BUDGET_WINDOW_S = 10

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")

#: A parsed ``hedge=``: None (full race), seconds (float), or a percentile (str "p95" -> 95.0).
HedgeSpec = float | tuple[str, float] | None


def parse_hedge(value: Any) -> HedgeSpec:
    """``None``, a non-negative number of seconds, or ``"pNN"`` (0 < NN < 100); a clear
    ConfigError for anything else, before any request is sent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(
            f"hedge must be seconds (e.g. 0.5) or a percentile like 'p95', not {value!r}."
        )
    if isinstance(value, int | float):
        if not value >= 0 or value == float("inf"):
            raise ConfigError(
                f"hedge must be a non-negative, finite number of seconds, not {value!r}."
            )
        return float(value)
    if isinstance(value, str):
        m = _PERCENTILE.match(value.strip().lower())
        if m is not None and 0 < float(m.group(1)) < 100:
            return ("p", float(m.group(1)))
    raise ConfigError(
        f"hedge must be seconds (e.g. 0.5) or a percentile such as 'p95' or 'p99.9', not {value!r}."
    )


class HedgeBudget:
    """At most ``ratio`` hedges per request hedged races would have sent anyway, over the
    last :data:`BUDGET_WINDOW_S` seconds (one-second buckets)."""

    __slots__ = ("_base", "_clock", "_hedges", "_primaries", "ratio")

    def __init__(self, ratio: float, clock: Any = time.monotonic) -> None:
        if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not ratio >= 0:
            raise ConfigError(
                f"hedge_budget must be a non-negative fraction (0.1 = 10 %), not {ratio!r}."
            )
        self.ratio = float(ratio)
        self._clock = clock
        self._primaries = [0] * BUDGET_WINDOW_S
        self._hedges = [0] * BUDGET_WINDOW_S
        self._base = int(clock())  # the latest second the buckets have been rolled to

    def primary(self) -> None:
        """A hedged race sent a request it would have sent without hedging."""
        self._bucket_add(self._primaries)

    def try_hedge(self) -> bool:
        """Take one hedge from the budget; False (nothing taken) when it is spent."""
        self._expire()
        if sum(self._hedges) + 1 > self.ratio * sum(self._primaries):
            return False
        self._bucket_add(self._hedges)
        return True

    def _bucket_add(self, buckets: list[int]) -> None:
        self._expire()
        buckets[int(self._clock()) % BUDGET_WINDOW_S] += 1

    def _expire(self) -> None:
        """Zero the buckets of the seconds that left the window since the last call."""
        now = int(self._clock())
        last = self._base
        if now <= last:
            return
        for second in range(last + 1, min(now, last + BUDGET_WINDOW_S) + 1):
            self._primaries[second % BUDGET_WINDOW_S] = 0
            self._hedges[second % BUDGET_WINDOW_S] = 0
        self._base = now

    def available(self) -> float:
        """Hedges the budget would allow now."""
        self._expire()
        return max(0.0, self.ratio * sum(self._primaries) - sum(self._hedges))


class HedgeStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Racing counters in ``Client.statistics()``."""

    hedges_started: int = 0
    hedge_wins: int = 0
    hedges_denied: int = 0
    losers_cost_usd: float = 0.0


class HedgeState:
    """What a Client keeps for racing: latency windows, the hedge budget, counters."""

    __slots__ = (
        "budget",
        "default_delay",
        "hedge_wins",
        "hedges_denied",
        "hedges_started",
        "latency",
        "losers_cost_usd",
    )

    def __init__(self, budget: float | None = 0.1, default_delay: float = 1.0) -> None:
        if not isinstance(default_delay, int | float) or not default_delay >= 0:
            raise ConfigError(
                f"hedge_delay must be a non-negative number of seconds, not {default_delay!r}."
            )
        self.latency = LatencyWindows()
        self.budget = None if budget is None else HedgeBudget(budget)
        self.default_delay = float(default_delay)
        self.hedges_started = 0
        self.hedge_wins = 0
        self.hedges_denied = 0
        self.losers_cost_usd = 0.0

    def record(self, dep: Any, seconds: float, stream: bool) -> None:
        """A successful call's latency (to the answer, or to the first chunk of a stream)."""
        self.latency.record(window_key(dep, stream), seconds)

    def delay(self, spec: HedgeSpec, dep: Any, stream: bool) -> float:
        """Seconds to wait on a contender on ``dep`` before hedging it."""
        if isinstance(spec, float):
            return spec
        assert spec is not None
        seen = self.latency.percentile(window_key(dep, stream), spec[1])
        return self.default_delay if seen is None else seen

    def statistics(self) -> HedgeStatistics:
        return HedgeStatistics(
            hedges_started=self.hedges_started,
            hedge_wins=self.hedge_wins,
            hedges_denied=self.hedges_denied,
            losers_cost_usd=round(self.losers_cost_usd, 10),
        )
