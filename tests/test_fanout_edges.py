"""Edges of the fan-out without a winner no other test pinned down: a batch given something
other than a list says so, and ``agather_all`` whose contender fails with an error that is not
a SalvoError (here: a deployment parameter that cannot be encoded as JSON) still cancels and
closes every other request before the error reaches the caller.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


async def test_a_batch_of_something_else_than_a_list_is_refused(fake: FakeProvider) -> None:
    async with salvo.Client() as client:
        with pytest.raises(salvo.ConfigError, match="list_of_messages must be a list"):
            await client.abatch_completion(
                "openai/m", "Say hi", api_base=fake.openai_base, api_key="k"
            )
    assert fake.records == []


async def test_gather_closes_the_others_when_one_fails_unexpectedly(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.script("b", Behavior(latency=30.0))
    base = {"api_base": fake.openai_base, "api_key": "k"}
    config = {
        "model_list": [
            {"model_name": "a", "params": {"model": "openai/a", **base}},
            {"model_name": "b", "params": {"model": "openai/b", **base}},
        ]
    }
    async with salvo.Client(config=config) as client:
        real = client.complete_with

        async def buggy(route: Any, messages: Any, params: Any, **kw: Any) -> Any:
            if route.dep.name == "a":  # a bug (not a SalvoError) in a's call, once b is out
                await asyncio.sleep(0.05)
                raise TypeError("a bug in salvo")
            return await real(route, messages, params, **kw)

        monkeypatch.setattr(client, "complete_with", buggy)
        with pytest.raises(TypeError):
            await client.agather_all(["b", "a"], MSGS)  # b holds its limiter slot first
        # b's call has ended (its limiter slot given back) before the error reached us
        (stats,) = client.statistics().limiters.values()
        assert stats.in_flight == 0
        for rec in fake.records_for("b"):  # if its request got as far as the server
            await fake.wait_until_closed(rec, timeout=5.0)
            assert rec.completed is None
