"""Cost from usage: the table, snapshot names, cache and batch pricing, overrides, unknowns."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

import salvo
from salvo._pricing import (
    PRICES_AS_OF,
    cost_usd,
    get_price,
    reset_prices,
    response_cost,
    set_price,
)
from salvo.providers import Endpoint
from salvo.providers.anthropic import AnthropicAdapter
from salvo.providers.cohere import CohereAdapter
from salvo.providers.gemini import GeminiAdapter


@pytest.fixture(autouse=True)
def _clean_prices() -> Iterator[None]:
    reset_prices()
    yield
    reset_prices()


def usage(prompt: int, completion: int, **details: int) -> salvo.Usage:
    return salvo.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=details or None,
    )


def test_table_is_dated() -> None:
    assert re.fullmatch(r"2026-\d{2}-\d{2}", PRICES_AS_OF)


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        # input and output price per million tokens
        ("openai", "gpt-4o", (2.5, 10.0)),
        ("openai", "gpt-4o-2024-08-06", (2.5, 10.0)),
        ("openai", "gpt-4o-2024-05-13", (5.0, 15.0)),
        ("openai", "gpt-4o-mini-2024-07-18", (0.15, 0.6)),
        ("openai", "gpt-4.1", (2.0, 8.0)),
        ("openai", "gpt-4.1-mini-2025-04-14", (0.4, 1.6)),
        ("openai", "gpt-4.1-nano", (0.1, 0.4)),
        ("openai", "o3-mini-2025-01-31", (1.1, 4.4)),
        ("anthropic", "claude-sonnet-4-5-20250929", (3.0, 15.0)),
        ("anthropic", "claude-sonnet-4-20250514", (3.0, 15.0)),
        ("anthropic", "claude-haiku-4-5", (1.0, 5.0)),
        ("anthropic", "claude-opus-4-1-20250805", (15.0, 75.0)),
        ("anthropic", "claude-opus-4-5-20251101", (5.0, 25.0)),
        ("gemini", "gemini-2.5-flash", (0.3, 2.5)),
        ("gemini", "models/gemini-2.5-flash-lite", (0.1, 0.4)),
        ("gemini", "gemini-2.5-pro", (1.25, 10.0)),
        ("cohere", "command-a-03-2025", (2.5, 10.0)),
        ("cohere", "command-r-08-2024", (0.15, 0.6)),
        ("cohere", "command-r-plus-08-2024", (2.5, 10.0)),
        ("cohere", "command-r7b-12-2024", (0.0375, 0.15)),
    ],
)
def test_list_prices(provider: str, model: str, expected: tuple[float, float]) -> None:
    # 100k prompt tokens (below every long-context threshold) and 1M completion tokens
    cost = cost_usd(provider, model, usage(100_000, 1_000_000))
    assert cost == pytest.approx(expected[0] / 10 + expected[1])


def test_small_call() -> None:
    # 1000 prompt tokens at $0.15/M + 500 completion tokens at $0.60/M
    assert cost_usd("openai", "gpt-4o-mini", usage(1000, 500)) == pytest.approx(0.00045)


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini-audio-preview"),
        ("openai", "gpt-5-turbo"),
        ("anthropic", "claude-sonnet-4-5-experimental"),
        ("gemini", "gemini-2.5-flash-preview-09-2025"),
        ("cohere", "command-r"),
        ("cohere", "command-a-reasoning-08-2025"),
        ("azure", "gpt-4o"),
        ("groq", "llama-3.1-8b-instant"),
    ],
)
def test_unknown_models_cost_none(provider: str, model: str) -> None:
    assert get_price(provider, model) is None
    assert cost_usd(provider, model, usage(100, 100)) is None


def test_no_usage_costs_none() -> None:
    assert cost_usd("openai", "gpt-4o", None) is None
    assert response_cost("openai", None, "gpt-4o") is None


def test_openai_cached_tokens() -> None:
    # 1M prompt of which 400k cached ($1.25/M) + 600k uncached ($2.50/M), no output
    cost = cost_usd("openai", "gpt-4o", usage(1_000_000, 0, cached_tokens=400_000))
    assert cost == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)


def test_anthropic_cache_reads_and_writes() -> None:
    u = usage(
        100_000,
        0,
        cached_tokens=50_000,
        cache_creation_tokens=30_000,
        cache_creation_1h_tokens=10_000,
    )
    # Sonnet: 20k uncached at $3, 50k reads at $0.30, 20k 5-min writes at $3.75,
    # 10k 1-hour writes at $6 (per million)
    expected = (20_000 * 3.0 + 50_000 * 0.3 + 20_000 * 3.75 + 10_000 * 6.0) / 1e6
    assert cost_usd("anthropic", "claude-sonnet-4-5", u) == pytest.approx(expected)
    # above 200k prompt tokens, every rate doubles (the 1M-context tier)
    assert cost_usd(
        "anthropic", "claude-sonnet-4-5", usage(1_000_000, 0, cached_tokens=1_000_000)
    ) == pytest.approx(0.6)


def test_anthropic_usage_from_the_adapter_is_priced() -> None:
    body = (
        b'{"id":"m","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"x"}],'
        b'"stop_reason":"end_turn","usage":{"input_tokens":1000,"output_tokens":200,'
        b'"cache_read_input_tokens":10000,"cache_creation_input_tokens":0}}'
    )
    ep = Endpoint("anthropic", "claude-haiku-4-5", "https://x", "k")
    resp = AnthropicAdapter().parse_chat(ep, body)
    cost = response_cost("anthropic", resp.usage, resp.model, ep.model)
    assert cost == pytest.approx((1000 * 1.0 + 10000 * 0.1 + 200 * 5.0) / 1e6)


def test_long_context_tiers() -> None:
    big = usage(300_000, 1_000_000)
    assert cost_usd("gemini", "gemini-2.5-pro", big) == pytest.approx(0.3 * 2.5 + 15.0)
    assert cost_usd("anthropic", "claude-sonnet-4-5", big) == pytest.approx(0.3 * 6.0 + 22.5)
    small = usage(200_000, 0)
    assert cost_usd("gemini", "gemini-2.5-pro", small) == pytest.approx(0.2 * 1.25)


def test_gemini_usage_from_the_adapter_counts_thoughts_as_output() -> None:
    body = (
        b'{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}],'
        b'"usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":100,'
        b'"thoughtsTokenCount":900,"totalTokenCount":2000},"modelVersion":"gemini-2.5-flash"}'
    )
    ep = Endpoint("gemini", "gemini-2.5-flash", "https://x", "k")
    resp = GeminiAdapter().parse_chat(ep, body)
    cost = response_cost("gemini", resp.usage, resp.model, ep.model)
    assert cost == pytest.approx((1000 * 0.3 + 1000 * 2.5) / 1e6)


def test_cohere_is_priced_on_billed_units() -> None:
    body = (
        b'{"id":"x","finish_reason":"COMPLETE","message":{"content":[{"type":"text","text":"hi"}]},'
        b'"usage":{"billed_units":{"input_tokens":5,"output_tokens":3},'
        b'"tokens":{"input_tokens":71,"output_tokens":3}}}'
    )
    ep = Endpoint("cohere", "command-a-03-2025", "https://x", "k")
    resp = CohereAdapter().parse_chat(ep, body)
    cost = response_cost("cohere", resp.usage, resp.model, ep.model)
    assert cost == pytest.approx((5 * 2.5 + 3 * 10.0) / 1e6)


def test_unknown_cache_price_means_unknown_cost() -> None:
    u = usage(1000, 10, cached_tokens=500)
    assert cost_usd("gemini", "gemini-2.5-flash-lite", u) is None
    assert cost_usd("openai", "gpt-4o-2024-05-13", u) is None
    assert cost_usd("gemini", "gemini-2.5-flash", u) == pytest.approx(
        (500 * 0.3 + 500 * 0.03 + 10 * 2.5) / 1e6
    )


def test_batch_discount() -> None:
    u = usage(1_000_000, 1_000_000)
    assert cost_usd("openai", "gpt-4o-mini", u, batch=True) == pytest.approx((0.15 + 0.6) / 2)
    assert cost_usd("anthropic", "claude-haiku-4-5", u, batch=True) == pytest.approx(3.0)
    assert cost_usd("gemini", "gemini-2.5-flash", u, batch=True) == pytest.approx((0.3 + 2.5) / 2)
    assert cost_usd("vertex_ai", "gemini-2.5-flash", u, batch=True) == pytest.approx(1.4)
    assert cost_usd("cohere", "command-a", u, batch=True) is None


def test_embeddings_and_dict_usage() -> None:
    emb = salvo.EmbeddingResponse(usage=None)
    assert cost_usd("openai", "text-embedding-3-small", emb.usage) is None
    from salvo._types import EmbeddingUsage

    u = EmbeddingUsage(prompt_tokens=1_000_000, total_tokens=1_000_000)
    assert cost_usd("openai", "text-embedding-3-large", u) == pytest.approx(0.13)
    as_dict = {"prompt_tokens": 2_000_000, "total_tokens": 2_000_000}
    assert cost_usd("openai", "text-embedding-3-small", as_dict) == pytest.approx(0.04)
    with_details = {
        "prompt_tokens": 1_000_000,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 1_000_000},
    }
    assert cost_usd("openai", "gpt-4.1", with_details) == pytest.approx(0.5)


def test_set_price_overrides_and_adds() -> None:
    set_price("openai", "gpt-4o-mini", 1.0, 2.0)
    assert cost_usd("openai", "gpt-4o-mini-2024-07-18", usage(1_000_000, 0)) == pytest.approx(1.0)
    assert cost_usd("openai", "gpt-4o-mini", usage(0, 0), batch=True) is None
    set_price("azure", "gpt4o-prod", 2.75, 11.0, batch_discount=0.5, cached_input_per_m=1.375)
    u = usage(1_000_000, 1_000_000, cached_tokens=1_000_000)
    assert response_cost("azure", u, "gpt-4o-2024-08-06", "gpt4o-prod") == pytest.approx(12.375)
    assert cost_usd("azure", "gpt4o-prod", u, batch=True) == pytest.approx(12.375 / 2)
    reset_prices()
    assert get_price("azure", "gpt4o-prod") is None
    assert get_price("openai", "gpt-4o-mini") is not None
    assert get_price("openai", "gpt-4o-mini").input_per_m == 0.15  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_per_m": -1.0, "output_per_m": 1.0},
        {"input_per_m": 1.0, "output_per_m": 1.0, "batch_discount": 1.5},
        {"input_per_m": "cheap", "output_per_m": 1.0},
    ],
)
def test_set_price_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(salvo.ConfigError):
        set_price("openai", "x", **kwargs)  # type: ignore[arg-type]


def test_response_cost_tries_names_in_order() -> None:
    u = usage(1_000_000, 0)
    assert response_cost("openai", u, "", "gpt-4.1") == pytest.approx(2.0)
    assert response_cost("openai", u, "unknown-model", "gpt-4o") == pytest.approx(2.5)
    assert response_cost("openai", u, "unknown-model") is None
