"""salvo against a real model server (llama.cpp + gemma-3-270m) on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from benchmarks import real

import salvo

pytestmark = pytest.mark.timeout(300)

MSGS = [{"role": "user", "content": "Name three colours."}]


def client(servers: list[Any]) -> salvo.Client:
    return salvo.Client(config=real.client_config(servers), timeout=120)


async def test_completion(servers: list[Any]) -> None:
    async with client(servers) as c:
        resp = await c.acompletion(servers[0].name, MSGS, max_tokens=16, temperature=0.0)
    assert resp.content
    assert resp.usage is not None and 0 < resp.usage.completion_tokens <= 16
    assert resp.choices[0].finish_reason in ("stop", "length")


async def test_stream_to_the_end(servers: list[Any]) -> None:
    async with client(servers) as c:
        stream = await c.acompletion(
            servers[1].name, MSGS, stream=True, max_tokens=16, temperature=0.0
        )
        resp = await stream.collect()
    assert resp.content
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert stream.closed


async def test_race_stream_stops_the_loser(servers: list[Any]) -> None:
    prompt = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    async with client(servers) as c:
        stream = await c.arace(
            [s.name for s in servers], prompt, stream=True, max_tokens=200, temperature=0.0
        )
        winner = next(s for s in servers if s.name in stream.model)
        loser = next(s for s in servers if s is not winner)
        async with stream:
            await asyncio.sleep(0.3)  # the loser's server notices the closed stream
            before = loser.cpu(), winner.cpu()
            n = 0
            async for _ in stream:
                n += 1
                if n >= 40:
                    break
            after = loser.cpu(), winner.cpu()
    loser_cpu, winner_cpu = after[0] - before[0], after[1] - before[1]
    # The winner kept generating; the loser's server went idle once its stream was closed.
    assert winner_cpu > 0.1
    assert loser_cpu < 0.25 * winner_cpu


async def test_batch(servers: list[Any]) -> None:
    prompts = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(4)]
    async with client(servers) as c:
        out = await c.abatch_completion(
            servers[0].name, prompts, max_concurrency=2, max_tokens=8, temperature=0.0
        )
    assert all(isinstance(r, salvo.ModelResponse) and r.content for r in out)
