"""acompletion, streams, batches, races and gathers end to end over real sockets, against the
fake provider; cancellation proven from the fake's own records of each connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from _config_helpers import openai_models
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[salvo.Client]:
    names = ["fast", "mid", "slow", "bad", "m"]
    config = openai_models(fake, names)
    async with salvo.Client(config=config) as c:
        yield c


def header(rec: Any, name: str) -> str | None:
    return {k.lower(): v for k, v in rec.headers.items()}.get(name)


async def wait_for_records(fake: FakeProvider, model: str, n: int = 1) -> None:
    while len(fake.records_for(model)) < n:
        await asyncio.sleep(0.002)


async def test_completion_passes_params_through(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("m", Behavior(text="hello there", prompt_tokens=7, completion_tokens=2))
    extra: dict[str, Any] = {
        "max_tokens": 5,
        "temperature": 0.3,
        "seed": 42,
        "stop": ["\n"],
        "logit_bias": {"50256": -100},
        "user": "u-1",
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    resp = await client.acompletion("m", MSGS, **extra)
    assert isinstance(resp, salvo.ModelResponse)
    assert resp.content == "hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 7
    assert resp.provider == "openai" and resp.latency_s > 0
    (rec,) = fake.records_for("m")
    assert rec.body["messages"] == MSGS
    for key, value in extra.items():
        assert rec.body[key] == value
    assert "stream" not in rec.body
    assert header(rec, "authorization") == "Bearer k"
    assert resp.to_dict()["choices"][0]["message"]["content"] == "hello there"


async def test_per_call_key_and_base(fake: FakeProvider) -> None:
    async with salvo.Client() as c:
        resp = await c.acompletion(
            "openai/direct", MSGS, api_base=fake.openai_base, api_key="sk-call"
        )
    assert resp.content
    assert header(fake.records_for("direct")[0], "authorization") == "Bearer sk-call"


async def test_stream_yields_chunks_and_releases(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("m", Behavior(text="one two three four", chunks=4))
    stream = await client.acompletion("m", MSGS, stream=True)
    assert isinstance(stream, salvo.CompletionStream)
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "one two three four"
    assert stream.closed
    rec = await fake.wait_until_closed(fake.records_for("m")[0])
    assert rec.completed is not None and rec.disconnected is None
    assert rec.body["stream"] is True


async def test_stream_collect_assembles_a_response(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(text="alpha beta", chunks=3))
    stream = await client.acompletion("m", MSGS, stream=True)
    resp = await stream.collect()
    assert resp.content == "alpha beta"
    assert resp.choices[0].finish_reason == "stop"


async def test_stream_aclose_midway_closes_connection(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(chunks=50, chunk_interval=0.05))
    async with await client.acompletion("m", MSGS, stream=True) as stream:
        first = await stream.__anext__()
        assert first.provider == "openai"
    rec = await fake.wait_until_closed(fake.records_for("m")[0], timeout=2.0)
    assert rec.disconnected is not None and rec.completed is None


async def test_batch_keeps_order_and_reports_failure_in_place(
    fake: FakeProvider, client: salvo.Client
) -> None:
    k = 3
    fake.script("m", lambda n: Behavior(status=500) if n == k else Behavior(text=f"answer {n}"))
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(8)]
    out = await client.abatch_completion("m", prompts, max_concurrency=1, max_retries=0)
    assert len(out) == 8
    for i, r in enumerate(out):
        if i == k:
            assert isinstance(r, salvo.ProviderError) and r.status_code == 500
            assert isinstance(r, salvo.ServerError)
        else:
            assert isinstance(r, salvo.ModelResponse) and r.content == f"answer {i}"


async def test_batch_concurrent_order_matches_prompts(
    fake: FakeProvider, client: salvo.Client
) -> None:
    # Latency decreasing with arrival, so answers complete in roughly reverse order.
    fake.script("m", lambda n: Behavior(latency=max(0.0, 0.05 - n * 0.002)))
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(20)]
    seen: list[int] = []
    out = await client.abatch_completion(
        "m", prompts, max_concurrency=20, on_result=lambda i, r: seen.append(i)
    )
    assert all(isinstance(r, salvo.ModelResponse) for r in out)
    by_prompt = {r.body["messages"][0]["content"]: r for r in fake.records_for("m")}
    assert set(by_prompt) == {f"question {i}" for i in range(20)}
    assert sorted(seen) == list(range(20))
    assert seen != list(range(20))  # completion order differs from input order...
    assert len(out) == 20  # ...yet every result sits at its prompt's index


async def test_race_returns_fastest_and_closes_losers(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("fast", Behavior(latency=0.05, text="fast wins"))
    fake.script("mid", Behavior(latency=1.0))
    fake.script("slow", Behavior(latency=2.0))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await client.arace(["slow", "mid", "fast"], MSGS)
    returned = loop.time()
    assert resp.content == "fast wins"
    assert returned - t0 < 1.0
    for name in ("mid", "slow"):
        rec = await fake.wait_until_closed(fake.records_for(name)[0], timeout=1.0)
        assert rec.completed is None, f"{name} ran to completion"
        assert rec.disconnected is not None
        assert rec.disconnected - returned < 0.1


async def test_fast_failure_does_not_win(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("bad", Behavior(status=500))
    fake.script("fast", Behavior(latency=0.1, text="ok"))
    resp = await client.arace("bad, fast", MSGS, max_retries=0)
    assert resp.content == "ok"
    assert fake.records_for("bad")[0].status == 500


async def test_all_failed_raises_group_with_every_error(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("bad", Behavior(status=500))
    fake.script("mid", Behavior(status=401))
    fake.script("slow", Behavior(status=429))
    with pytest.raises(salvo.AllModelsFailedError) as info:
        await client.arace(["bad", "mid", "slow"], MSGS, max_retries=0)
    errs = info.value.exceptions
    assert [type(e) for e in errs] == [
        salvo.ServerError,
        salvo.AuthenticationError,
        salvo.RateLimitError,
    ]
    assert info.value.models == ("bad", "mid", "slow")


async def test_streaming_race_decided_by_first_chunk(
    fake: FakeProvider, client: salvo.Client
) -> None:
    # "slow" answers its headers first but its first chunk comes late; "fast" the reverse.
    fake.script("slow", Behavior(first_chunk_delay=1.5, chunks=3))
    fake.script("fast", Behavior(latency=0.1, text="quick one", chunks=2))
    loop = asyncio.get_running_loop()
    stream = await client.arace(["slow", "fast"], MSGS, stream=True)
    decided = loop.time()
    assert stream.model == "fast"
    rec = await fake.wait_until_closed(fake.records_for("slow")[0], timeout=1.0)
    assert rec.disconnected is not None and rec.completed is None
    assert rec.disconnected - decided < 0.1
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "quick one"


async def test_caller_cancellation_closes_connection(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("slow", Behavior(latency=5.0))
    task = asyncio.create_task(client.acompletion("slow", MSGS))
    await wait_for_records(fake, "slow")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rec = await fake.wait_until_closed(fake.records_for("slow")[0], timeout=1.0)
    assert rec.disconnected is not None and rec.completed is None


async def test_cancelling_a_race_closes_every_contender(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("mid", Behavior(latency=5.0))
    fake.script("slow", Behavior(latency=5.0))
    task = asyncio.create_task(client.arace(["mid", "slow"], MSGS))
    await wait_for_records(fake, "mid")
    await wait_for_records(fake, "slow")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for name in ("mid", "slow"):
        rec = await fake.wait_until_closed(fake.records_for(name)[0], timeout=1.0)
        assert rec.disconnected is not None


async def test_cancelling_a_batch_closes_in_flight(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("slow", Behavior(latency=5.0))
    prompts = [MSGS] * 6
    task = asyncio.create_task(client.abatch_completion("slow", prompts, max_concurrency=3))
    await wait_for_records(fake, "slow", 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    recs = fake.records_for("slow")
    assert len(recs) == 3  # nothing new was sent after the cancel
    for rec in recs:
        await fake.wait_until_closed(rec, timeout=1.0)
        assert rec.disconnected is not None


async def test_gather_all_keeps_models_order(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("slow", Behavior(latency=0.1, text="slow answer"))
    fake.script("bad", Behavior(status=404))
    fake.script("fast", Behavior(text="fast answer"))
    out = await client.agather_all(["slow", "bad", "fast"], MSGS, max_retries=0)
    assert isinstance(out[0], salvo.ModelResponse) and out[0].content == "slow answer"
    assert isinstance(out[1], salvo.NotFoundError)
    assert isinstance(out[2], salvo.ModelResponse) and out[2].content == "fast answer"


async def test_embeddings(fake: FakeProvider, client: salvo.Client) -> None:
    resp = await client.aembedding(
        "openai/text-embedding-3-small",
        ["a", "b"],
        api_base=fake.openai_base,
        api_key="k",
    )
    assert isinstance(resp, salvo.EmbeddingResponse)
    assert [e.index for e in resp.data] == [0, 1]
    assert all(isinstance(e.embedding, list) and e.embedding for e in resp.data)


@pytest.mark.parametrize(
    ("model", "messages", "match"),
    [
        ("nope/x", MSGS, "Unknown provider"),
        ("groq/llama3", MSGS, "GROQ_API_KEY"),
        ("m", [{"role": "user"}], "has no 'content'"),
        ("m", "just a string", "non-empty list"),
    ],
)
async def test_bad_input_sends_nothing(
    fake: FakeProvider,
    client: salvo.Client,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    messages: Any,
    match: str,
) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(salvo.ConfigError, match=match):
        await client.acompletion(model, messages)
    with pytest.raises(salvo.ConfigError, match=match):
        await client.arace([model, "m"], messages)
    with pytest.raises(salvo.ConfigError):
        await client.abatch_completion(model, [MSGS, messages])
    assert fake.records == []


async def test_provider_errors_map_with_retry_after(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(status=429, headers={"retry-after": "7"}))
    with pytest.raises(salvo.RateLimitError) as info:
        await client.acompletion("m", MSGS, max_retries=0)
    assert info.value.status_code == 429
    assert info.value.retry_after == 7.0
    assert info.value.model == "m"


async def test_transient_error_is_retried(fake: FakeProvider, client: salvo.Client) -> None:
    fake.script("m", [Behavior(status=503, headers={"retry-after-ms": "1"}), Behavior(text="ok")])
    resp = await client.acompletion("m", MSGS)
    assert resp.content == "ok"
    assert [r.status for r in fake.records_for("m")] == [503, 200]


async def test_closed_client_says_so(fake: FakeProvider) -> None:
    c = salvo.Client()
    await c.aclose()
    with pytest.raises(salvo.SalvoError, match="closed"):
        await c.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k")


# Blocking calls inside a running loop now run on salvo's background loop: see
# tests/test_sync_portal.py.
