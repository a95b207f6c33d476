"""Budgets that hold: reserve the worst case before sending, settle to the real usage after.

The fake's records show what was sent: a call refused by its budget never reaches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import salvo
from _config_helpers import openai_models
from salvo._budget import DEFAULT_OUTPUT_CAP, worst_case_usd
from salvo._pricing import reset_prices
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "hi"}]  # prompt bound: 2 bytes + 8 = 10 tokens
PER_M = 1_000.0  # $ per million tokens, in and out: $0.001 a token
WORST = (10 + 10) * PER_M / 1e6  # max_tokens=10 -> $0.02 a call


@pytest.fixture(autouse=True)
def prices() -> Iterator[None]:
    for name in ("m", "s", "n"):
        salvo.set_price("openai", name, input_per_m=PER_M, output_per_m=PER_M)
    yield
    reset_prices()


def config(fake: FakeProvider) -> dict[str, Any]:
    return openai_models(fake, ("m", "s", "n", "unpriced"))


async def test_worst_case_is_prompt_bound_plus_output_cap(fake: FakeProvider) -> None:
    async with salvo.Client(config=config(fake)) as c:
        dep = c.options("m", {}).dep
        assert worst_case_usd(dep, MSGS, {"max_tokens": 10}) == pytest.approx(WORST)
        no_cap = worst_case_usd(dep, MSGS, {})
        assert no_cap == pytest.approx((10 + DEFAULT_OUTPUT_CAP) * PER_M / 1e6)
        # Multi-byte text is bounded by its UTF-8 bytes, not its characters.
        wide = [{"role": "user", "content": "日本"}]  # 6 bytes
        assert worst_case_usd(dep, wide, {"max_tokens": 0}) == pytest.approx(14 * PER_M / 1e6)


async def test_thousand_concurrent_calls_at_a_budget_for_a_hundred(fake: FakeProvider) -> None:
    fake.script("m", Behavior(latency=0.01, prompt_tokens=10, completion_tokens=10))
    budget = 100 * WORST
    async with salvo.Client(config=config(fake), budget_usd=budget) as c:
        results = await asyncio.gather(
            *(c.acompletion("m", MSGS, max_tokens=10) for _ in range(1000)),
            return_exceptions=True,
        )
        sent = [r for r in results if isinstance(r, salvo.ModelResponse)]
        refused = [r for r in results if isinstance(r, salvo.BudgetExceededError)]
        assert len(sent) + len(refused) == 1000
        assert len(fake.records_for("m")) == len(sent) <= 100
        assert len(sent) == 100  # the worst case is exact here, so exactly 100 fit
        spent = c.spent_usd
        assert spent is not None and spent <= budget * (1 + 1e-9)
        stats = c.statistics()
        assert stats.reserved_usd == 0.0 and stats.spent_usd == pytest.approx(spent)
        assert refused[0].needed_usd == pytest.approx(WORST)


async def test_settling_releases_what_was_not_used(fake: FakeProvider) -> None:
    fake.script("m", Behavior(prompt_tokens=3, completion_tokens=2))
    async with salvo.Client(config=config(fake), budget_usd=2 * WORST) as c:
        for _ in range(4):  # each settles to $0.005, so four fit one after another
            resp = await c.acompletion("m", MSGS, max_tokens=10)
            assert resp.cost_usd == pytest.approx(5 * PER_M / 1e6)
        assert c.spent_usd == pytest.approx(4 * 5 * PER_M / 1e6)
        with pytest.raises(salvo.BudgetExceededError):  # $0.02 spent + $0.02 > $0.04 - eps
            await c.acompletion("m", MSGS, max_tokens=11)
        fake.script("m", Behavior(status=500))
        with pytest.raises(salvo.ServerError):
            await c.acompletion("m", MSGS, max_tokens=10, max_retries=0)
        assert c.spent_usd == pytest.approx(4 * 5 * PER_M / 1e6)  # a refused request is free
        assert c.statistics().reserved_usd == 0.0


async def test_a_refused_call_is_never_sent(fake: FakeProvider) -> None:
    async with salvo.Client(config=config(fake), budget_usd=WORST / 2) as c:
        with pytest.raises(salvo.BudgetExceededError, match="not sent"):
            await c.acompletion("m", MSGS, max_tokens=10)
        with pytest.raises(salvo.BudgetExceededError):
            await c.acompletion("m", MSGS, stream=True, max_tokens=10)
        assert isinstance(salvo.BudgetExceededError("x"), salvo.SalvoError)
    assert fake.records == []


async def test_unknown_price_with_a_budget_is_a_config_error(fake: FakeProvider) -> None:
    async with salvo.Client(config=config(fake), budget_usd=1.0) as c:
        with pytest.raises(salvo.ConfigError, match="set_price"):
            await c.acompletion("unpriced", MSGS)
        with pytest.raises(salvo.ConfigError, match="set_price"):
            await c.arace(["m", "unpriced"], MSGS)
    async with salvo.Client(config=config(fake)) as c:
        with pytest.raises(salvo.ConfigError, match="set_price"):
            await c.abatch_completion("unpriced", [MSGS], max_cost_usd=1.0)
        with pytest.raises(salvo.ConfigError, match="set_price"):
            await c.agather_all(["m", "unpriced"], MSGS, max_cost_usd=1.0)
        await c.acompletion("unpriced", MSGS)  # no budget: no price needed
    assert [r.model for r in fake.records] == ["unpriced"]


@pytest.mark.parametrize("bad", [-1, "5", float("inf"), float("nan"), True])
async def test_bad_budgets(fake: FakeProvider, bad: Any) -> None:
    with pytest.raises(salvo.ConfigError):
        salvo.Client(budget_usd=bad)
    async with salvo.Client(config=config(fake)) as c:
        with pytest.raises(salvo.ConfigError):
            await c.abatch_completion("m", [MSGS], max_cost_usd=bad)
    assert fake.records == []


async def test_batch_max_cost_ends_items_in_place(fake: FakeProvider) -> None:
    fake.script("m", Behavior(prompt_tokens=10, completion_tokens=10))
    async with salvo.Client(config=config(fake)) as c:
        out = await c.abatch_completion(
            "m", [MSGS] * 10, max_tokens=10, max_cost_usd=3 * WORST, max_concurrency=10
        )
        assert [type(r).__name__ for r in out].count("ModelResponse") == 3
        assert [type(r).__name__ for r in out].count("BudgetExceededError") == 7
        assert len(fake.records_for("m")) == 3
        # The next operation has a budget of its own.
        again = await c.agather_all(["m", "n"], MSGS, max_tokens=10, max_cost_usd=WORST)
        assert sorted(type(r).__name__ for r in again) == [
            "BudgetExceededError",
            "ModelResponse",
        ]


async def test_race_max_cost_counts_every_contender(fake: FakeProvider) -> None:
    fake.script("s", Behavior(latency=2.0))
    async with salvo.Client(config=config(fake)) as c:
        with pytest.raises(salvo.AllModelsFailedError) as info:
            await c.arace(["m", "n"], MSGS, max_tokens=10, max_cost_usd=WORST / 2)
        assert all(isinstance(e, salvo.BudgetExceededError) for e in info.value.exceptions)
        resp = await c.arace(["s", "m"], MSGS, max_tokens=10, max_cost_usd=2 * WORST)
        assert resp.race is not None and resp.race.winner == 1
    assert len(fake.records_for("m")) == 1 and len(fake.records_for("n")) == 0


async def test_stream_settles_when_closed(fake: FakeProvider) -> None:
    fake.script(
        "m",
        Behavior(prompt_tokens=4, completion_tokens=4, include_usage=True, chunk_interval=0.02),
    )
    async with salvo.Client(config=config(fake), budget_usd=1.0) as c:
        stream = await c.acompletion("m", MSGS, stream=True, max_tokens=10)
        assert c.statistics().reserved_usd == pytest.approx(WORST)
        await stream.collect()
        assert c.statistics().reserved_usd == 0.0
        assert c.spent_usd == pytest.approx(8 * PER_M / 1e6)
        fake.script("m", Behavior(first_chunk_delay=0.0, chunks=3, chunk_interval=1.0))
        stream = await c.acompletion("m", MSGS, stream=True, max_tokens=10)
        await stream.aclose()  # closed before it reported usage: the reservation is kept
        assert c.spent_usd == pytest.approx(8 * PER_M / 1e6 + WORST)


async def test_a_cancelled_call_settles_its_prompt(fake: FakeProvider) -> None:
    fake.script("m", Behavior(latency=5.0))
    async with salvo.Client(config=config(fake), budget_usd=1.0) as c:
        task = asyncio.create_task(c.acompletion("m", MSGS, max_tokens=10))
        while not fake.records_for("m"):
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        spent = c.spent_usd
        assert spent is not None and 0 < spent < WORST
        assert c.statistics().reserved_usd == 0.0


class SharedBudget:
    """A Budget of the caller's own (what a Redis-backed one looks like from salvo)."""

    def __init__(self, limit: float) -> None:
        self.limit, self.used, self.calls = limit, 0.0, 0

    async def reserve(self, usd: float) -> bool:
        await asyncio.sleep(0)  # a round trip
        self.calls += 1
        if self.used + usd > self.limit:
            return False
        self.used += usd
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.used += actual - reserved


async def test_any_budget_object_works(fake: FakeProvider) -> None:
    fake.script("m", Behavior(prompt_tokens=10, completion_tokens=10))
    shared = SharedBudget(2 * WORST)
    async with salvo.Client(config=config(fake), budget_usd=shared) as c:
        out = await c.abatch_completion("m", [MSGS] * 4, max_tokens=10, max_concurrency=4)
        assert sum(isinstance(r, salvo.BudgetExceededError) for r in out) == 2
        assert c.spent_usd is None  # it keeps no spent_usd of its own
    assert shared.calls == 4 and shared.used == pytest.approx(2 * WORST)


async def test_hostile_inputs_are_bounded_not_trusted(fake: FakeProvider) -> None:
    async with salvo.Client(config=config(fake), budget_usd=1.0) as c:
        dep = c.options("m", {}).dep
        # A 4 MB prompt is reserved at its byte count: far past $1 at $0.001 a token.
        huge = [{"role": "user", "content": "x" * 4_000_000}]
        with pytest.raises(salvo.BudgetExceededError):
            await c.acompletion("m", huge, max_tokens=1)
        # max_tokens that is not a whole number >= 0 does not lower the worst case.
        for bad in ("5", -5, 2.5, True, None):
            assert worst_case_usd(dep, MSGS, {"max_tokens": bad}) == pytest.approx(
                (10 + DEFAULT_OUTPUT_CAP) * PER_M / 1e6
            )
        # Content parts and tools count toward the prompt bound.
        parts = [{"role": "user", "content": [{"type": "text", "text": "abcd"}, {"x": 1}]}]
        assert worst_case_usd(dep, parts, {"max_tokens": 0}) == pytest.approx(12 * PER_M / 1e6)
        tools = [{"type": "function", "function": {"name": "f"}}]
        assert worst_case_usd(dep, MSGS, {"max_tokens": 0, "tools": tools}) > worst_case_usd(
            dep, MSGS, {"max_tokens": 0}
        )
    assert fake.records == []
