"""OpenTelemetry spans and metrics, through the SDK's in-memory exporter and metric reader,
checked against the fake provider's own records of each request."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

import salvo
from _config_helpers import openai_models
from _otel_helpers import Otel
from salvo import _otel
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "a secret prompt"}]
DURATION = "gen_ai.client.operation.duration"


def config(fake: FakeProvider, *names: str) -> dict[str, Any]:
    return openai_models(fake, names, api_key="sk-secret-key-1")


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def no_secrets(spans: list[ReadableSpan]) -> None:
    for span in spans:
        text = repr(attrs(span)) + repr([(e.name, dict(e.attributes or {})) for e in span.events])
        assert "sk-secret-key-1" not in text
        assert "a secret prompt" not in text


async def test_race_of_three_one_winner_two_cancelled_losers(
    fake: FakeProvider, otel: Otel
) -> None:
    fake.script("fast", Behavior(text="hi", prompt_tokens=11, completion_tokens=3))
    fake.script("mid", Behavior(latency=5.0))
    fake.script("slow", Behavior(latency=5.0))
    async with salvo.Client(config=config(fake, "fast", "mid", "slow")) as client:
        resp = await client.arace(["fast", "mid", "slow"], MSGS, max_tokens=20, temperature=0.5)
    assert resp.model.endswith("fast")
    spans = otel.spans()
    (race,) = [s for s in spans if s.name == "race"]
    calls = {attrs(s)["salvo.model"]: s for s in spans if s.kind is SpanKind.CLIENT}
    assert set(calls) == {"fast", "mid", "slow"} and len(spans) == 4
    for name, span in calls.items():
        assert span.parent is not None and span.parent.span_id == race.context.span_id
        assert span.context.trace_id == race.context.trace_id
        (rec,) = fake.records_for(name)
        a = attrs(span)
        assert span.name == f"chat {rec.body['model']}"
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == rec.body["model"] == name
        assert a["gen_ai.request.max_tokens"] == rec.body["max_tokens"] == 20
        assert a["gen_ai.request.temperature"] == rec.body["temperature"] == 0.5
        assert a["gen_ai.request.stream"] is False
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == fake.port
    won, mid, slow = calls["fast"], calls["mid"], calls["slow"]
    assert attrs(won)["salvo.race.outcome"] == "won"
    assert attrs(won)["gen_ai.response.id"] == resp.id
    assert attrs(won)["gen_ai.response.model"] == resp.model
    assert attrs(won)["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs(won)["gen_ai.usage.input_tokens"] == 11
    assert attrs(won)["gen_ai.usage.output_tokens"] == 3
    for loser in (mid, slow):
        a = attrs(loser)
        assert a["salvo.race.outcome"] == "lost"
        assert "error.type" not in a and "gen_ai.response.id" not in a
        assert loser.end_time is not None and won.end_time is not None
        # ended when cancelled: right after the winner, long before their 5 s answer
        assert loser.end_time >= won.end_time - 1_000_000
        assert loser.end_time - loser.start_time < 2_000_000_000
    for name in ("mid", "slow"):
        (rec,) = fake.records_for(name)
        closed = await fake.wait_until_closed(rec)
        assert closed.disconnected is not None and closed.completed is None
    assert attrs(race)["salvo.race.winners"] == ("fast",)
    assert attrs(race)["salvo.fanout.models"] == ("fast", "mid", "slow")
    assert race.end_time is not None and race.end_time >= max(
        s.end_time or 0 for s in calls.values()
    )
    no_secrets(spans)
    (win,) = otel.points("salvo.race.wins")
    assert win.value == 1 and win.attributes["salvo.model"] == "fast"
    durations = sorted(
        (p.attributes["gen_ai.request.model"], p.attributes.get("error.type"), p.count)
        for p in otel.points(DURATION)
    )
    assert durations == [("fast", None, 1), ("mid", "cancelled", 1), ("slow", "cancelled", 1)]


async def test_failed_call_has_error_type_and_retries_as_events(
    fake: FakeProvider, otel: Otel
) -> None:
    fake.script("m", [Behavior(status=503), Behavior(status=400, error_message="bad")])
    policy = salvo.RetryPolicy(wait=False)
    async with salvo.Client(config=config(fake, "m"), retry_policy=policy) as client:
        with pytest.raises(salvo.BadRequestError):
            await client.acompletion("m", MSGS)
    assert [r.status for r in fake.records_for("m")] == [503, 400]
    (span,) = otel.spans()
    assert attrs(span)["error.type"] == "BadRequestError"
    assert span.status.status_code is StatusCode.ERROR
    (retry,) = [e for e in span.events if e.name == "salvo.retry"]
    assert dict(retry.attributes or {}) == {
        "salvo.retry.attempt": 2,
        "error.type": "ServerError",
        "http.response.status_code": 503,
    }
    (point,) = otel.points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == "BadRequestError" and point.count == 1
    (retries,) = otel.points("salvo.retries")
    assert retries.value == 1


async def test_stream_span_has_time_to_first_chunk_and_ends_with_the_stream(
    fake: FakeProvider, otel: Otel
) -> None:
    fake.script(
        "m",
        Behavior(
            first_chunk_delay=0.2,
            chunks=3,
            chunk_interval=0.05,
            prompt_tokens=5,
            completion_tokens=3,
            include_usage=True,
        ),
    )
    async with salvo.Client(config=config(fake, "m")) as client:
        stream = await client.acompletion("m", MSGS, stream=True)
        assert otel.spans() == []  # open while the stream is
        async for _ in stream:
            pass
        await stream.aclose()
    (span,) = otel.spans()
    a = attrs(span)
    assert a["gen_ai.request.stream"] is True
    assert 0.2 <= a["gen_ai.response.time_to_first_chunk"] < span_seconds(span)
    assert span_seconds(span) >= 0.2 + 0.05  # it covers the chunks after the first
    assert a["gen_ai.usage.input_tokens"] == 5 and a["gen_ai.usage.output_tokens"] == 3
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")
    }
    assert tokens["input"].sum == 5 and tokens["output"].sum == 3


def span_seconds(span: ReadableSpan) -> float:
    assert span.end_time is not None and span.start_time is not None
    return (span.end_time - span.start_time) / 1e9


async def test_a_stream_closed_early_still_ends_its_span(fake: FakeProvider, otel: Otel) -> None:
    fake.script("m", Behavior(chunks=50, chunk_interval=0.5))
    async with salvo.Client(config=config(fake, "m")) as client:
        stream = await client.acompletion("m", MSGS, stream=True)
        await stream.__anext__()
        await stream.aclose()
    (span,) = otel.spans()
    assert "gen_ai.response.time_to_first_chunk" in attrs(span)
    (rec,) = fake.records_for("m")
    assert (await fake.wait_until_closed(rec)).disconnected is not None


async def test_gather_and_batch_parents(fake: FakeProvider, otel: Otel) -> None:
    fake.script("bad", Behavior(status=400))
    async with salvo.Client(config=config(fake, "a", "bad")) as client:
        await client.agather_all(["a", "bad"], MSGS)
        await client.abatch_completion("a", [MSGS, MSGS, MSGS])
    spans = otel.spans()
    (gather,) = [s for s in spans if s.name == "gather"]
    (batch,) = [s for s in spans if s.name == "batch"]
    kids = [s for s in spans if s.parent is not None and s.parent.span_id == gather.context.span_id]
    assert sorted(attrs(s)["salvo.model"] for s in kids) == ["a", "bad"]
    assert all("salvo.race.outcome" not in attrs(s) for s in kids)
    (bad,) = [s for s in kids if attrs(s)["salvo.model"] == "bad"]
    assert attrs(bad)["error.type"] == "BadRequestError"
    items = [s for s in spans if s.parent is not None and s.parent.span_id == batch.context.span_id]
    assert len(items) == 3


async def test_propagation_is_off_by_default_and_carries_the_call_span(
    fake: FakeProvider, otel: Otel
) -> None:
    async with salvo.Client(config=config(fake, "m")) as client:
        await client.acompletion("m", MSGS)
    async with salvo.Client(config=config(fake, "m"), otel_propagate=True) as client:
        await client.acompletion("m", MSGS)
    first, second = fake.records_for("m")
    assert "traceparent" not in first.headers
    _, span = otel.spans()
    ctx = span.context
    assert (
        second.headers["traceparent"]
        == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    )


async def test_content_only_when_asked(fake: FakeProvider, otel: Otel) -> None:
    fake.script("m", Behavior(text="the answer"))
    async with salvo.Client(config=config(fake, "m"), capture_content=True) as client:
        await client.acompletion("m", MSGS)
    (span,) = otel.spans()
    assert "a secret prompt" in attrs(span)["gen_ai.input.messages"]
    assert "the answer" in attrs(span)["gen_ai.output.messages"]
    assert "sk-secret-key-1" not in repr(attrs(span))


async def test_limiter_waits_are_events(fake: FakeProvider, otel: Otel) -> None:
    fake.script("m", Behavior(latency=0.2))
    cfg = config(fake, "m")
    cfg["model_list"][0]["params"]["max_parallel_requests"] = 1
    async with salvo.Client(config=cfg) as client:
        await asyncio.gather(client.acompletion("m", MSGS), client.acompletion("m", MSGS))
    waits = [e for s in otel.spans() for e in s.events if e.name == "salvo.limiter.wait"]
    assert len(waits) == 1 and dict(waits[0].attributes or {})["salvo.limiter.wait_s"] >= 0.15
    (point,) = otel.points("salvo.limiter.wait.duration")
    assert point.count == 2


async def test_cancellation_at_random_points_ends_every_span(
    fake: FakeProvider, otel: Otel
) -> None:
    """Hostile: races, streams and calls cancelled at random moments; every span started is
    ended exactly once, and every connection the fake saw is closed."""
    rng = random.Random(7)
    fake.script("a", Behavior(latency=0.01, chunks=5, chunk_interval=0.01))
    fake.script("b", Behavior(latency=0.03, chunks=5, chunk_interval=0.01))
    async with salvo.Client(config=config(fake, "a", "b")) as client:

        async def one(i: int) -> None:
            kind = i % 3
            if kind == 0:
                await client.arace(["a", "b"], MSGS)
            elif kind == 1:
                async with await client.acompletion("a", MSGS, stream=True) as s:
                    async for _ in s:
                        pass
            else:
                await client.acompletion("b", MSGS)

        for i in range(30):
            task = asyncio.create_task(one(i))
            await asyncio.sleep(rng.uniform(0, 0.06))
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
    for rec in fake.records:
        await fake.wait_until_closed(rec)
    spans = otel.spans()
    calls = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(calls) >= len(fake.records)  # a span for each request sent (and some not sent)
    ids = [s.context.span_id for s in spans]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(otel.started.ids)
    for span in calls:
        a = attrs(span)
        done = "gen_ai.response.id" in a or "gen_ai.response.time_to_first_chunk" in a
        if not done:  # no answer: cancelled, or a race's loser
            assert a.get("error.type") == "cancelled" or a.get("salvo.race.outcome") == "lost"


def test_nothing_happens_without_the_api() -> None:
    """With opentelemetry not importable, salvo makes its calls and imports nothing of it."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if not installed
        import salvo
        from salvo import _otel
        from salvo.testing import FakeProvider

        async def main():
            async with FakeProvider() as fake:
                async with salvo.Client() as c:
                    r = await c.arace(["openai/a", "openai/b"], [{"role": "user", "content": "x"}],
                                      api_base=fake.openai_base, api_key="k")
                    assert r.content
            assert _otel.current() is None
            try:
                salvo.Client(otel_propagate=True)
            except salvo.ConfigError as exc:
                assert "salvo-llm[otel]" in str(exc)
            else:
                raise SystemExit("otel_propagate without the API should be refused")
            print("ok", sorted(m for m in sys.modules if m.startswith("opentelemetry.")))

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok []"


def test_api_without_sdk_records_nothing() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        import salvo
        from salvo import _otel
        from salvo.testing import FakeProvider

        async def main():
            async with FakeProvider() as fake:
                async with salvo.Client() as c:
                    await c.acompletion("openai/a", [{"role": "user", "content": "x"}],
                                        api_base=fake.openai_base, api_key="k")
            assert "opentelemetry.trace" in sys.modules  # the API was looked at
            assert _otel.current() is None  # and found without an SDK
            print("ok")

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


async def test_readme_console_exporter_example_runs(fake: FakeProvider) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Observability", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "OPENAI_BASE_URL": fake.openai_base, "OPENAI_API_KEY": "sk-readme-key-1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert '"name": "race"' in text and '"name": "chat gpt-4o-mini"' in text
    assert '"salvo.race.outcome": "won"' in text
    assert "gen_ai.client.operation.duration" in text and "gen_ai.client.token.usage" in text
    assert "sk-readme-key-1" not in text


async def test_stream_race_winner_won_and_ends_with_its_stream(
    fake: FakeProvider, otel: Otel
) -> None:
    fake.script("fast", Behavior(chunks=3, chunk_interval=0.05))
    fake.script("slow", Behavior(first_chunk_delay=5.0))
    async with salvo.Client(config=config(fake, "fast", "slow")) as client:
        stream = await client.arace(["fast", "slow"], MSGS, stream=True)
        spans = otel.spans()
        assert {s.name for s in spans} == {"race", "chat slow"}  # the winner is still open
        (loser,) = [s for s in spans if s.name == "chat slow"]
        assert attrs(loser)["salvo.race.outcome"] == "lost"
        await stream.collect()
    (won,) = [s for s in otel.spans() if s.name == "chat fast"]
    assert attrs(won)["salvo.race.outcome"] == "won"
    assert attrs(won)["gen_ai.response.time_to_first_chunk"] < span_seconds(won)


async def test_first_k_helper_and_hedges(fake: FakeProvider, otel: Otel) -> None:
    """The hooks a first_k / hedging implementation calls: ``@fanout("first_k")`` marks the
    returned results won, ``hedge_started`` counts on the parent and in the metrics."""
    from salvo._observe import fanout, hedge_started

    fake.script("slow", Behavior(latency=5.0))

    @fanout("first_k")
    async def first_k(client: salvo.Client, models: list[str], k: int) -> list[Any]:
        tasks = [
            asyncio.create_task(client.complete_with(client.options(m, {}), MSGS, {}))
            for m in models
        ]
        hedge_started(models[-1])
        done: list[Any] = []
        for next_done in asyncio.as_completed(tasks):
            done.append(await next_done)
            if len(done) == k:
                break
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return done

    async with salvo.Client(config=config(fake, "a", "b", "slow")) as client:
        got = await first_k(client, ["a", "b", "slow"], 2)
    assert len(got) == 2
    spans = otel.spans()
    (parent,) = [s for s in spans if s.name == "first_k"]
    outcomes = {attrs(s)["salvo.model"]: attrs(s)["salvo.race.outcome"] for s in spans if s.parent}
    assert outcomes == {"a": "won", "b": "won", "slow": "lost"}
    assert attrs(parent)["salvo.hedges"] == 1
    (hedges,) = otel.points("salvo.hedges")
    assert hedges.value == 1 and hedges.attributes["salvo.model"] == "slow"


async def test_embeddings_span(fake: FakeProvider, otel: Otel) -> None:
    async with salvo.Client(config=config(fake, "e")) as client:
        await client.aembedding("e", ["one", "two"])
    (span,) = otel.spans()
    a = attrs(span)
    assert span.name == "embeddings e" and a["gen_ai.operation.name"] == "embeddings"
    assert "gen_ai.request.stream" not in a and a["gen_ai.usage.input_tokens"] > 0


def test_a_trace_that_never_runs_starts_no_span(otel: Otel) -> None:
    """A call refused after its trace was made (say, the client belongs to another loop)
    leaves no span open: the span starts when the retry loop does."""
    from salvo import _observe

    client = salvo.Client()
    opts = client.options("openai/m", {"api_base": "http://127.0.0.1:9/v1", "api_key": "k"})
    trace = _observe.start(opts, "chat", {}, MSGS)
    assert trace is not None and trace.span is None
    assert otel.started.ids == []


@pytest.mark.parametrize(
    "fault",
    [
        "reset_before_body",
        "reset_mid_body",
        "truncated_json",
        "html_error",
        "stall",
        "midstream_error",
        "no_terminator",
    ],
)
@pytest.mark.parametrize(("stream", "interval"), [(False, 0.0), (True, 0.0), (True, 0.01)])
async def test_faults_end_spans_with_their_error(
    fake: FakeProvider, otel: Otel, fault: str, stream: bool, interval: float
) -> None:
    """Hostile: the fake misbehaves on the wire; every span ends, with the error's type
    when the call failed, and the connection is closed. (Streams: all at once, where the
    error waits behind the buffered chunks, and chunk by chunk.)"""
    behavior = Behavior(fault=fault, chunks=4, stall_s=5.0, chunk_interval=interval)  # type: ignore[arg-type]
    fake.script("m", behavior)
    async with salvo.Client(
        config=config(fake, "m"),
        max_retries=1,
        timeout=1.0,
        retry_policy=salvo.RetryPolicy(wait=False),
    ) as client:
        try:
            if stream:
                async with await client.acompletion("m", MSGS, stream=True) as s:
                    async for _ in s:
                        pass
            else:
                await client.acompletion("m", MSGS)
        except salvo.SalvoError as exc:
            error: str | None = type(exc).__name__
        else:
            error = None
    for rec in fake.records:
        await fake.wait_until_closed(rec, timeout=5)
    spans = otel.spans()
    assert sorted(s.context.span_id for s in spans) == sorted(otel.started.ids)
    (span,) = spans
    a = attrs(span)
    if error is None:
        assert "error.type" not in a
    else:  # before the first chunk or after it (a stream's failure reaches the caller later)
        assert a["error.type"] == error
        assert len([e for e in span.events if e.name == "salvo.retry"]) == len(fake.records) - 1
    no_secrets(spans)


async def test_soak_with_tracing_on_ends_every_span(
    otel: Otel, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hostile: the soak (batch calls and streams through every fault mode, see test_soak),
    smaller, with spans and metrics recorded. Its own checks still hold, and every span that
    started ended: one per call, each failed call with its error.type. (First-byte limit
    raised: the in-memory exporter keeps every span, so the collector's pauses grow.)"""
    import test_soak

    n, streams = 6000, 400  # enough for the soak's own check: > 1000 "retried then ok"
    monkeypatch.setattr(test_soak, "N", n)
    monkeypatch.setattr(test_soak, "STREAMS", streams)
    monkeypatch.setattr(test_soak, "FIRST_BYTE", 3.0)
    await test_soak.test_soak_every_fault_mode(capsys)
    spans = otel.spans()
    assert len(otel.started.ids) == len(spans)
    assert sorted(s.context.span_id for s in spans) == sorted(otel.started.ids)
    calls = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(calls) == n + streams
    (batch,) = [s for s in spans if s.name == "batch"]
    assert sum(1 for s in calls if s.parent and s.parent.span_id == batch.context.span_id) == n
    failed = [s for s in calls if "error.type" in attrs(s)]
    assert failed and all(s.status.status_code is StatusCode.ERROR for s in failed)
    assert sum(p.count for p in otel.points(DURATION)) == n + streams


def test_global_providers_set_after_the_first_call_are_picked_up() -> None:
    """The user's path: the SDK installed through the API's globals, even after salvo has
    already made calls (and found nothing to report to)."""
    code = textwrap.dedent(
        """
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import salvo
        from salvo.testing import FakeProvider

        async def main():
            async with FakeProvider() as fake:
                kw = dict(api_base=fake.openai_base, api_key="k")
                msgs = [{"role": "user", "content": "x"}]
                async with salvo.Client() as c:
                    await c.acompletion("openai/before", msgs, **kw)
                    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
                    tp = TracerProvider()
                    tp.add_span_processor(SimpleSpanProcessor(exporter))
                    trace.set_tracer_provider(tp)
                    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                    await c.acompletion("openai/after", msgs, **kw)
            names = [s.name for s in exporter.get_finished_spans()]
            data = reader.get_metrics_data()
            scopes = [sm for rm in data.resource_metrics for sm in rm.scope_metrics]
            metric_names = {m.name for sm in scopes for m in sm.metrics}
            print(names, "gen_ai.client.operation.duration" in metric_names)

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['chat after'] True"


def test_provider_reader_falls_back_to_the_public_getter() -> None:
    """Should a future API move its private global, the public getter is used, with its
    default proxy provider counted as none."""
    from opentelemetry.trace import ProxyTracerProvider

    tp = TracerProvider()
    read = _otel._reader(None, "_TRACER_PROVIDER", ProxyTracerProvider, "ProxyTracerProvider")
    assert read() is None
    read = _otel._reader(None, "_TRACER_PROVIDER", lambda: tp, "ProxyTracerProvider")
    assert read() is tp
