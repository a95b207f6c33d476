"""``/metrics`` and the access log of ``salvo serve``, after known traffic through the fake."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _serve import salvo_serve
from salvo.testing import Behavior, FakeProvider
from test_proxy_support import MASTER_KEY, UPSTREAM_KEY, USER, stack


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scraped: dict[Any, float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: aiohttp.ClientSession, url: str, key: str | None = MASTER_KEY) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.get(url + "/metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


def any_model(monkeypatch: pytest.MonkeyPatch) -> Any:
    def configure(fake: FakeProvider, config: dict[str, Any]) -> None:
        config["salvo_settings"] = {"allow_any_model": True}
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_BASE", fake.openai_base)
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-local-0123456789")

    return configure


async def test_metrics_count_known_traffic(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"slow": {"model": "openai/slow-model"}, "flaky": {"model": "openai/flaky"}}
    async with stack(configure=any_model(monkeypatch), extra_models=extra) as s:
        s.fake.script("gpt-4o-mini", Behavior(prompt_tokens=10, completion_tokens=4))
        s.fake.script("slow-model", Behavior(latency=5.0))
        s.fake.script(
            "flaky", [Behavior(status=503), Behavior(prompt_tokens=1, completion_tokens=1)]
        )
        s.fake.script("broken", Behavior(status=400, error_message="no"))
        caplog.set_level(logging.INFO, logger="salvo.proxy.access")
        for _ in range(3):
            await s.oai.chat.completions.create(model="fast", messages=USER)
        stream = await s.oai.chat.completions.create(
            model="fast", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        async for _ in stream:
            pass
        race = await s.http.post(
            s.url + "/v1/chat/completions",
            json={"model": "fast,slow", "messages": USER, "fastest_response": True},
            headers=s.auth(),
        )
        assert race.status == 200
        await s.oai.chat.completions.create(model="flaky", messages=USER)
        # a model outside the config, under allow_any_model: labelled "other"
        with pytest.raises(openai.BadRequestError):
            await s.oai.chat.completions.create(
                model="openai_compatible/broken", messages=USER, extra_body={}
            )
        async with s.http.get(s.url + "/metrics") as resp:
            assert resp.status == 401  # the master key is needed
        text = await scrape(s.http, s.url)
        assert UPSTREAM_KEY not in text and "Say hi" not in text
        m = samples(text)
        fast = {"model": "fast", "provider": "openai"}
        assert value(m, "salvo_requests_total", **fast, status="200") == 5  # 3 + stream + race
        assert value(m, "salvo_requests_total", model="flaky", provider="openai", status="200") == 1
        other = {"model": "other", "provider": "openai_compatible"}
        assert value(m, "salvo_requests_total", **other, status="400") == 1
        # 3 answers of 10 + 4, the stream's final usage chunk, the race winner's answer
        (stream_rec,) = [r for r in s.fake.records_for("gpt-4o-mini") if r.stream]
        assert stream_rec.body["stream_options"] == {"include_usage": True}
        assert value(m, "salvo_input_tokens_total", **fast) == 50
        assert value(m, "salvo_output_tokens_total", **fast) == 20
        assert value(m, "salvo_race_wins_total", model="fast") == 1
        assert value(m, "salvo_retries_total", model="flaky", provider="openai") == 1
        assert value(m, "salvo_time_to_first_token_seconds_count", **fast) == 1
        assert value(m, "salvo_request_duration_seconds_count", **fast) == 5
        assert value(m, "salvo_upstream_duration_seconds_count", **fast) == 5
        assert value(m, "salvo_limiter_wait_seconds_count", **fast) == 5
        assert value(m, "salvo_proxy_overhead_seconds_count") == 7
        assert value(m, "salvo_requests_in_flight") == 0
        assert value(m, "salvo_cost_usd_total", **fast) > 0  # gpt-4o-mini has a price
        lines = [r for r in caplog.records if r.name == "salvo.proxy.access"]
        assert len(lines) == 7
        for rec in lines:
            assert UPSTREAM_KEY not in rec.getMessage() and MASTER_KEY not in rec.getMessage()
            assert "Say hi" not in rec.getMessage()
        first = lines[0].salvo_request  # type: ignore[attr-defined]
        assert first["model"] == "fast" and first["status"] == 200
        assert first["input_tokens"] == 10 and first["output_tokens"] == 4
        assert first["route"] == "/v1/chat/completions" and first["method"] == "POST"


async def test_metrics_public_needs_no_key() -> None:
    async with stack(settings={"metrics_public": True}) as s:
        text = await scrape(s.http, s.url, key=None)
        assert "salvo_requests_in_flight" in text


async def test_metrics_public_must_be_a_bool() -> None:
    import salvo

    with pytest.raises(salvo.ConfigError, match="metrics_public"):
        async with stack(settings={"metrics_public": "yes"}):
            pass


async def test_the_label_set_stays_bounded_under_allow_any_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hostile: a client sends many made-up model names; they all land under "other"."""
    async with stack(configure=any_model(monkeypatch)) as s:
        for i in range(20):
            await s.oai.chat.completions.create(
                model=f"openai_compatible/made-up-{i}", messages=USER
            )
        m = samples(await scrape(s.http, s.url))
        models = {dict(labels).get("model") for name, labels in m if name == "salvo_requests_total"}
        assert models == {"other"}
        other = {"model": "other", "provider": "openai_compatible"}
        assert value(m, "salvo_requests_total", **other, status="200") == 20


@pytest.mark.parametrize("workers", [1, 2])
async def test_serve_metrics_add_up_across_workers(tmp_path: Path, workers: int) -> None:
    n = 20
    async with FakeProvider() as fake:
        fake.script("gpt-4o-mini", Behavior(prompt_tokens=3, completion_tokens=2))
        path = tmp_path / "config.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                model_list:
                  - model_name: fast
                    params:
                      {{model: openai/gpt-4o-mini, api_base: "{fake.openai_base}", api_key: k}}
                general_settings: {{master_key: cli-key}}
                """
            )
        )
        args = ["--config", str(path), "--port", "0", "--workers", str(workers)]
        async with salvo_serve(*args, "--log-format", "json") as served:
            assert served.line.startswith("salvo proxy listening on"), served.line
            url = served.url
            body = {"model": "fast", "messages": USER}
            auth = {"Authorization": "Bearer cli-key"}
            for _ in range(n):  # a new connection each: the kernel spreads them over workers
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(url + "/v1/chat/completions", json=body, headers=auth) as resp,
                ):
                    assert resp.status == 200
            for _ in range(4):  # whichever worker answers, the sums are the same
                async with aiohttp.ClientSession() as http:
                    m = samples(await scrape(http, url, key="cli-key"))
                fast = {"model": "fast", "provider": "openai"}
                assert value(m, "salvo_requests_total", **fast, status="200") == n
                assert value(m, "salvo_input_tokens_total", **fast) == 3 * n
                assert value(m, "salvo_output_tokens_total", **fast) == 2 * n
                assert value(m, "salvo_request_duration_seconds_count", **fast) == n
    err = served.err
    assert served.proc.returncode == 0, err.decode()
    records = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
    access = [r for r in records if r["logger"] == "salvo.proxy.access"]
    assert len(access) == n
    assert {r["model"] for r in access} == {"fast"}
    assert all(r["status"] == 200 and r["input_tokens"] == 3 for r in access)
    assert "cli-key" not in err.decode() and "Say hi" not in err.decode()


# -- pass-through streams: spans and tokens ------------------------------------------------


async def relay(s: Any, **body: Any) -> str:
    payload = {"model": "fast", "messages": USER, "stream": True, **body}
    async with s.http.post(s.url + "/v1/chat/completions", json=payload, headers=s.auth()) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_passthrough_stream_tokens_from_the_final_usage_chunk(otel: Any) -> None:
    usage = Behavior(chunks=5, prompt_tokens=9, completion_tokens=5, first_chunk_delay=0.1)
    async with stack(settings={"stream_include_usage": True}) as s:
        s.fake.script("gpt-4o-mini", usage)
        text = await relay(s)
        assert '"usage"' in text and text.rstrip().endswith("data: [DONE]")
        (rec,) = s.fake.records
        assert rec.body["stream_options"] == {"include_usage": True}  # the proxy asked
        await relay(s, stream_options={"include_usage": False})  # the client's choice stands
        assert s.fake.records[1].body["stream_options"] == {"include_usage": False}
        m = samples(await scrape(s.http, s.url))
    spans = [sp for sp in otel.spans() if sp.name == "chat gpt-4o-mini"]
    assert len(spans) == 2
    first = dict(spans[0].attributes or {})
    assert first["gen_ai.usage.input_tokens"] == 9 and first["gen_ai.usage.output_tokens"] == 5
    assert first["gen_ai.response.time_to_first_chunk"] >= 0.1
    assert first["gen_ai.request.stream"] is True
    assert "gen_ai.usage.input_tokens" not in dict(spans[1].attributes or {})  # none sent: none
    fast = {"model": "fast", "provider": "openai"}
    assert value(m, "salvo_input_tokens_total", **fast) == 9
    assert value(m, "salvo_time_to_first_token_seconds_count", **fast) == 2


async def test_passthrough_stream_without_the_setting_is_untouched() -> None:
    async with stack() as s:
        await relay(s)
        assert "stream_options" not in s.fake.records[0].body


async def test_broken_passthrough_stream_ends_its_span_with_an_error(
    otel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Hostile: the upstream resets the connection mid-stream."""
    caplog.set_level(logging.INFO, logger="salvo.proxy.access")
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(chunks=6, fault="reset_mid_body"))
        text = await relay(s)
        assert "upstream_stream" in text
        m = samples(await scrape(s.http, s.url))
    (span,) = [sp for sp in otel.spans() if sp.name == "chat gpt-4o-mini"]
    assert dict(span.attributes or {})["error.type"] == "upstream_stream"
    assert value(m, "salvo_requests_total", model="fast", provider="openai", status="200") == 1
    (line,) = [r for r in caplog.records if r.name == "salvo.proxy.access"]
    assert line.salvo_request["model"] == "fast"  # type: ignore[attr-defined]


async def test_client_gone_mid_stream_ends_the_span_as_cancelled(otel: Any) -> None:
    """Hostile: the client disconnects while the proxy relays a slow stream."""
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(chunks=50, chunk_interval=0.1))
        payload = {"model": "fast", "messages": USER, "stream": True}
        async with s.http.post(
            s.url + "/v1/chat/completions", json=payload, headers=s.auth()
        ) as resp:
            await resp.content.readany()
            resp.close()
        (rec,) = s.fake.records
        assert (await s.fake.wait_until_closed(rec, timeout=5)).disconnected is not None
        for _ in range(100):
            if otel.spans():
                break
            await asyncio.sleep(0.02)
    (span,) = [sp for sp in otel.spans() if sp.name == "chat gpt-4o-mini"]
    assert dict(span.attributes or {})["error.type"] == "cancelled"


async def test_malformed_requests_count_under_none() -> None:
    """Hostile: bodies that are not JSON, or name no model, are counted (status 400) with the
    model label "none"; a wrong key on /metrics is refused."""
    async with stack() as s:
        for body in (b"{not json", b"", b'{"messages": []}', b"[" * 10000):
            async with s.http.post(
                s.url + "/v1/chat/completions", data=body, headers=s.auth()
            ) as resp:
                assert resp.status == 400
        async with s.http.get(s.url + "/metrics", headers=s.auth("sk-wrong")) as resp:
            assert resp.status == 401
        m = samples(await scrape(s.http, s.url))
    assert value(m, "salvo_requests_total", model="none", provider="none", status="400") == 4


async def test_without_prometheus_client_metrics_says_which_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from salvo.proxy import _metrics

    monkeypatch.setattr(_metrics, "available", lambda: False)
    async with stack() as s:
        await s.oai.chat.completions.create(model="fast", messages=USER)  # still served
        async with s.http.get(s.url + "/metrics", headers=s.auth()) as resp:
            assert resp.status == 501
            assert "salvo-llm[metrics]" in (await resp.json())["error"]["message"]


def test_one_logging_setup_for_both_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """``--log-format`` and ``--log-level`` drive one handler per logger: configured twice,
    each logger still has one, in the last format, from the last level."""
    from salvo.proxy import _log

    loggers = [logging.getLogger(n) for n in ("salvo", "aiohttp")]
    saved = [(lg.level, list(lg.handlers)) for lg in loggers]
    try:
        _log.configure("json", "WARNING")
        _log.configure("text", "INFO")
        _log.configure("json", "WARNING")
        for lg in loggers:
            (handler,) = [h for h in lg.handlers if h not in saved[loggers.index(lg)][1]]
            assert isinstance(handler.formatter, _log.JSONFormatter)
            assert lg.level == logging.WARNING
        _log.ACCESS_LOG.info("hidden at WARNING")
        logging.getLogger("salvo.proxy").warning("POST /x answered %d", 502)
        (line,) = capsys.readouterr().err.splitlines()
        rec = json.loads(line)
        assert (rec["level"], rec["logger"]) == ("WARNING", "salvo.proxy")
        assert rec["message"] == "POST /x answered 502"
        with pytest.raises(ValueError, match="log format"):
            _log.configure("xml")
    finally:
        for lg, (level, handlers) in zip(loggers, saved, strict=True):
            lg.handlers[:] = handlers
            lg.setLevel(level)
