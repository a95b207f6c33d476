"""Token accounting the limiter must not lose: both rates charged when both are set, a debt
kept when its payer is cancelled, a stream's usage reaching the bucket, and a short 429 pause.

Each test here stands for a change to the code that no other test noticed (mutation testing,
issue 11): the assertion is exact where the virtual clock makes it so.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import salvo
from _virtual_clock import with_sockets
from salvo._limits import KeyLimiter, LimitSpec
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


def now() -> float:
    return asyncio.get_running_loop().time()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_with_rpm_and_tpm_both_set_tokens_are_still_charged() -> None:
    # rpm is no constraint here (1,000 a second); tpm=6000 is 100 tokens a second.
    limiter = KeyLimiter(LimitSpec(rpm=60_000, tpm=6000))
    t0 = now()
    for _ in range(3):
        await limiter.acquire(100)
        limiter.release(100, used=100)
    # The first call takes the full bucket; the next two each wait a second for theirs.
    assert round(now() - t0, 2) == 2.0
    assert limiter.statistics().tokens_owed == 0


async def test_a_waiter_cancelled_while_paying_debt_keeps_the_rest_owed() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))  # a bucket of 100 tokens, 100 a second
    await limiter.acquire(100)  # the bucket is empty now
    limiter.release(100, used=400)  # 300 owed
    assert limiter.statistics().tokens_owed == 300
    payer = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0.5)  # it took 100 of the debt off and waits for the bucket
    assert not payer.done()
    payer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await payer
    # The piece it was waiting to pay is owed again: nothing of the debt is forgotten.
    assert limiter.statistics().tokens_owed == 300
    assert limiter.in_flight == 0
    t0 = now()
    await limiter.acquire(1)
    # the bucket refills by 100 a second: 300 owed plus the call's own token
    assert 2.5 <= now() - t0 <= 3.02
    limiter.release(1, used=1)


async def test_a_streams_usage_reaches_the_token_limiter(fake: FakeProvider) -> None:
    fake.script("m", Behavior(prompt_tokens=2000, completion_tokens=1000, include_usage=True))
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k", "tpm": 60_000}
    async with salvo.Client(timeout=None) as client:
        stream = await client.acompletion("openai/m", MSGS, stream=True, **kw)
        async with stream:
            async for _ in stream:
                pass
        (stats,) = client.statistics().limiters.values()
        assert stats.in_flight == 0
        # 3000 used against an estimate of a handful: the rest is owed to the bucket
        assert 2990 < stats.tokens_owed < 3000


@pytest.mark.parametrize("seconds", [0.25, 1.0])
def test_a_429_asking_for_a_second_or_less_pauses_the_key(seconds: float) -> None:
    err = salvo.RateLimitError(
        "slow down", status_code=429, provider="openai", model="m", retry_after=seconds
    )
    assert salvo.RetryPolicy().key_pause(err) == seconds
    assert salvo.RetryPolicy(wait=False).key_pause(err) == 0.0


async def test_a_short_429_pause_holds_the_next_call(fake: FakeProvider) -> None:
    fake.script("m", [Behavior(status=429, headers={"retry-after": "1"}), Behavior(text="ok")])
    fake.script("n", Behavior(text="n ok"))
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "same-key"}
    async with salvo.Client(max_retries=0) as client:
        t0 = now()
        with pytest.raises(salvo.RateLimitError):
            await client.acompletion("openai/m", MSGS, **kw)
        await client.acompletion("openai/n", MSGS, **kw)  # same key: waits out the pause
        assert 0.999 <= now() - t0 < 1.05


def test_rates_may_be_fractional_but_the_concurrency_cap_is_whole() -> None:
    spec = LimitSpec(rpm=1.5, tpm=2.5, max_parallel_requests=2)
    assert (spec.rpm, spec.tpm, spec.max_parallel_requests) == (1.5, 2.5, 2)
    with pytest.raises(salvo.ConfigError, match="max_parallel_requests"):
        LimitSpec(max_parallel_requests=1.5)  # type: ignore[arg-type]


def test_the_token_estimate_counts_text_parts_exactly() -> None:
    from salvo._limits import estimate_tokens

    parts = [{"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image"}]}]
    assert estimate_tokens(parts, None) == 0 + 4  # 3 characters: no whole token, 4 a message
    assert estimate_tokens(parts, 10) == 14
