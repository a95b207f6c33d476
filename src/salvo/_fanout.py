"""Fan-out without a winner: many prompts to one model, one prompt to every model.

Every operation is cancellation-safe: when it returns or raises, each task it started has
ended, and each HTTP response those tasks opened has been closed (``_closing.finish_tasks``,
which a second cancel cannot interrupt). Cancelling the caller cancels every in-flight request
the same way. Races (the fastest answer, the first k, hedged) are in ``_race``.

``max_cost_usd=`` runs the operation under a budget of its own (on top of the client's
``budget_usd``): each call reserves its worst case before it is sent, and a call that does not
fit ends in place as a :class:`~salvo.BudgetExceededError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._budget import Budget, LocalBudget, check_limit, price_of
from ._caller import FanoutClient, Result
from ._closing import finish_tasks
from ._errors import SalvoError
from ._messages import BODY_EXCLUDED, check_messages, check_prompts
from ._models import parse_models
from ._observe import fanout

__all__ = ["Result", "abatch_completion", "agather_all", "operation_budget"]


def operation_budget(
    client: FanoutClient, max_cost_usd: float | None, deps: Sequence[Any]
) -> Budget | None:
    """The operation's own budget (None without ``max_cost_usd``), after checking that every
    deployment it will call has a price whenever any budget applies (a ConfigError before
    anything is sent)."""
    budget = (
        None if max_cost_usd is None else LocalBudget(check_limit(max_cost_usd, "max_cost_usd"))
    )
    if budget is not None or client.budget is not None:
        for dep in deps:
            price_of(dep)
    return budget


@fanout("batch")
async def abatch_completion(
    client: FanoutClient,
    model: str,
    list_of_messages: Sequence[Sequence[Mapping[str, Any]]],
    *,
    max_concurrency: int | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    max_cost_usd: float | None = None,
    **params: Any,
) -> list[Result]:
    """One model, many prompts: results in input order, each a ModelResponse or the
    SalvoError that item ended with. Every prompt is checked before anything is sent."""
    check_prompts(list_of_messages)
    opts = client.options(model, params)
    budget = operation_budget(client, max_cost_usd, [opts.dep])
    n = len(list_of_messages)
    results: list[Result | None] = [None] * n
    if n == 0:
        return []
    workers = max(1, min(max_concurrency or client.max_concurrency, n))
    cursor = iter(range(n))
    complete = client.complete_with

    async def worker() -> None:
        for i in cursor:
            try:
                if budget is None:
                    res: Result = await complete(opts, list_of_messages[i], params)
                else:
                    res = await complete(opts, list_of_messages[i], params, budget=budget)
            except SalvoError as exc:
                res = exc
            results[i] = res
            if on_result is not None:
                on_result(i, res)

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    return results  # type: ignore[return-value]


@fanout("gather")
async def agather_all(
    client: FanoutClient,
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    max_cost_usd: float | None = None,
    **params: Any,
) -> list[Result]:
    """Every model's answer (or its error), in models order."""
    names = parse_models(models)
    check_messages(messages)
    all_opts = [client.options(m, dict(params)) for m in names]
    call_params = {k: v for k, v in params.items() if k not in BODY_EXCLUDED}
    budget = operation_budget(client, max_cost_usd, [o.dep for o in all_opts])

    async def one(i: int) -> Result:
        try:
            return await client.complete_with(all_opts[i], messages, call_params, budget=budget)
        except SalvoError as exc:
            return exc

    tasks = [asyncio.create_task(one(i)) for i in range(len(names))]
    try:
        out = await asyncio.gather(*tasks)
    except BaseException:
        await finish_tasks(tasks)
        raise
    return list(out)
