"""Edges of the retry loop no other test pinned down: a 429 that gives no delay, the length at
which a logged error is shortened, an 8-character key, and the record a deadline's give-up logs.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11). Timings run on the virtual clock (no real sleeps), against the fake provider.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from _virtual_clock import with_sockets
from salvo._retry import mask_secret, redact_secret
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def kw(fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    return {"api_base": fake.openai_base, "api_key": "k", **extra}


@pytest.mark.parametrize("retry_after", [None, 0.0, -3.0])
def test_a_429_without_a_positive_delay_pauses_nothing(retry_after: float | None) -> None:
    err = salvo.RateLimitError(
        "slow down", status_code=429, provider="openai", model="m", retry_after=retry_after
    )
    assert salvo.RetryPolicy().key_pause(err) == 0.0


async def test_a_429_without_retry_after_is_raised_as_it_is(fake: FakeProvider) -> None:
    fake.script("m", Behavior(status=429))
    async with salvo.Client(max_retries=0) as client:  # a policy that waits (the default)
        with pytest.raises(salvo.RateLimitError) as info:
            await client.acompletion("openai/m", MSGS, **kw(fake))
        assert info.value.retry_after is None
        (stats,) = client.statistics().limiters.values()
        assert stats.paused_for == 0.0


async def _give_up_line(
    fake: FakeProvider, message: str, caplog: pytest.LogCaptureFixture
) -> tuple[str, str]:
    """The error's brief as the give-up record shows it, and the text it was made from."""
    fake.script("m", Behavior(status=500, error_message=message))
    caplog.clear()
    async with salvo.Client(max_retries=0) as client:
        with pytest.raises(salvo.ServerError) as info:
            await client.acompletion("openai/m", MSGS, **kw(fake))
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    prefix = "giving up on openai model 'm' after 1 attempt(s) (max_retries=0): "
    line = record.getMessage()
    assert line.startswith(prefix)
    return line[len(prefix) :], f"HTTP 500 (ServerError): {info.value}"


async def test_an_error_of_400_characters_is_logged_whole_and_401_shortened(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="salvo")
    shown, full = await _give_up_line(fake, "short", caplog)
    assert shown == full  # a short error is logged as it is, no ellipsis
    overhead = len(full) - len("short")
    shown, full = await _give_up_line(fake, "y" * (400 - overhead), caplog)
    assert len(full) == 400 and shown == full
    shown, full = await _give_up_line(fake, "z" * (401 - overhead), caplog)
    assert len(full) == 401
    assert shown == full[:399] + "…" and len(shown) == 400


def test_a_key_of_8_characters_is_masked() -> None:
    key = "abcd1234"
    err = salvo.AuthenticationError(
        f"bad key {key}", status_code=401, provider="openai", model="m", body={"k": key}
    )
    redact_secret(err, key)
    assert key not in str(err) and err.body == {"k": mask_secret(key)}
    short = "abc1234"  # 7: would match ordinary text, left alone
    err = salvo.AuthenticationError(f"bad key {short}", status_code=401, provider="o", model="m")
    redact_secret(err, short)
    assert short in str(err)


async def test_a_deadline_give_up_is_logged_with_attempt_0(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="salvo")
    fake.script("m", Behavior(latency=5.0))
    async with salvo.Client() as client:
        with pytest.raises(salvo.TimeoutError):
            await client.acompletion("openai/m", MSGS, **kw(fake, timeout=1.0))
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    # the deadline, not an attempt, ended the call: attempt 0, no status code
    assert (record.provider, record.model) == ("openai", "m")  # type: ignore[attr-defined]
    assert record.attempt == 0 and record.status_code is None  # type: ignore[attr-defined]
