"""What a call cost, in US dollars, from its token usage and a small table of list prices.

The table holds the public list prices (USD per million tokens) of the models people use most,
as salvo's authors knew them on :data:`PRICES_AS_OF`; providers change prices, so check their
pricing pages and override with :func:`set_price` where it matters. A model with no row costs
``None``, never a guess; so do cached or cache-write tokens whose price the row does not give,
and Azure deployments (whose prices depend on region and deployment type) unless you set them.

Rows are keyed by ``(provider, model)``. A dated snapshot name resolves to its base model
(``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``, ``claude-sonnet-4-5-20250929`` ->
``claude-sonnet-4-5``, ``command-a-03-2025`` -> ``command-a``) unless the snapshot has a row
of its own (``gpt-4o-2024-05-13`` was priced higher than later ``gpt-4o``).

How usage is priced:

- uncached input tokens at ``input_per_m``; ``prompt_tokens_details.cached_tokens`` at
  ``cached_input_per_m``; Anthropic cache writes (``cache_creation_tokens``, of which
  ``cache_creation_1h_tokens`` at the one-hour rate) at ``cache_write_per_m`` /
  ``cache_write_1h_per_m``; completion tokens (reasoning included) at ``output_per_m``;
- Cohere's billed counts (``billed_tokens`` in the details) instead of the raw counts;
- ``long`` prices (Gemini 2.5 Pro, Claude Sonnet 4.x with the 1M context) when the prompt has
  more than ``long_above`` tokens;
- ``batch=True`` takes ``batch_discount`` off (0.5 = half price: OpenAI Batch, Anthropic
  Message Batches); a model with no batch discount has no batch price (``None``).

Prices are for text; audio or image input billed at other rates is not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ._errors import ConfigError

__all__ = ["PRICES_AS_OF", "Price", "cost_usd", "get_price", "response_cost", "set_price"]

#: The date of the price table below.
PRICES_AS_OF = "2026-11-21"


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """List prices of one model in USD per million tokens."""

    input_per_m: float
    output_per_m: float
    cached_input_per_m: float | None = None
    cache_write_per_m: float | None = None
    cache_write_1h_per_m: float | None = None
    batch_discount: float | None = None
    long_above: int | None = None
    long: Price | None = None


def _anthropic(inp: float, out: float, *, long: tuple[float, float] | None = None) -> Price:
    """Anthropic's rule: cache reads 0.1x input, 5-minute writes 1.25x, one-hour writes 2x."""

    def tier(i: float, o: float) -> Price:
        return Price(
            input_per_m=i,
            output_per_m=o,
            cached_input_per_m=round(i * 0.1, 6),
            cache_write_per_m=round(i * 1.25, 6),
            cache_write_1h_per_m=i * 2,
            batch_discount=0.5,
        )

    base = tier(inp, out)
    if long is None:
        return base
    return msgspec.structs.replace(base, long_above=200_000, long=tier(*long))


def _openai(inp: float, out: float, cached: float | None) -> Price:
    return Price(input_per_m=inp, output_per_m=out, cached_input_per_m=cached, batch_discount=0.5)


_SONNET = _anthropic(3.0, 15.0, long=(6.0, 22.5))
_OPUS_4 = _anthropic(15.0, 75.0)
_GEMINI_PRO_LONG = Price(input_per_m=2.5, output_per_m=15.0, cached_input_per_m=0.25)

_DEFAULTS: dict[tuple[str, str], Price] = {
    ("openai", "gpt-4o"): _openai(2.5, 10.0, 1.25),
    ("openai", "gpt-4o-2024-05-13"): _openai(5.0, 15.0, None),
    ("openai", "gpt-4o-mini"): _openai(0.15, 0.6, 0.075),
    ("openai", "gpt-4.1"): _openai(2.0, 8.0, 0.5),
    ("openai", "gpt-4.1-mini"): _openai(0.4, 1.6, 0.1),
    ("openai", "gpt-4.1-nano"): _openai(0.1, 0.4, 0.025),
    ("openai", "o3-mini"): _openai(1.1, 4.4, 0.55),
    ("openai", "text-embedding-3-small"): _openai(0.02, 0.0, None),
    ("openai", "text-embedding-3-large"): _openai(0.13, 0.0, None),
    ("anthropic", "claude-sonnet-4"): _SONNET,
    ("anthropic", "claude-sonnet-4-0"): _SONNET,
    ("anthropic", "claude-sonnet-4-5"): _SONNET,
    ("anthropic", "claude-haiku-4-5"): _anthropic(1.0, 5.0),
    ("anthropic", "claude-opus-4"): _OPUS_4,
    ("anthropic", "claude-opus-4-0"): _OPUS_4,
    ("anthropic", "claude-opus-4-1"): _OPUS_4,
    ("anthropic", "claude-opus-4-5"): _anthropic(5.0, 25.0),
    ("gemini", "gemini-2.5-pro"): Price(
        input_per_m=1.25,
        output_per_m=10.0,
        cached_input_per_m=0.125,
        long_above=200_000,
        long=_GEMINI_PRO_LONG,
        batch_discount=0.5,
    ),
    ("gemini", "gemini-2.5-flash"): Price(
        input_per_m=0.3, output_per_m=2.5, cached_input_per_m=0.03, batch_discount=0.5
    ),
    ("gemini", "gemini-2.5-flash-lite"): Price(
        input_per_m=0.1, output_per_m=0.4, batch_discount=0.5
    ),
    ("cohere", "command-a"): Price(input_per_m=2.5, output_per_m=10.0),
    ("cohere", "command-r7b"): Price(input_per_m=0.0375, output_per_m=0.15),
    # Cohere's bare command-r / command-r-plus aliases are left out: the 2024 snapshots they
    # may point to were priced differently, and Cohere's responses do not name the snapshot.
    ("cohere", "command-r-08-2024"): Price(input_per_m=0.15, output_per_m=0.6),
    ("cohere", "command-r-plus-08-2024"): Price(input_per_m=2.5, output_per_m=10.0),
    ("cohere", "command-r-03-2024"): Price(input_per_m=0.5, output_per_m=1.5),
    ("cohere", "command-r-plus-04-2024"): Price(input_per_m=3.0, output_per_m=15.0),
}
# Vertex AI lists the Gemini models at the Gemini API's prices, batch prediction at half.
_DEFAULTS.update(
    {("vertex_ai", m): p for (prov, m), p in list(_DEFAULTS.items()) if prov == "gemini"}
)

_PRICES: dict[tuple[str, str], Price] = dict(_DEFAULTS)
_RESOLVED: dict[tuple[str, str], Price | None] = {}

#: A snapshot suffix: -2024-07-18, -20250929, -08-2024, -001, -latest.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{2}-\d{4}|\d{3}|latest)$")


def set_price(
    provider: str,
    model: str,
    input_per_m: float,
    output_per_m: float,
    *,
    cached_input_per_m: float | None = None,
    cache_write_per_m: float | None = None,
    batch_discount: float | None = None,
) -> None:
    """Set (or replace) the price of ``provider``/``model`` in USD per million tokens, for
    models the table lacks, negotiated prices, or Azure deployments (keyed by deployment
    name or by the model name the response reports). ``batch_discount=0.5`` means batch
    jobs cost half."""
    values = (input_per_m, output_per_m, cached_input_per_m, cache_write_per_m)
    if any(v is not None and (not isinstance(v, int | float) or v < 0) for v in values):
        raise ConfigError(f"Prices for {provider}/{model} must be non-negative numbers.")
    if batch_discount is not None and not 0 <= batch_discount <= 1:
        raise ConfigError(
            f"batch_discount for {provider}/{model} must be between 0 and 1 "
            f"(0.5 = half price), not {batch_discount!r}."
        )
    _PRICES[(provider, model)] = Price(
        input_per_m=float(input_per_m),
        output_per_m=float(output_per_m),
        cached_input_per_m=cached_input_per_m,
        cache_write_per_m=cache_write_per_m,
        batch_discount=batch_discount,
    )
    _RESOLVED.clear()


def reset_prices() -> None:
    """Forget every :func:`set_price` override (the built-in table stays)."""
    _PRICES.clear()
    _PRICES.update(_DEFAULTS)
    _RESOLVED.clear()


def get_price(provider: str, model: str) -> Price | None:
    """The price row for ``provider``/``model`` (a snapshot name resolves to its base
    model), or None when unknown."""
    key = (provider, model)
    try:
        return _RESOLVED[key]
    except KeyError:
        pass
    price = _PRICES.get(key)
    if price is None:
        name = model.removeprefix("models/")
        price = _PRICES.get((provider, name))
        m = _SNAPSHOT.search(name) if price is None else None
        if m is not None:
            price = _PRICES.get((provider, name[: m.start()]))
    if len(_RESOLVED) > 4096:
        _RESOLVED.clear()
    _RESOLVED[key] = price
    return price


def _count(obj: Any, key: str) -> int | None:
    """A token count from a Usage-like struct or its dict form (None when absent)."""
    if obj is None:
        return None
    value = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


def cost_usd(provider: str, model: str, usage: Any, *, batch: bool = False) -> float | None:
    """The USD cost of ``usage`` (a Usage, an EmbeddingUsage, or their dict form) on
    ``provider``/``model``; None when the price (or a part of it) is unknown."""
    if usage is None:
        return None
    price = get_price(provider, model)
    if price is None:
        return None
    pdetails = (
        usage.get("prompt_tokens_details")
        if isinstance(usage, Mapping)
        else getattr(usage, "prompt_tokens_details", None)
    )
    cdetails = (
        usage.get("completion_tokens_details")
        if isinstance(usage, Mapping)
        else getattr(usage, "completion_tokens_details", None)
    )
    prompt = _count(pdetails, "billed_tokens")
    if prompt is None:
        prompt = _count(usage, "prompt_tokens") or 0
    completion = _count(cdetails, "billed_tokens")
    if completion is None:
        completion = _count(usage, "completion_tokens") or 0
    cached = _count(pdetails, "cached_tokens") or 0
    writes = _count(pdetails, "cache_creation_tokens") or 0
    writes_1h = _count(pdetails, "cache_creation_1h_tokens") or 0
    if price.long is not None and price.long_above is not None and prompt > price.long_above:
        price = price.long
    total = max(prompt - cached - writes, 0) * price.input_per_m
    total += completion * price.output_per_m
    if cached:
        if price.cached_input_per_m is None:
            return None
        total += cached * price.cached_input_per_m
    if writes:
        rate_1h = price.cache_write_1h_per_m
        if price.cache_write_per_m is None or (writes_1h and rate_1h is None):
            return None
        total += (writes - writes_1h) * price.cache_write_per_m + writes_1h * (rate_1h or 0.0)
    if batch:
        if price.batch_discount is None:
            return None
        total *= 1.0 - price.batch_discount
    return round(total / 1_000_000, 10)


def response_cost(provider: str, usage: Any, *models: str, batch: bool = False) -> float | None:
    """:func:`cost_usd` under the first of ``models`` that has a price (e.g. the model the
    response names, then the one that was asked for)."""
    if usage is None:
        return None
    for model in models:
        if model and get_price(provider, model) is not None:
            return cost_usd(provider, model, usage, batch=batch)
    return None
