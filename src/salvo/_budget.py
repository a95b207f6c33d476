"""Budgets that hold under concurrency: reserve a call's worst case, send, settle to the truth.

Before a call is sent, its worst-case cost is reserved from every budget it runs under (the
client's ``budget_usd`` and an operation's ``max_cost_usd``); a call that cannot be reserved
fails in place with :class:`~salvo.BudgetExceededError` and is never sent. After the answer the
reservation is settled to the cost of the usage the provider reported, and the rest is released.
The check and the reservation are one step (no await between them), so a burst of parallel calls
cannot all pass the check before any of them is recorded.

The worst case is the prompt bound plus the output cap, at the deployment's price:

- prompt bound: one token per UTF-8 byte of the messages' text (and of ``tools``), plus 8 a
  message; no byte-level BPE tokenizer produces more tokens than bytes. Images and audio are not
  counted.
- output cap: the call's ``max_tokens`` / ``max_completion_tokens``, else the deployment's,
  else :data:`DEFAULT_OUTPUT_CAP`. Only with ``max_tokens`` set is the cap the provider's too,
  so only then is "settled spend never exceeds the budget" a guarantee.

Settling: a response with usage is settled to its cost; with no usage, to the whole reservation
(never a guess presented as exact). A call that failed with a provider error (4xx/5xx) is
settled to 0 (providers do not bill refused requests); one cancelled or cut off after it was
sent, to its prompt estimate (the provider may bill the prompt; what it generated before the
connection closed is unknown).

Any object with ``async reserve(usd) -> bool`` and ``settle(reserved, actual) -> None`` is a
budget (:class:`Budget`); :class:`LocalBudget` is the in-process one.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from ._closing import after_close
from ._errors import BudgetExceededError, ConfigError, ProviderError
from ._pricing import Price, get_price, response_cost
from ._stream import CompletionStream
from ._types import ModelResponse

__all__ = [
    "DEFAULT_OUTPUT_CAP",
    "Budget",
    "LocalBudget",
    "Reservation",
    "check_limit",
    "prompt_estimate_usd",
    "price_of",
    "reserve",
    "spend_call",
    "spend_stream",
    "worst_case_usd",
]

#: The output tokens reserved for a call that sets no ``max_tokens`` (nor its deployment).
DEFAULT_OUTPUT_CAP = 4096

_encode = msgspec.json.encode


@runtime_checkable
class Budget(Protocol):
    """A spend budget in USD: ``reserve`` atomically or refuse; ``settle`` a reservation."""

    async def reserve(self, usd: float) -> bool: ...

    def settle(self, reserved: float, actual: float) -> None: ...


def check_limit(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{name} must be a non-negative number of US dollars, not {value!r}.")
    if value == float("inf"):
        raise ConfigError(f"{name} must be finite; pass None for no budget.")
    return float(value)


class LocalBudget:
    """An in-process budget: ``spent_usd`` settled so far, ``reserved_usd`` held by calls under
    way; a reservation is refused when spent + reserved + it would pass ``limit_usd``."""

    __slots__ = ("limit_usd", "reserved_usd", "spent_usd")

    def __init__(self, limit_usd: float) -> None:
        self.limit_usd = check_limit(limit_usd, "budget_usd")
        self.spent_usd = 0.0
        self.reserved_usd = 0.0

    async def reserve(self, usd: float) -> bool:
        if self.spent_usd + self.reserved_usd + usd > self.limit_usd * (1 + 1e-12):
            return False
        self.reserved_usd += usd
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual

    def __repr__(self) -> str:
        return (
            f"<LocalBudget limit=${self.limit_usd:g} spent=${self.spent_usd:.6f} "
            f"reserved=${self.reserved_usd:.6f}>"
        )


def _text_bytes(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode())
    if isinstance(content, list):
        n = 0
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    n += len(text.encode())
        return n
    return 0


def _prompt_bound(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> int:
    n = sum(_text_bytes(m.get("content")) + 8 for m in messages)
    tools = params.get("tools")
    if tools:
        n += len(_encode(tools))
    return n


def _prompt_guess(messages: Sequence[Mapping[str, Any]]) -> int:
    """The usual ~4 characters a token (what the rate limiters charge)."""
    return sum(_text_bytes(m.get("content")) // 4 + 4 for m in messages)


def _output_cap(dep: Any, params: Mapping[str, Any]) -> int:
    for source in (params, dep.params):
        for key in ("max_tokens", "max_completion_tokens"):
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
    return DEFAULT_OUTPUT_CAP


def price_of(dep: Any) -> Price:
    """The deployment's price; a ConfigError when unknown (a budget needs one)."""
    for model in (dep.endpoint.model, dep.name):
        price = get_price(dep.provider, model)
        if price is not None:
            return price
    raise ConfigError(
        f"A budget needs the price of {dep.provider} model {dep.endpoint.model!r}, which salvo "
        f"does not know. Set one with salvo.set_price({dep.provider!r}, "
        f"{dep.endpoint.model!r}, input_per_m=..., output_per_m=...) before using a budget."
    )


def _tier(price: Price, prompt: int) -> Price:
    if price.long is not None and price.long_above is not None and prompt > price.long_above:
        return price.long
    return price


def worst_case_usd(
    dep: Any, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> float:
    prompt = _prompt_bound(messages, params)
    price = _tier(price_of(dep), prompt)
    out = _output_cap(dep, params)
    return (prompt * price.input_per_m + out * price.output_per_m) / 1_000_000


def prompt_estimate_usd(dep: Any, messages: Sequence[Mapping[str, Any]]) -> float | None:
    """The estimated cost of the prompt alone (None when the price is unknown)."""
    for model in (dep.endpoint.model, dep.name):
        price = get_price(dep.provider, model)
        if price is not None:
            prompt = _prompt_guess(messages)
            return prompt * _tier(price, prompt).input_per_m / 1_000_000
    return None


class Reservation:
    """A call's hold on its budgets; settle it exactly once."""

    __slots__ = ("budgets", "prompt_usd", "usd")

    def __init__(self, budgets: Sequence[Budget], usd: float, prompt_usd: float) -> None:
        self.budgets = budgets
        self.usd = usd
        self.prompt_usd = prompt_usd

    def settle(self, actual: float | None) -> None:
        """Settle to ``actual`` (the answer's cost); None (no usage reported) keeps it all."""
        spent = self.usd if actual is None else actual
        budgets, self.budgets = self.budgets, ()
        for b in budgets:
            b.settle(self.usd, spent)

    def fail(self, exc: BaseException) -> None:
        """Settle a call that ended without an answer."""
        self.settle(0.0 if isinstance(exc, ProviderError) else min(self.prompt_usd, self.usd))


async def reserve(
    budgets: Sequence[Budget],
    dep: Any,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> Reservation:
    """Reserve the call's worst case from every budget, or raise BudgetExceededError (having
    released what was taken)."""
    usd = worst_case_usd(dep, messages, params)
    prompt_usd = prompt_estimate_usd(dep, messages) or 0.0
    taken: list[Budget] = []
    for b in budgets:
        if not await b.reserve(usd):
            for t in taken:
                t.settle(usd, 0.0)
            err = BudgetExceededError(
                f"The call to {dep.provider} model {dep.endpoint.model!r} was not sent: its worst "
                f"case (${usd:.6f}: prompt bound plus output cap) does not fit what is left of "
                "the budget. Raise the budget, or set max_tokens lower."
            )
            err.needed_usd, err.model = usd, dep.name
            raise err
        taken.append(b)
    return Reservation(tuple(taken), usd, prompt_usd)


async def spend_call(
    budgets: Sequence[Budget],
    dep: Any,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    run: Callable[[], Coroutine[Any, Any, ModelResponse]],
) -> ModelResponse:
    """Reserve, run the call, settle to the answer's cost (released on failure)."""
    held = await reserve(budgets, dep, messages, params)
    try:
        resp = await run()
    except BaseException as exc:
        held.fail(exc)
        raise
    held.settle(resp.cost_usd if resp.usage is not None else None)
    return resp


async def spend_stream(
    budgets: Sequence[Budget],
    dep: Any,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    run: Callable[[], Coroutine[Any, Any, CompletionStream]],
) -> CompletionStream:
    """The same for a stream, settled when the stream is closed (to the cost of the usage it
    reported; a stream closed before reporting usage keeps its whole reservation)."""
    held = await reserve(budgets, dep, messages, params)
    try:
        stream = await run()
    except BaseException as exc:
        held.fail(exc)
        raise

    def settle(s: CompletionStream) -> None:
        usage = s.usage
        cost = None
        if usage is not None:
            cost = response_cost(dep.provider, usage, dep.endpoint.model, dep.name)
        held.settle(cost)

    after_close(stream, settle)
    return stream
