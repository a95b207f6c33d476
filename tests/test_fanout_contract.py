"""What the fan-out functions hand to the wire and back, checked on what the fake received.

Each test here stands for a change to the code that once survived the whole suite (mutation
testing): a streamed race closing its own winner, a batch of one returning ``[]``,
``max_concurrency=1`` running two workers, ``on_result`` receiving None, and fan-out dropping
the request's parameters or per-call options.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from _config_helpers import openai_models
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]
PARAMS: dict[str, Any] = {
    "temperature": 0.25,
    "max_tokens": 17,
    "seed": 7,
    "stop": ["END"],
    "user": "u-9",
    "response_format": {"type": "json_object"},
}


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[salvo.Client]:
    config = openai_models(fake, ("a", "b"))
    async with salvo.Client(config=config) as c:
        yield c


def auth(rec: Any) -> str | None:
    return {k.lower(): v for k, v in rec.headers.items()}.get("authorization")


def assert_sent(rec: Any, model: str) -> None:
    assert rec.body["model"] == model
    assert rec.body["messages"] == MSGS
    for key, value in PARAMS.items():
        assert rec.body[key] == value, key
    for key in ("api_key", "api_base", "timeout", "max_retries", "hedge", "max_cost_usd"):
        assert key not in rec.body


async def test_streamed_race_hands_back_an_open_winner(
    fake: FakeProvider, client: salvo.Client
) -> None:
    words = "one two three four five six"
    fake.script("a", Behavior(text=words, chunks=6, chunk_interval=0.03))
    fake.script("b", Behavior(first_chunk_delay=5.0))
    stream = await client.arace(["a", "b"], MSGS, stream=True)
    assert not stream.closed
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.split() == words.split()  # every chunk, read to the end after the race
    (rec,) = fake.records_for("a")
    await fake.wait_until_closed(rec, timeout=1.0)
    assert rec.completed is not None and rec.disconnected is None


async def test_a_batch_of_one(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("a", Behavior(text="only one"))
    out = await client.abatch_completion("a", [MSGS])
    assert len(out) == 1
    assert isinstance(out[0], salvo.ModelResponse) and out[0].content == "only one"


async def test_max_concurrency_one_is_one_at_a_time(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(latency=0.03))
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]
    await client.abatch_completion("a", prompts, max_concurrency=1)
    recs = fake.records_for("a")
    assert [r.body["messages"][0]["content"] for r in recs] == ["q0", "q1", "q2", "q3"]
    for prev, nxt in itertools.pairwise(recs):
        # The next request comes only after the previous answer went out (its latency is
        # spent before the headers): with two workers both would arrive at once.
        assert prev.first_byte is not None and nxt.arrived >= prev.first_byte


async def test_on_result_gets_each_result(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("a", lambda n: Behavior(status=400) if n == 1 else Behavior(text=f"r{n}"))
    seen: dict[int, Any] = {}
    out = await client.abatch_completion(
        "a", [MSGS] * 3, max_concurrency=1, on_result=seen.__setitem__, max_retries=0
    )
    assert set(seen) == {0, 1, 2}
    for i, r in enumerate(out):
        assert seen[i] is r
    assert isinstance(seen[0], salvo.ModelResponse) and seen[0].content == "r0"
    assert isinstance(seen[1], salvo.BadRequestError)


async def test_batch_sends_params_and_per_call_options(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("x", Behavior(status=500))
    out = await client.abatch_completion(
        "openai/x",
        [MSGS, MSGS],
        api_key="sk-per-call-batch",
        api_base=fake.openai_base,
        max_retries=0,
        **PARAMS,
    )
    assert all(isinstance(r, salvo.ServerError) for r in out)
    recs = fake.records_for("x")
    assert len(recs) == 2  # max_retries=0: no retry
    for rec in recs:
        assert_sent(rec, "x")
        assert auth(rec) == "Bearer sk-per-call-batch"


async def test_race_sends_params_and_per_call_options(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("x", Behavior(status=500))
    fake.script("y", Behavior(status=500))
    with pytest.raises(salvo.AllModelsFailedError):
        await client.arace(
            ["openai/x", "openai/y"],
            MSGS,
            api_key="sk-per-call-race",
            api_base=fake.openai_base,
            max_retries=0,
            **PARAMS,
        )
    for name in ("x", "y"):
        (rec,) = fake.records_for(name)
        assert_sent(rec, name)
        assert auth(rec) == "Bearer sk-per-call-race"


async def test_hedged_race_and_first_k_send_params(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("a", Behavior(latency=2.0))
    client.hedging.budget = None  # no hedge budget: the one race here may hedge
    await client.arace(["a", "b"], MSGS, hedge=0.05, **PARAMS)
    await client.afirst_k(["a", "b"], MSGS, 1, **PARAMS)
    recs = fake.records_for("a") + fake.records_for("b")
    assert len(recs) == 4
    for rec in recs:
        assert_sent(rec, rec.body["model"])
        assert auth(rec) == "Bearer k"


async def test_gather_sends_params_and_per_call_options(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("x", Behavior(status=503))
    out = await client.agather_all(
        ["openai/x", "openai/y"],
        MSGS,
        api_key="sk-per-call-gather",
        api_base=fake.openai_base,
        max_retries=0,
        **PARAMS,
    )
    assert isinstance(out[0], salvo.ServerError) and isinstance(out[1], salvo.ModelResponse)
    assert len(fake.records_for("x")) == 1  # max_retries=0 reached the call
    for name in ("x", "y"):
        (rec,) = fake.records_for(name)
        assert_sent(rec, name)
        assert auth(rec) == "Bearer sk-per-call-gather"
