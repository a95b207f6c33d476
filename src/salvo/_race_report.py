"""``resp.race``: what each contender of a race did and what the race cost.

A contender's cost is exact when the provider reported its usage (a winner; a loser whose
answer arrived before it could be closed). Otherwise it is estimated and marked so:

- a loser closed before it answered: its prompt (the usual ~4 characters a token) at the
  input price; what the provider generated before the connection closed is unknown to salvo;
- a streaming loser closed after its first chunks: the prompt estimate plus one output token
  per chunk it had streamed;
- a streamed winner that reported no usage by the time it was closed: the same, from the
  chunks it delivered.

A contender that failed with a provider error (4xx/5xx) costs 0 (refused requests are not
billed); one that failed on the way (timeout, reset) is charged its prompt estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._budget import prompt_estimate_usd
from ._errors import ProviderError
from ._pricing import get_price, response_cost
from ._stream import CompletionStream
from ._types import ContenderReport, ModelResponse, RaceReport

if TYPE_CHECKING:
    from ._call import CallOptions

__all__ = ["Contender", "build_report", "finish_stream_entry", "total_cost"]


class Contender:
    """The live state of one contender while its race runs."""

    __slots__ = ("delay", "ended", "error", "hedge", "i", "opts", "result", "started", "task")

    def __init__(self, i: int, opts: CallOptions) -> None:
        self.i = i
        self.opts = opts
        self.task: Any = None
        self.started: float | None = None
        self.ended: float | None = None
        self.hedge = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.delay: float | None = None  # how long the race waited on it before hedging


def _output_price(dep: Any) -> float | None:
    for model in (dep.endpoint.model, dep.name):
        price = get_price(dep.provider, model)
        if price is not None:
            return price.output_per_m
    return None


def _estimate(dep: Any, messages: Sequence[Mapping[str, Any]], chunks: int) -> float | None:
    prompt = prompt_estimate_usd(dep, messages)
    if prompt is None:
        return None
    out = _output_price(dep)
    return round(prompt + (chunks * out / 1_000_000 if out is not None and chunks else 0.0), 10)


def _stream_entry(
    entry: ContenderReport, stream: CompletionStream, dep: Any, messages: Any
) -> None:
    usage = stream.usage
    if usage is not None:
        entry.usage = usage
        entry.cost_usd = response_cost(dep.provider, usage, dep.endpoint.model, dep.name)
        entry.estimated = False
    else:
        entry.cost_usd = _estimate(dep, messages, stream.chunks_received)
        entry.estimated = entry.cost_usd is not None


def total_cost(report: RaceReport) -> float | None:
    costs = [c.cost_usd for c in report.contenders if c.cost_usd is not None]
    return round(sum(costs), 10) if costs else None


def build_report(
    contenders: Sequence[Contender],
    names: Sequence[str],
    winners: Sequence[Contender],
    messages: Sequence[Mapping[str, Any]],
    t0: float,
    now: float,
) -> list[ContenderReport]:
    """One entry per contender, in ``models`` order (after every loser was closed)."""
    won = {c.i for c in winners}
    out: list[ContenderReport] = []
    for c, name in zip(contenders, names, strict=True):
        entry = ContenderReport(model=name)
        out.append(entry)
        if c.started is None:
            continue
        dep = c.opts.dep
        entry.started_s = round(c.started - t0, 6)
        entry.duration_s = round((c.ended if c.ended is not None else now) - c.started, 6)
        entry.hedge = c.hedge
        if c.error is not None:
            entry.outcome = "failed"
            if isinstance(c.error, ProviderError):
                entry.cost_usd = 0.0
            else:
                entry.cost_usd = _estimate(dep, messages, 0)
                entry.estimated = entry.cost_usd is not None
            continue
        entry.outcome = "won" if c.i in won else "lost"
        result = c.result
        if isinstance(result, ModelResponse):
            entry.usage = result.usage
            entry.cost_usd = result.cost_usd
        elif isinstance(result, CompletionStream):
            if c.i not in won:
                _stream_entry(entry, result, dep, messages)
        else:  # closed before it answered
            entry.cost_usd = _estimate(dep, messages, 0)
            entry.estimated = entry.cost_usd is not None
    return out


def finish_stream_entry(
    report: RaceReport, stream: CompletionStream, dep: Any, messages: Any, duration: float
) -> None:
    """Complete a streamed winner's entry when its stream is closed."""
    if report.winner is None:
        return
    entry = report.contenders[report.winner]
    entry.duration_s = round(duration, 6)
    _stream_entry(entry, stream, dep, messages)
    report.cost_usd = total_cost(report)
