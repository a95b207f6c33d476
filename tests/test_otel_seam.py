"""OpenTelemetry on the seam: ``Client.send(trace=)`` used directly, a traceparent on every
attempt, and the fan-out engine's own ``afirst_k`` and hedged ``arace`` (``_race.py``) as
parents of their contenders' spans, checked against the fake's records."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import salvo
from _config_helpers import openai_models
from _otel_helpers import Otel
from salvo import _observe
from salvo.providers import HTTPRequest
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "hello"}]


def config(fake: FakeProvider, *names: str) -> dict[str, Any]:
    return openai_models(fake, names)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def traceparent(span: ReadableSpan) -> str:
    ctx = span.context
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


async def test_every_attempt_carries_the_calls_traceparent(fake: FakeProvider, otel: Otel) -> None:
    """A retried call: both attempts go out with the traceparent of the one call span, and
    the retry is an event on it."""
    fake.script("m", [Behavior(status=503), Behavior()])
    async with salvo.Client(
        config=config(fake, "m"),
        otel_propagate=True,
        max_retries=1,
        retry_policy=salvo.RetryPolicy(wait=False),
    ) as client:
        await client.acompletion("m", MSGS)
    (span,) = otel.spans()
    first, second = fake.records_for("m")
    assert first.headers["traceparent"] == second.headers["traceparent"] == traceparent(span)
    assert [e.name for e in span.events] == ["salvo.retry"]
    assert "error.type" not in attrs(span)


async def test_send_with_a_trace_observes_a_call_built_on_the_seam(
    fake: FakeProvider, otel: Otel
) -> None:
    """``Client.send(trace=)``: a caller's own request (here a raw chat body) gets a CLIENT
    span with the response's id, model and usage read from the bytes it accepted."""
    fake.script("m", Behavior(prompt_tokens=7, completion_tokens=3))
    async with salvo.Client(config=config(fake, "m")) as client:
        route = client.route("m", {})
        body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
        req = HTTPRequest("POST", fake.openai_base + "/chat/completions", route.dep.headers, body)
        trace = _observe.start(route, "chat", {"max_tokens": 5})
        assert trace is not None

        async def accept(resp: salvo.Response) -> bytes:
            return resp.content

        payload = await client.send(req, route, accept=accept, trace=trace)
    (span,) = otel.spans()
    a = attrs(span)
    assert span.name == "chat m" and span.kind is SpanKind.CLIENT
    assert a["gen_ai.usage.input_tokens"] == 7 and a["gen_ai.usage.output_tokens"] == 3
    assert a["gen_ai.request.max_tokens"] == 5
    (rec,) = fake.records_for("m")
    assert a["gen_ai.response.id"].encode() in payload
    assert a["server.port"] == fake.port and rec.status == 200


async def test_afirst_k_is_a_parent_of_its_contenders(fake: FakeProvider, otel: Otel) -> None:
    fake.script("slow", Behavior(latency=5.0))
    async with salvo.Client(config=config(fake, "a", "b", "slow")) as client:
        got = await client.afirst_k(["a", "b", "slow"], MSGS, 2)
        (slow,) = fake.records_for("slow")
        assert (await fake.wait_until_closed(slow, timeout=5)).disconnected is not None
    assert len(got) == 2
    spans = otel.spans()
    (parent,) = [s for s in spans if s.name == "first_k"]
    children = [s for s in spans if s.parent is not None]
    assert {s.parent.span_id for s in children if s.parent} == {parent.context.span_id}
    outcomes = {attrs(s)["salvo.model"]: attrs(s)["salvo.race.outcome"] for s in children}
    assert outcomes == {"a": "won", "b": "won", "slow": "lost"}
    assert sorted(attrs(parent)["salvo.race.winners"]) == ["a", "b"]
    assert attrs(parent)["salvo.fanout.contenders"] == 3


async def test_a_hedged_race_counts_its_hedge(fake: FakeProvider, otel: Otel) -> None:
    """``_race.py`` starts the hedge: the parent's ``salvo.hedges``, the ``salvo.hedges``
    metric by model, and the hedge wins while the slow primary's span ends as lost."""
    fake.script("slow", Behavior(latency=5.0))
    async with salvo.Client(config=config(fake, "slow", "fast"), hedge_budget=None) as client:
        resp = await client.arace(["slow", "fast"], MSGS, hedge=0.05)
        assert isinstance(resp, salvo.ModelResponse)
        (slow,) = fake.records_for("slow")
        assert (await fake.wait_until_closed(slow, timeout=5)).disconnected is not None
    assert len(fake.records_for("fast")) == 1
    spans = otel.spans()
    (parent,) = [s for s in spans if s.name == "race"]
    assert attrs(parent)["salvo.hedges"] == 1
    outcomes = {attrs(s)["salvo.model"]: attrs(s)["salvo.race.outcome"] for s in spans if s.parent}
    assert outcomes == {"slow": "lost", "fast": "won"}
    (hedges,) = otel.points("salvo.hedges")
    assert hedges.value == 1 and hedges.attributes["salvo.model"] == "fast"


async def test_a_stream_cancelled_while_read_ends_its_span(fake: FakeProvider, otel: Otel) -> None:
    """Hostile: the task reading a stream is cancelled mid-body; the close callback ends the
    span with ``error.type=cancelled`` and the connection is dropped."""
    fake.script("m", Behavior(chunks=50, chunk_interval=0.05))
    async with salvo.Client(config=config(fake, "m")) as client:
        stream = await client.acompletion("m", MSGS, stream=True)

        async def read() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(read())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (rec,) = fake.records_for("m")
        assert (await fake.wait_until_closed(rec, timeout=5)).disconnected is not None
    (span,) = otel.spans()
    assert attrs(span)["error.type"] == "cancelled"
    assert attrs(span)["gen_ai.response.time_to_first_chunk"] > 0


@pytest.mark.parametrize(
    ("provider", "prefix", "base"),
    [
        ("openai", "openai", "openai_base"),
        ("anthropic", "anthropic", "anthropic_base"),
        ("gemini", "gemini", "gemini_base"),  # a stream that ends at EOF, not at a terminator
        ("cohere", "cohere", "cohere_base"),
    ],
)
async def test_stream_spans_of_every_wire_format_end_clean_with_usage(
    fake: FakeProvider, otel: Otel, provider: str, prefix: str, base: str
) -> None:
    usage = Behavior(chunks=3, prompt_tokens=11, completion_tokens=4, include_usage=True)
    fake.script("m", usage)
    entry = {"model": f"{prefix}/m", "api_base": getattr(fake, base), "api_key": "k"}
    async with salvo.Client(config={"model_list": [{"model_name": "s", "params": entry}]}) as c:
        stream = await c.acompletion("s", MSGS, stream=True)
        resp = await stream.collect()
        (rec,) = fake.records_for("m")
        assert (await fake.wait_until_closed(rec, timeout=5)).completed is not None
    (span,) = otel.spans()
    a = attrs(span)
    assert resp.usage is not None and resp.usage.prompt_tokens == 11
    assert a["gen_ai.usage.input_tokens"] == 11 and a["gen_ai.usage.output_tokens"] == 4
    assert "error.type" not in a and a["gen_ai.provider.name"]


async def test_a_traced_stream_dropped_unclosed_is_freed_at_once(
    fake: FakeProvider, otel: Otel
) -> None:
    """Hostile: the caller drops a traced stream without closing it. Tracing must not tie
    the stream into a reference cycle: it is freed at once (the cycle collector off), warns,
    gives its limiter slot back, drops its connection and ends its span."""
    import gc

    fake.script("m", Behavior(chunks=20, chunk_interval=0.1))
    cfg = config(fake, "m")
    cfg["model_list"][0]["params"]["max_parallel_requests"] = 1
    async with salvo.Client(config=cfg) as client:
        stream = await client.acompletion("m", MSGS, stream=True)
        limiter = client.route("m", {}).limiter
        assert limiter.in_flight == 1
        gc.disable()
        try:
            with pytest.warns(ResourceWarning, match="Unclosed salvo stream"):
                del stream
        finally:
            gc.enable()
        assert limiter.in_flight == 0
        (span,) = otel.spans()
        assert span.name == "chat m" and "gen_ai.response.time_to_first_chunk" in attrs(span)
        (rec,) = fake.records_for("m")
        assert (await fake.wait_until_closed(rec, timeout=5)).disconnected is not None
