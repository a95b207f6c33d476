"""``Client.statistics()``: a frozen snapshot of a client's counters, limiters and sockets."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import msgspec

from ._limits import LimiterStatistics

if TYPE_CHECKING:
    import aiohttp

    from ._hedge import HedgeStatistics
    from ._limits import Limiters
    from ._retry import CallStats

__all__ = ["ClientStatistics", "snapshot"]


class ClientStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a Client's counters (``Client.statistics()``).

    ``requests``: attempts sent, retries included; ``in_flight``: attempts under way (an open
    stream counts until it is closed); ``waiting_on_limiters``: calls waiting for their key's
    limits; ``retries``: retries taken; ``errors``: failed attempts by error class (a call
    that ran out of time counts one ``TimeoutError`` more); ``connections_open``: sockets the
    session holds, busy or pooled; ``limiters``: each key's limiter, named
    ``"provider base_url key#<hash>"`` (a fingerprint, never the key); ``spent_usd`` /
    ``reserved_usd``: settled and held spend of the client's ``budget_usd`` (None without one);
    ``hedges_started``, ``hedge_wins``, ``hedges_denied`` (by the hedge budget) and
    ``losers_cost_usd`` (what race losers cost, estimates included): see ``arace(hedge=...)``;
    ``limits_store``: ``"local"`` (no shared store), ``"redis"``, or ``"fallback"`` while the
    store is unreachable and each process keeps its share of the limits.
    """

    requests: int
    in_flight: int
    waiting_on_limiters: int
    retries: int
    errors: dict[str, int]
    connections_open: int
    limiters: dict[str, LimiterStatistics]
    spent_usd: float | None = None
    reserved_usd: float | None = None
    hedges_started: int = 0
    hedge_wins: int = 0
    hedges_denied: int = 0
    losers_cost_usd: float = 0.0
    limits_store: str = "local"


def snapshot(
    session: aiohttp.ClientSession | None,
    stats: CallStats,
    limiters: Limiters,
    racing: HedgeStatistics | None = None,
    budget: Any = None,
) -> ClientStatistics:
    conns = 0
    if session is not None and session.connector is not None:
        connector = session.connector
        acquired = getattr(connector, "_acquired", ())
        pooled = getattr(connector, "_conns", {})
        conns = len(acquired) + sum(len(v) for v in pooled.values())
    by_key = {_label(k): lim.statistics() for k, lim in limiters.all().items()}
    return ClientStatistics(
        requests=stats.requests,
        in_flight=sum(v.in_flight for v in by_key.values()),
        waiting_on_limiters=sum(v.waiting for v in by_key.values()),
        retries=stats.retries,
        errors=dict(stats.errors),
        connections_open=conns,
        limiters=by_key,
        spent_usd=_money(getattr(budget, "spent_usd", None)),
        reserved_usd=_money(getattr(budget, "reserved_usd", None)),
        **({} if racing is None else msgspec.structs.asdict(racing)),
        limits_store=limiters.store_state,
    )


def _money(value: Any) -> float | None:
    return round(value, 10) if isinstance(value, float) else None


def _label(key: Any) -> str:
    """A limiter's name in statistics: provider, base URL and a fingerprint of the key."""
    provider, base, secret = key
    if not secret:
        return f"{provider} {base}"
    return f"{provider} {base} key#{hashlib.sha256(secret.encode()).hexdigest()[:8]}"
