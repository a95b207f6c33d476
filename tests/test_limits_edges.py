"""Edges of the limits no other test pinned down: a limit of 0 is "no limit", overruns add up
in the token debt, and the embeddings estimate counts characters, strings and token arrays.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11). Limiter timings run on `VirtualClockLoop`: no real sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest

import salvo
from _virtual_clock import VirtualClockLoop
from salvo._limits import KeyLimiter, LimitSpec, estimate_input_tokens


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": VirtualClockLoop})


def test_a_limit_of_zero_is_accepted_and_means_no_limit() -> None:
    spec = LimitSpec(rpm=0, tpm=0, max_parallel_requests=0)
    assert (spec.rpm, spec.tpm, spec.max_parallel_requests) == (None, None, None)
    assert not spec
    salvo.Client(limits={"rpm": 0, "tpm": 0, "max_parallel_requests": 0})  # no ConfigError


async def test_overruns_of_calls_in_flight_add_up_in_the_debt() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))  # a bucket of 100 tokens
    await limiter.acquire(10)
    await limiter.acquire(10)
    limiter.release(10, used=110)
    assert limiter.statistics().tokens_owed == 100
    limiter.release(10, used=60)
    assert limiter.statistics().tokens_owed == 150  # both overruns, not only the last


async def test_an_overrun_adds_to_the_debt_a_large_estimate_left() -> None:
    limiter = KeyLimiter(LimitSpec(tpm=6000))
    await limiter.acquire(400)  # one bucketful now, 300 owed
    assert limiter.statistics().tokens_owed == 300
    limiter.release(400, used=450)
    assert limiter.statistics().tokens_owed == 350


def test_the_embeddings_estimate() -> None:
    assert estimate_input_tokens("abcdefgh") == 8 // 4 + 1
    assert estimate_input_tokens("") == 1
    assert estimate_input_tokens(["abcd", "abcdefghijkl"]) == 2 + 4  # per string
    assert estimate_input_tokens([5, 6, 7]) == 3  # a token array: one a token
    assert estimate_input_tokens([[5, 6, 7], [8]]) == 3 + 1
    assert estimate_input_tokens([]) == 0
    assert estimate_input_tokens(None) == 1
