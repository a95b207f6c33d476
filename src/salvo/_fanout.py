"""Fan-out: many prompts to one model, one prompt to many models (the fastest, or all).

Every operation is cancellation-safe: when it returns or raises, each task it started has
ended, and each HTTP response those tasks opened has been closed. Cancelling the caller cancels
every in-flight request the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from ._errors import AllModelsFailedError, ConfigError, SalvoError
from ._messages import CALL_KEYS, check_messages
from ._models import parse_models
from ._observe import fanout
from ._stream import CompletionStream
from ._types import ModelResponse

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Result", "abatch_completion", "agather_all", "arace"]

Result: TypeAlias = ModelResponse | SalvoError


@fanout("batch")
async def abatch_completion(
    client: Client,
    model: str,
    list_of_messages: Sequence[Sequence[Mapping[str, Any]]],
    *,
    max_concurrency: int | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    **params: Any,
) -> list[Result]:
    """One model, many prompts: results in input order, each a ModelResponse or the
    SalvoError that item ended with. Every prompt is checked before anything is sent."""
    if not isinstance(list_of_messages, list | tuple):
        raise ConfigError("list_of_messages must be a list of message lists.")
    for i, messages in enumerate(list_of_messages):
        try:
            check_messages(messages)
        except ConfigError as exc:
            raise ConfigError(f"list_of_messages[{i}]: {exc}") from None
    opts = client.options(model, params)
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
                res: Result = await complete(opts, list_of_messages[i], params)
            except SalvoError as exc:
                res = exc
            results[i] = res
            if on_result is not None:
                on_result(i, res)

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    return results  # type: ignore[return-value]


@fanout("race")
async def arace(
    client: Client,
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: bool = False,
    **params: Any,
) -> ModelResponse | CompletionStream:
    """The first successful answer among ``models``; the losers are cancelled and their
    connections closed before this returns. With ``stream=True`` the winner is the first
    contender to deliver a chunk, and its CompletionStream is returned."""
    names = parse_models(models)
    check_messages(messages)
    all_opts = [client.options(m, dict(params)) for m in names]
    call_params = {k: v for k, v in params.items() if k not in CALL_KEYS}
    run = client.stream_with if stream else client.complete_with
    tasks = [asyncio.create_task(run(o, messages, call_params)) for o in all_opts]
    index = {t: i for i, t in enumerate(tasks)}
    errors: dict[int, BaseException] = {}
    winner: Any = None
    winner_task: asyncio.Task[Any] | None = None
    pending: set[asyncio.Task[Any]] = set(tasks)
    try:
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in sorted(done, key=index.__getitem__):
                exc = t.exception()
                if exc is not None:
                    if not isinstance(exc, SalvoError):
                        raise exc
                    errors[index[t]] = exc
                elif winner_task is None:
                    winner_task, winner = t, t.result()
    finally:
        await _cancel_all(tasks, keep=winner_task)
    if winner is None:
        excs = [errors[i] for i in range(len(tasks))]
        summary = "; ".join(f"{n}: {type(e).__name__}" for n, e in zip(names, excs, strict=True))
        raise AllModelsFailedError(f"All {len(names)} models failed ({summary}).", excs, names)  # type: ignore[arg-type]
    result: ModelResponse | CompletionStream = winner
    return result


@fanout("gather")
async def agather_all(
    client: Client,
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    **params: Any,
) -> list[Result]:
    """Every model's answer (or its error), in models order."""
    names = parse_models(models)
    check_messages(messages)
    all_opts = [client.options(m, dict(params)) for m in names]
    call_params = {k: v for k, v in params.items() if k not in CALL_KEYS}

    async def one(i: int) -> Result:
        try:
            return await client.complete_with(all_opts[i], messages, call_params)
        except SalvoError as exc:
            return exc

    tasks = [asyncio.create_task(one(i)) for i in range(len(names))]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await _cancel_all(tasks, keep=None)


async def _discard(result: Any) -> None:
    if isinstance(result, CompletionStream):
        await result.aclose()


async def _cancel_all(
    tasks: Sequence[asyncio.Task[Any]], keep: asyncio.Task[Any] | None = None
) -> None:
    """Cancel what is still running, wait for all of it to end, and close any stream that
    finished too late to matter (every task but ``keep``)."""
    live = [t for t in tasks if not t.done()]
    for t in live:
        t.cancel()
    if live:
        await asyncio.wait(live)
    for t in tasks:
        if t is keep or t.cancelled():
            continue
        if t.exception() is None:
            await _discard(t.result())
