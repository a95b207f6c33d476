"""Vertex AI chat and streaming through the fake, with a real service account: an RSA key made
in the test, assertions signed by google-auth and checked (RS256) at the fake's token endpoint.
Hostile cases: a token endpoint that fails or answers garbage, a token the server stops
accepting, an unknown key, missing settings and the missing extra."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import salvo
from _google_creds import service_account
from salvo import _google_auth
from salvo.testing import Behavior, FakeProvider
from salvo.testing._google_oauth import google_auth_of

MODEL = "vertex_ai/gemini-2.5-flash"
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _fresh_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Token sources are shared per account; each test starts without any."""
    monkeypatch.setattr(_google_auth, "_AUTHS", {})
    for name in ("VERTEXAI_PROJECT", "VERTEXAI_LOCATION", "VERTEXAI_API_BASE",
                 "GOOGLE_APPLICATION_CREDENTIALS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def creds(fake: FakeProvider, tmp_path: Path) -> Path:
    return service_account(fake, tmp_path)


def opts(fake: FakeProvider, creds: Path, **extra: Any) -> dict[str, Any]:
    return {"vertex_credentials": str(creds), "api_base": fake.vertex_base, **extra}


async def test_chat_and_stream_on_vertex_urls_with_one_token(
    fake: FakeProvider, creds: Path, client: salvo.Client
) -> None:
    fake.script("gemini-2.5-flash", Behavior(text="from vertex"))
    resp = await client.acompletion(
        MODEL, MSGS, **opts(fake, creds, vertex_location="europe-west4")
    )
    assert resp.choices[0].message.content == "from vertex"
    assert resp.provider == "vertex_ai" and resp.cost_usd is not None
    stream = await client.acompletion(MODEL, MSGS, stream=True, **opts(fake, creds))
    async with stream:
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "from vertex"
    calls = [r for r in fake.records if r.provider == "vertex_ai"]
    assert calls[0].path == (
        "/v1/projects/test-project/locations/europe-west4/publishers/google/models/"
        "gemini-2.5-flash:generateContent"
    )
    assert calls[1].path.endswith("/locations/us-central1/publishers/google/models/"
                                  "gemini-2.5-flash:streamGenerateContent")  # fmt: skip
    token = calls[0].headers["authorization"]
    assert token.startswith("Bearer ya29.fake-") and calls[1].headers["authorization"] == token
    assert "x-goog-api-key" not in calls[0].headers
    assert google_auth_of(fake).issued == 1


async def test_concurrent_calls_share_one_refresh(
    fake: FakeProvider, creds: Path, client: salvo.Client
) -> None:
    fake.script("gemini-2.5-flash", Behavior(latency=0.01))
    outs = await asyncio.gather(*[client.acompletion(MODEL, MSGS, **opts(fake, creds))
                                  for _ in range(12)])  # fmt: skip
    assert len(outs) == 12
    assert google_auth_of(fake).issued == 1
    assert len([r for r in fake.records if r.path == "/token"]) == 1


async def test_token_near_expiry_is_refreshed_before_use(
    fake: FakeProvider, creds: Path, client: salvo.Client
) -> None:
    google_auth_of(fake).token_lifetime = 200  # under the 225 s margin: stale at once
    for _ in range(3):
        await client.acompletion(MODEL, MSGS, **opts(fake, creds))
    assert google_auth_of(fake).issued == 3


async def test_token_the_server_stops_accepting_is_replaced(
    fake: FakeProvider, creds: Path, client: salvo.Client
) -> None:
    await client.acompletion(MODEL, MSGS, **opts(fake, creds))
    google_auth_of(fake).expire_tokens()  # server-side expiry the client cannot see
    resp = await client.acompletion(MODEL, MSGS, **opts(fake, creds))
    assert resp.choices[0].message.content
    stream = await client.acompletion(MODEL, MSGS, stream=True, **opts(fake, creds))
    await stream.aclose()
    statuses = [(r.path.rsplit(":", 1)[-1], r.status) for r in fake.records]
    assert statuses == [
        ("/token", 200),
        ("generateContent", 200),
        ("generateContent", 401),
        ("/token", 200),
        ("generateContent", 200),
        ("streamGenerateContent", 200),
    ]


async def test_token_endpoint_5xx_is_retried(
    fake: FakeProvider, creds: Path, client: salvo.Client
) -> None:
    google_auth_of(fake).fail_next = [(500, b'{"error": "internal_failure"}')] * 2
    resp = await client.acompletion(MODEL, MSGS, **opts(fake, creds))
    assert resp.choices[0].message.content
    assert [r.status for r in fake.records if r.path == "/token"] == [500, 500, 200]


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        ((500, b"oops"), salvo.ServerError, "HTTP 500"),
        ((200, b"<html>not json</html>"), salvo.ServerError, "not a token response"),
        ((200, b'{"access_token": ""}'), salvo.ServerError, "no access_token"),
        ((400, b'{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}'),
         salvo.AuthenticationError, "invalid_grant: Invalid JWT Signature."),
    ],
)  # fmt: skip
async def test_token_endpoint_failures_are_clear_errors(
    fake: FakeProvider, creds: Path, client: salvo.Client, answer: Any, error: Any, text: str
) -> None:
    google_auth_of(fake).fail_next = [answer] * 20
    with pytest.raises(error, match=text) as info:
        await client.acompletion(MODEL, MSGS, max_retries=0, **opts(fake, creds))
    assert "token endpoint" in str(info.value) and "ya29" not in str(info.value)
    assert not [r for r in fake.records if r.provider == "vertex_ai"]


async def test_unregistered_key_is_refused_by_signature(
    fake: FakeProvider, tmp_path: Path, client: salvo.Client
) -> None:
    other = service_account(fake, tmp_path, key_id="rogue", register=False)
    with pytest.raises(salvo.AuthenticationError, match="Invalid JWT Signature"):
        await client.acompletion(MODEL, MSGS, **opts(fake, other))


async def test_missing_settings_fail_before_any_request(
    fake: FakeProvider, tmp_path: Path, client: salvo.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(salvo.ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        await client.acompletion(MODEL, MSGS, api_base=fake.vertex_base)
    bad = tmp_path / "user.json"
    bad.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}))
    with pytest.raises(salvo.ConfigError, match="service_account"):
        await client.acompletion(MODEL, MSGS, vertex_credentials=str(bad))
    creds = service_account(fake, tmp_path)
    info = json.loads(creds.read_text())
    del info["project_id"]
    with pytest.raises(salvo.ConfigError, match="VERTEXAI_PROJECT"):
        await client.acompletion(MODEL, MSGS, vertex_credentials=info)
    monkeypatch.setenv("VERTEXAI_PROJECT", "from-env")
    monkeypatch.setenv("VERTEXAI_LOCATION", "asia-east1")
    monkeypatch.setenv("VERTEXAI_API_BASE", fake.vertex_base)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    assert fake.records == []
    await client.acompletion(MODEL, MSGS)
    assert fake.records[-1].path.startswith("/v1/projects/from-env/locations/asia-east1/")


async def test_without_the_extra_a_config_error_names_it(
    fake: FakeProvider, creds: Path, client: salvo.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "google.auth", None)
    with pytest.raises(salvo.ConfigError, match=r"salvo-llm\[vertex\]"):
        await client.acompletion(MODEL, MSGS, **opts(fake, creds))
    assert fake.records == []


async def test_tokens_and_keys_are_never_logged_or_shown(
    fake: FakeProvider, creds: Path, client: salvo.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.acompletion(MODEL, MSGS, **opts(fake, creds))
    token = fake.records[-1].headers["authorization"].split()[1]
    key = json.loads(creds.read_text())["private_key"]
    dep = client.options(MODEL, opts(fake, creds)).dep
    shown = " ".join([caplog.text, repr(dep), repr(dep.auth), str(client.config)])
    assert token not in shown and key[40:80] not in shown


def test_import_salvo_does_not_import_google_auth() -> None:
    code = "import sys, salvo; print('google.auth' in sys.modules, 'cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


async def test_a_call_cancelled_during_the_token_exchange_closes_it(
    fake: FakeProvider, creds: Path, client: salvo.Client
) -> None:
    google_auth_of(fake).latency = 30
    task = asyncio.ensure_future(client.acompletion(MODEL, MSGS, **opts(fake, creds)))
    while not [r for r in fake.records if r.path == "/token"]:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    exchange = next(r for r in fake.records if r.path == "/token")
    await fake.wait_until_closed(exchange, timeout=5)
    assert exchange.disconnected is not None and exchange.completed is None
    google_auth_of(fake).latency = 0  # the next call is not stuck behind the cancelled one
    assert (await client.acompletion(MODEL, MSGS, **opts(fake, creds))).choices


async def test_closing_a_vertex_stream_early_closes_its_connection(
    fake: FakeProvider, creds: Path, client: salvo.Client
) -> None:
    fake.script("gemini-2.5-flash", Behavior(chunks=6, chunk_interval=0.5, text="a b c d e f"))
    stream = await client.acompletion(MODEL, MSGS, stream=True, **opts(fake, creds))
    async with stream:
        async for _ in stream:
            break
    record = fake.records_for("gemini-2.5-flash")[-1]
    await fake.wait_until_closed(record, timeout=5)
    assert record.disconnected is not None and record.completed is None


async def test_token_endpoint_that_hangs_up_is_a_connection_error(
    tmp_path: Path, client: salvo.Client
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"access_tok')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, FakeProvider() as fake:
        path = service_account(fake, tmp_path)
        info = json.loads(path.read_text())
        info["token_uri"] = f"http://127.0.0.1:{port}/token"
        with pytest.raises(salvo.TransportError) as exc:
            await client.acompletion(MODEL, MSGS, max_retries=1, vertex_credentials=info,
                                     api_base=fake.vertex_base)  # fmt: skip
        assert "ya29" not in str(exc.value) and "PRIVATE KEY" not in str(exc.value)
        assert not [r for r in fake.records if r.provider == "vertex_ai"]
