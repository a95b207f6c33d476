"""Auth, limits, bad input, error mapping, secrets, and cancellation on client disconnect."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp
import openai
import pytest

from salvo.proxy import ProxyServer
from salvo.testing import Behavior, FakeProvider
from test_proxy_support import MASTER_KEY, UPSTREAM_KEY, USER, Stack, arrival, model_list, stack

ERROR_KEYS = {"message", "type", "param", "code"}
UPSTREAM = {"fast": "gpt-4o-mini", "smart": "gpt-4o", "tog": "meta-llama/Llama-3-8b"}


async def _error(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    assert "x-salvo-overhead-ms" in resp.headers
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    error: dict[str, Any] = body["error"]
    return error


async def _post(s: Stack, path: str, body: Any, **kw: Any) -> aiohttp.ClientResponse:
    headers = kw.pop("headers", s.auth())
    data = (
        body if isinstance(body, bytes) or hasattr(body, "__aiter__") else json.dumps(body).encode()
    )
    return await s.http.post(s.url + path, data=data, headers=headers, **kw)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": MASTER_KEY},
        {"Authorization": f"Basic {MASTER_KEY}"},
        {"Authorization": "Bearer " + MASTER_KEY[:-1]},
        {"Authorization": "Bearer " + MASTER_KEY + "0"},
        {"Authorization": "Bearer ключ"},
    ],
)
async def test_every_route_but_health_needs_the_master_key(headers: dict[str, str]) -> None:
    async with stack() as s:
        body = {"model": "fast", "messages": USER}
        for method, path in [
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/embeddings"),
            ("GET", "/v1/models"),
            ("GET", "/v1/files"),
            ("GET", "/v1/batches"),
            ("GET", "/v1/no-such-route"),
        ]:
            async with s.http.request(method, s.url + path, json=body, headers=headers) as resp:
                error = await _error(resp, 401)
                assert error["code"] == "invalid_api_key"
        for path in ["/health", "/health/liveness", "/health/readiness"]:
            async with s.http.get(s.url + path) as resp:
                assert resp.status == 200
        assert s.fake.records == []


async def test_sdk_with_a_wrong_key_gets_authentication_error() -> None:
    async with stack() as s:
        bad = openai.AsyncOpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0)
        async with bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.chat.completions.create(model="fast", messages=USER)


async def test_readiness_says_ready_while_serving() -> None:
    async with stack() as s:
        async with s.http.get(s.url + "/health/readiness") as resp:
            assert await resp.json() == {
                "status": "ready",
                "config": "loaded",
                "upstream_session": "open",
            }


async def test_oversized_bodies_get_413_in_openai_shape() -> None:
    async with stack(settings={"max_request_size_mb": 0.01}) as s:  # about 10 KB
        big = {"model": "fast", "messages": [{"role": "user", "content": "x" * 20_000}]}
        async with await _post(s, "/v1/chat/completions", big) as resp:
            error = await _error(resp, 413)
        assert error["code"] == "request_too_large"

        async def chunked() -> Any:  # no Content-Length: aiohttp's limit applies while reading
            yield json.dumps(big).encode()

        async with await _post(s, "/v1/embeddings", chunked()) as resp:
            await _error(resp, 413)
        assert s.fake.records == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "could not parse"),
        (b"", "empty"),
        (b"[1, 2]", "could not parse"),
        (b'{"messages": []}', "model parameter"),
        (b'{"model": 5, "messages": []}', "'model' must be a string"),
        (b'{"model": "fast"}', "'messages'"),
        (b'{"model": "fast", "messages": [], "stream": "yes"}', "'stream'"),
        (b'{"model": "tog", "messages": [{"role": "robot", "content": "x"}]}', "role"),
        (b'{"model": "fast,smart", "messages": "hi"}', "messages must be"),
    ],
)
async def test_bad_requests_get_400(body: bytes, fragment: str) -> None:
    async with stack() as s:
        async with await _post(s, "/v1/chat/completions", body) as resp:
            error = await _error(resp, 400)
        assert fragment in error["message"]
        assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "openai/gpt-4o", "fast,nope", "../fast"])
async def test_unknown_models_get_404_model_not_found(model: str) -> None:
    async with stack() as s:
        async with await _post(s, "/v1/chat/completions", {"model": model, "messages": USER}) as r:
            error = await _error(r, 404)
        assert error["code"] == "model_not_found" and error["param"] == "model"
        async with await _post(s, "/v1/embeddings", {"model": model, "input": "x"}) as resp:
            await _error(resp, 400 if "," in model else 404)
        assert s.fake.records == []


@pytest.mark.parametrize(
    ("behavior", "status", "code"),
    [
        (Behavior(status=429, error_message="Rate limit reached"), 429, "rate_limit_exceeded"),
        (
            Behavior(status=400, error_code="context_length_exceeded"),
            400,
            "context_length_exceeded",
        ),
        (Behavior(status=503), 503, None),
        (Behavior(fault="html_error"), 502, None),
        (Behavior(fault="truncated_json"), 502, "upstream_bad"),
        (Behavior(fault="reset_before_body"), 502, "upstream_unreachable"),
    ],
)
async def test_upstream_failures_map_to_statuses(
    behavior: Behavior, status: int, code: str | None
) -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", behavior)
        async with await _post(s, "/v1/chat/completions", {"model": "fast", "messages": USER}) as r:
            error = await _error(r, status)
        assert error["code"] == code


async def test_upstream_errors_never_leak_keys_or_urls() -> None:
    leak = f"Incorrect API key provided: {UPSTREAM_KEY}. See https://x.test/v1?key=abc123secret"
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(status=401, error_message=leak))
        with pytest.raises(openai.AuthenticationError) as info:
            await s.oai.chat.completions.create(model="fast", messages=USER)
        text = json.dumps(info.value.body)
        assert UPSTREAM_KEY not in text and "abc123secret" not in text
        assert "[redacted]" in text
        assert "Traceback" not in text and s.fake.url not in text


async def test_unreachable_upstream_is_502_and_slow_one_is_504() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    extra = {
        "dead": {"model": "openai/gpt-4o-mini", "api_base": dead},
        "slow": {"model": "openai/slow-model", "timeout": 0.05, "max_retries": 0},
    }
    async with stack(extra_models=extra) as s:
        s.fake.script("slow-model", Behavior(latency=5.0))
        async with await _post(s, "/v1/chat/completions", {"model": "dead", "messages": USER}) as r:
            error = await _error(r, 502)
        assert error["code"] == "upstream_unreachable" and dead not in error["message"]
        async with await _post(s, "/v1/chat/completions", {"model": "slow", "messages": USER}) as r:
            error = await _error(r, 504)
        assert error["code"] == "upstream_timeout"
        (record,) = s.fake.records_for("slow-model")
        await s.fake.wait_until_closed(record)
        assert record.disconnected is not None


async def test_unknown_routes_and_methods_use_the_error_shape() -> None:
    async with stack() as s:
        async with s.http.get(s.url + "/v2/what", headers=s.auth()) as resp:
            assert (await _error(resp, 404))["code"] == "unknown_url"
        async with s.http.get(s.url + "/v1/chat/completions", headers=s.auth()) as resp:
            await _error(resp, 405)


async def test_midstream_upstream_error_reaches_the_sdk_as_an_error() -> None:
    async with stack() as s:
        s.fake.script("gpt-4o-mini", Behavior(fault="reset_mid_body", fault_after=2))
        stream = await s.oai.chat.completions.create(model="fast", messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="broke off"):
            async for _ in stream:
                pass
        s.fake.script("gpt-4o-mini", Behavior(fault="no_terminator"))
        stream = await s.oai.chat.completions.create(model="fast", messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="terminator"):
            async for _ in stream:
                pass


async def test_a_stream_past_its_deadline_ends_with_a_timeout_event() -> None:
    extra = {"brief": {"model": "openai/gpt-4o-mini", "timeout": 0.1}}
    async with stack(extra_models=extra) as s:
        s.fake.script("gpt-4o-mini", Behavior(chunks=20, chunk_interval=0.05))
        stream = await s.oai.chat.completions.create(model="brief", messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="ran out of time"):
            async for _ in stream:
                pass
        record = await s.fake.wait_until_closed(s.fake.records[0])
        assert record.disconnected is not None


async def _first_sse_event(resp: aiohttp.ClientResponse) -> bytes:
    buf = b""
    while b"\n\n" not in buf:
        buf += await resp.content.readany()
    return buf


@pytest.mark.parametrize("model", ["fast", "tog", "fast,smart"])
async def test_client_disconnect_mid_stream_closes_upstream_at_once(model: str) -> None:
    async with stack() as s:
        slow = Behavior(chunks=50, chunk_interval=0.2)
        for name in ("gpt-4o-mini", "meta-llama/Llama-3-8b", "gpt-4o"):
            s.fake.script(name, slow)
        body = {"model": model, "messages": USER, "stream": True, "fastest_response": True}
        resp = await _post(s, "/v1/chat/completions", body)
        assert resp.status == 200
        assert (await _first_sse_event(resp)).startswith(b"data: {")
        winner = UPSTREAM[resp.headers.get("x-salvo-model", model)]
        resp.close()  # the client goes away mid-stream
        gone = time.monotonic()
        record = await s.fake.wait_until_closed(s.fake.records_for(winner)[0])
        assert record.completed is None and record.disconnected is not None
        assert record.disconnected - gone < 0.05, record.disconnected - gone
        for other in s.fake.records:  # a race's loser was closed at the winner's first chunk
            assert (await s.fake.wait_until_closed(other)).completed is None


@pytest.mark.parametrize("model", ["fast", "fast,smart"])
async def test_client_disconnect_before_the_answer_cancels_upstream(model: str) -> None:
    async with stack() as s:
        arrived = arrival(s.fake, "gpt-4o-mini", Behavior(latency=5.0))
        body = {"model": model, "messages": USER}
        if "," in model:
            s.fake.script("gpt-4o", Behavior(latency=5.0))
        task = asyncio.create_task(_post(s, "/v1/chat/completions", body))
        await arrived.wait()
        task.cancel()  # aiohttp drops the connection
        with pytest.raises(asyncio.CancelledError):
            await task
        gone = time.monotonic()
        for record in s.fake.records:
            await s.fake.wait_until_closed(record)
            assert record.disconnected is not None
            assert record.disconnected - gone < 0.05


async def test_graceful_shutdown_finishes_in_flight_requests() -> None:
    async with FakeProvider() as fake:
        arrived = arrival(fake, "gpt-4o-mini", Behavior(latency=0.2, text="finished"))
        config = {"model_list": model_list(fake.openai_base), "salvo_settings": {}}
        proxy = ProxyServer(config)
        await proxy.start()
        url = proxy.url
        async with aiohttp.ClientSession() as http:
            body = {"model": "fast", "messages": USER}
            task = asyncio.create_task(http.post(url + "/v1/chat/completions", json=body))
            await arrived.wait()
            await proxy.stop()  # waits for the request in flight
            resp = await task
            assert resp.status == 200
            assert (await resp.json())["choices"][0]["message"]["content"] == "finished"
            with pytest.raises(aiohttp.ClientConnectionError):
                await http.get(url + "/health")
