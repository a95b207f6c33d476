"""Edges of one attempt on the wire (``_call``) no other test pinned down, through the public
seam (``Client.route`` + ``Client.send``) and ``acompletion``: a refused auth token fetched
afresh exactly once, a 400 raised by ``send``, the provider and model named by every transport
error, the first-byte timeout measured from the send (not before it), and a stream that carries
its URL, its deadline and the call's timeout.

Each test stands for a change to the code that no other test noticed (mutation testing,
issue 11). They run on the virtual clock against the fake provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

import salvo
from _virtual_clock import with_sockets
from salvo import HTTPRequest, Route
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": with_sockets})


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as server:
        yield server


def _chat(route: Route, *, stream: bool = False) -> HTTPRequest:
    payload = {"model": route.model, "messages": MSGS, "stream": stream}
    url = f"{route.dep.endpoint.api_base}/chat/completions"
    return HTTPRequest("POST", url, route.dep.headers, msgspec.json.encode(payload))


class TokenAuth:
    """A deployment's auth hook (what a Google deployment carries): a new token each time,
    and ``invalidate`` told which headers were refused."""

    def __init__(self) -> None:
        self.issued = 0
        self.invalidated: list[dict[str, str]] = []

    async def __call__(self, session: object) -> dict[str, str]:
        self.issued += 1
        return {"Authorization": f"Bearer t{self.issued}"}

    def invalidate(self, headers: dict[str, str]) -> None:
        self.invalidated.append(headers)


def _authed(route: Route, auth: TokenAuth) -> Route:
    return Route(
        dataclasses.replace(route.dep, auth=auth),
        timeout=route.timeout,
        max_retries=route.max_retries,
        first_byte_timeout=None,
        stream_idle_timeout=None,
        limiter=route.limiter,
    )


async def test_a_refused_token_is_invalidated_and_fetched_afresh_once(fake: FakeProvider) -> None:
    fake.script("m", [Behavior(status=401), Behavior(text="ok")])
    async with salvo.Client(max_retries=0) as client:  # not the retry loop: 401 is not retried
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        auth = TokenAuth()
        resp = await client.send(_chat(route), _authed(route, auth))
    assert resp.status == 200
    assert auth.invalidated == [{"Authorization": "Bearer t1"}]
    assert [r.headers["authorization"] for r in fake.records] == ["Bearer t1", "Bearer t2"]


async def test_a_fresh_token_refused_too_is_raised(fake: FakeProvider) -> None:
    fake.script("m", [Behavior(status=401), Behavior(status=401), Behavior(text="ok")])
    async with salvo.Client(max_retries=0) as client:
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        auth = TokenAuth()
        with pytest.raises(salvo.AuthenticationError):
            await client.send(_chat(route), _authed(route, auth))
    assert len(fake.records) == 2 and auth.invalidated == [{"Authorization": "Bearer t1"}]


async def test_a_400_is_raised_by_send(fake: FakeProvider) -> None:
    fake.script("m", Behavior(status=400))
    async with salvo.Client() as client:
        route = client.route("openai/m", {"api_base": fake.openai_base, "api_key": "k"})
        with pytest.raises(salvo.BadRequestError) as info:
            await client.send(_chat(route), route)
    assert info.value.status_code == 400


async def test_a_refused_connection_names_provider_model_and_url() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    async with salvo.Client(max_retries=0) as client:
        with pytest.raises(salvo.ConnectionError) as info:
            await client.acompletion("openai/m", MSGS, api_base=base, api_key="k")
    err = info.value
    assert (err.provider, err.model) == ("openai", "m")
    assert f"at {base}/chat/completions for model 'm'" in str(err)


async def test_a_reset_after_the_headers_names_provider_and_model(fake: FakeProvider) -> None:
    fake.script("m", Behavior(fault="reset_before_body"))
    async with salvo.Client(max_retries=0) as client:
        with pytest.raises(salvo.ConnectionError) as info:
            await client.acompletion(
                "openai/m", MSGS, api_base=fake.openai_base, api_key="k", first_byte_timeout=5.0
            )
    err = info.value
    assert (err.provider, err.model) == ("openai", "m")
    assert "openai" in str(err) and "'m'" in str(err)


async def test_a_body_after_a_short_stall_is_within_first_byte_timeout(
    fake: FakeProvider,
) -> None:
    fake.script("m", Behavior(fault="stall", stall_s=0.5, text="late but in time"))
    async with salvo.Client(max_retries=0) as client:
        resp = await client.acompletion(
            "openai/m", MSGS, api_base=fake.openai_base, api_key="k", first_byte_timeout=2.0
        )
    assert resp.content == "late but in time"


async def test_an_oversized_body_after_the_first_bytes_names_the_model(
    fake: FakeProvider,
) -> None:
    fake.script("m", Behavior(text="x" * 5000))
    async with salvo.Client(max_retries=0, max_body_bytes=1000) as client:
        with pytest.raises(salvo.SalvoError, match="max_body_bytes") as info:
            await client.acompletion(
                "openai/m", MSGS, api_base=fake.openai_base, api_key="k", first_byte_timeout=5.0
            )
    assert info.value.model == "m"  # type: ignore[attr-defined]


async def test_a_stream_carries_its_url_and_the_calls_deadline(fake: FakeProvider) -> None:
    fake.script("m", Behavior(chunks=3, chunk_interval=3.0))
    async with salvo.Client(max_retries=0) as client:
        route = client.route(
            "openai/m", {"api_base": fake.openai_base, "api_key": "k", "timeout": 2.0}
        )
        req = _chat(route, stream=True)
        stream = await client.send(req, route, stream=True)
        assert stream.url == req.url
        assert stream.deadline is not None
        with pytest.raises(salvo.TimeoutError, match="within the call's 2 s deadline"):
            async with stream:
                async for _ in stream:
                    pass
        (stats,) = client.statistics().limiters.values()
        assert stats.in_flight == 0


async def test_a_stream_that_sends_nothing_hits_first_byte_timeout(fake: FakeProvider) -> None:
    fake.script("m", Behavior(fault="stall", stall_s=10.0))
    async with salvo.Client(max_retries=0) as client:
        route = client.route(
            "openai/m",
            {"api_base": fake.openai_base, "api_key": "k", "first_byte_timeout": 0.5},
        )
        with pytest.raises(salvo.TimeoutError, match=r"within first_byte_timeout=0\.5 s") as info:
            await client.send(_chat(route, stream=True), route, stream=True)
    assert (info.value.provider, info.value.model) == ("openai", "m")
    await asyncio.sleep(0)
