"""Races: the fastest answer (``arace``), the first k (``afirst_k``), full or hedged.

One engine runs every race. Contenders are tasks; the loop waits on them with
``asyncio.wait(FIRST_COMPLETED)`` (a failure is not a win) and, in a hedged race, with a timeout
that is the moment to start the next contender:

- ``hedge=None``: every contender starts at once (a full race);
- ``hedge=0.5`` / ``"p95"``: the first k start at once; contender i+1 starts when the latest
  started one has run for the delay (seconds, or that percentile of its deployment's observed
  latency: ``_hedge``) without the race being decided, if the client's hedge budget allows;
  a contender that fails starts the next at once (a replacement, not a hedge).

When the race is decided (or fails, or is cancelled) every other task is cancelled and awaited
and every stream not handed back is closed, shielded from a second cancel
(``_closing.finish_tasks``): no task, limiter slot or connection outlives the call, and a winner
that is not returned (the caller was cancelled at the last moment) is closed too.

Each answer carries ``race``, a :class:`~salvo.RaceReport` (``_race_report``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ._caller import FanoutClient
from ._closing import after_close, finish_tasks
from ._errors import AllModelsFailedError, ConfigError, SalvoError
from ._fanout import operation_budget
from ._hedge import parse_hedge
from ._messages import BODY_EXCLUDED, check_messages
from ._models import parse_models
from ._observe import fanout, hedge_started
from ._race_report import Contender, build_report, finish_stream_entry, total_cost
from ._stream import CompletionStream
from ._types import ModelResponse, RaceReport

__all__ = ["afirst_k", "arace"]


@fanout("race")
async def arace(
    client: FanoutClient,
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: bool = False,
    hedge: float | str | None = None,
    max_cost_usd: float | None = None,
    **params: Any,
) -> ModelResponse | CompletionStream:
    """The first successful answer among ``models``; the losers are cancelled and their
    connections closed before this returns. With ``stream=True`` the winner is the first
    contender to deliver a chunk, and its CompletionStream is returned."""
    (won,) = await _race(client, models, messages, 1, stream, hedge, max_cost_usd, params)
    result: ModelResponse | CompletionStream = won
    return result


@fanout("first_k")
async def afirst_k(
    client: FanoutClient,
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    k: int,
    *,
    hedge: float | str | None = None,
    max_cost_usd: float | None = None,
    **params: Any,
) -> list[ModelResponse]:
    """The first ``k`` successful answers in arrival order; the rest are cancelled and closed
    as in a race. AllModelsFailedError as soon as k successes are no longer possible."""
    out: list[ModelResponse] = await _race(
        client, models, messages, k, False, hedge, max_cost_usd, params
    )
    return out


async def _race(
    client: FanoutClient,
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    k: int,
    stream: bool,
    hedge: Any,
    max_cost_usd: float | None,
    params: dict[str, Any],
) -> list[Any]:
    names = parse_models(models)
    check_messages(messages)
    spec = parse_hedge(hedge)
    n = len(names)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ConfigError(
            f"k must be a whole number from 1 to the number of models ({n}), not {k!r}."
        )
    all_opts = [client.options(m, dict(params)) for m in names]
    call_params = {key: v for key, v in params.items() if key not in BODY_EXCLUDED}
    budget = operation_budget(client, max_cost_usd, [o.dep for o in all_opts])
    state = client.hedging
    hedge_budget = state.budget if spec is not None else None
    run = client.stream_with if stream else client.complete_with
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    cs = [Contender(i, o) for i, o in enumerate(all_opts)]
    by_task: dict[asyncio.Task[Any], Contender] = {}
    tasks: list[asyncio.Task[Any]] = []
    pending: set[asyncio.Task[Any]] = set()
    wins: list[Contender] = []
    next_i = 0

    def start(hedged: bool) -> float | None:
        """Start the next contender; the moment to hedge it (None: no more to start)."""
        nonlocal next_i
        c = cs[next_i]
        next_i += 1
        c.task = asyncio.create_task(run(c.opts, messages, call_params, budget=budget))
        c.started = loop.time()
        c.hedge = hedged
        by_task[c.task] = c
        tasks.append(c.task)
        pending.add(c.task)
        if spec is None:
            return None
        if hedged:
            state.hedges_started += 1
            hedge_started(c.opts.dep.name)  # the fan-out's span, the metrics, the proxy's series
        elif hedge_budget is not None:
            hedge_budget.primary()
        if next_i >= n:
            return None
        c.delay = state.delay(spec, c.opts.dep, stream)
        return c.started + c.delay

    hedge_at: float | None = None
    try:
        for _ in range(n if spec is None else k):
            hedge_at = start(False)
        while len(wins) < k and pending:
            timeout = None if hedge_at is None else max(0.0, hedge_at - loop.time())
            done, _ = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            now = loop.time()
            for t in sorted(done, key=lambda t: by_task[t].i):
                pending.discard(t)
                c = by_task[t]
                c.ended = now
                exc = t.exception()
                if exc is None:
                    c.result = t.result()
                    if len(wins) < k:
                        wins.append(c)
                elif isinstance(exc, SalvoError):
                    c.error = exc
                    if next_i < n and len(wins) < k:  # a replacement, not a hedge
                        hedge_at = start(False)
                else:
                    raise exc
            if len(wins) + len(pending) + (n - next_i) < k:
                break  # k successes are no longer possible
            if hedge_at is not None and not done and loop.time() >= hedge_at and len(wins) < k:
                if hedge_budget is None or hedge_budget.try_hedge():
                    hedge_at = start(True)
                else:
                    state.hedges_denied += 1
                    hedge_at = None
    except BaseException:
        await finish_tasks(tasks)
        raise
    keep = [c.task for c in wins] if len(wins) == k else []
    await finish_tasks(tasks, keep)  # a cancel meanwhile: every stream closed, then re-raised
    now = loop.time()
    if spec is not None:
        _censored_samples(client, cs, now, stream)
    entries = build_report(cs, names, wins, messages, t0, now)
    hedges = sum(1 for c in cs if c.hedge)
    losers = sum(e.cost_usd for e in entries if e.outcome != "won" and e.cost_usd is not None)
    state.losers_cost_usd += losers
    if len(wins) < k:
        failed = [c for c in cs if c.error is not None]
        summary = "; ".join(f"{names[c.i]}: {type(c.error).__name__}" for c in failed)
        if k == 1:
            msg = f"All {len(names)} models failed ({summary})."
        else:
            msg = (
                f"{len(failed)} of {len(names)} models failed ({summary}), so the {k} answers "
                f"asked for can no longer come ({len(wins)} did)."
            )
        raise AllModelsFailedError(
            msg,
            [c.error for c in failed],  # type: ignore[misc]
            [names[c.i] for c in failed],
        )
    out: list[Any] = []
    for c in wins:
        if c.hedge:
            state.hedge_wins += 1
        report = RaceReport(winner=c.i, contenders=entries, hedges=hedges)
        report.cost_usd = total_cost(report)
        result = c.result
        result.race = report
        if isinstance(result, CompletionStream):
            _finish_on_close(result, report, c, messages, loop)
        out.append(result)
    return out


def _censored_samples(
    client: FanoutClient, cs: Sequence[Contender], now: float, stream: bool
) -> None:
    """A contender that was hedged and then closed unanswered took at least its elapsed time:
    a lower bound, not a sample. It is fed to its window all the same, because it is past the
    delay (the percentile's current estimate): for that percentile only how many samples lie
    above it matters, and leaving these out would make the window see only the answers that
    won, so that the percentile sinks and hedges grow past the tail they are meant for."""
    for c in cs:
        if c.delay is None or c.started is None or c.result is not None or c.error is not None:
            continue
        elapsed = (c.ended if c.ended is not None else now) - c.started
        if elapsed >= c.delay:
            client.hedging.record(c.opts.dep, elapsed, stream)


def _finish_on_close(
    stream: CompletionStream,
    report: RaceReport,
    c: Contender,
    messages: Any,
    loop: asyncio.AbstractEventLoop,
) -> None:
    started = c.started if c.started is not None else loop.time()

    def done(s: CompletionStream) -> None:
        finish_stream_entry(report, s, c.opts.dep, messages, loop.time() - started)

    after_close(stream, done)
