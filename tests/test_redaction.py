"""API keys never leak: not in reprs (Endpoint, Deployment, Client, config, requests, errors),
not in error messages or bodies (even when a server echoes the key back), not in logs, not in
statistics. A sentinel key is grepped for everywhere.

Decision: salvo replaces the *full* key wherever an error would echo it with its masked form
(``sk-...abcd``, first three and last four characters, as providers' dashboards show keys).
A provider's own already-masked text (OpenAI's 401 says ``Incorrect API key provided:
sk-proj-****abcd``) is left as it is: it is not the key, and it tells the user which key
was refused. Keys shorter than 8 characters are not masked (they would match ordinary text).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

import salvo
from _config_helpers import openai_models
from salvo._models import resolve_deployment
from salvo._retry import mask_secret
from salvo.testing import Behavior, FakeProvider

SENTINEL = "sk-SENTINEL-4f9c1d0e7b2a-DO-NOT-LEAK-91xz"
MASKED = "sk-...91xz"
MSGS = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def config(fake: FakeProvider) -> dict[str, Any]:
    return {
        **openai_models(fake, ("m", "n"), api_key=SENTINEL),
        "general_settings": {"master_key": SENTINEL},
    }


@pytest.fixture
async def client(config: dict[str, Any]) -> AsyncIterator[salvo.Client]:
    retry = salvo.RetryPolicy(wait=False)
    async with salvo.Client(config=config, retry_policy=retry) as c:
        yield c


def assert_clean(*texts: Any) -> None:
    for text in texts:
        assert SENTINEL not in str(text), text
        assert SENTINEL[3:20] not in str(text), text  # no large piece of it either


def test_mask_shows_only_the_ends() -> None:
    assert mask_secret(SENTINEL) == MASKED


async def test_reprs_never_show_the_key(client: salvo.Client, config: dict[str, Any]) -> None:
    opts = client.options("m", {})
    dep = opts.dep
    req = dep.adapter.build_chat(dep.endpoint, dep.headers, MSGS, {}, False)
    assert dep.endpoint.api_key == SENTINEL  # it is there...
    assert any(SENTINEL in v for v in req.headers.values())
    direct = resolve_deployment("openai/x", overrides={"api_key": SENTINEL, "api_base": "http://h"})
    assert_clean(  # ...and none of these show it
        repr(dep.endpoint),
        repr(dep),
        repr(direct),
        repr(req),
        repr(client),
        repr(client.config),
        repr(client.config.models["m"]),
        repr(client.statistics()),
        client.statistics().limiters,
    )
    assert "<hidden>" in repr(client.config.models["m"])
    env_ref = salvo.load_config(
        {
            "model_list": [
                {"model_name": "e", "params": {"model": "openai/e", "api_key": "os.environ/K"}}
            ]
        }
    )
    assert "os.environ/K" in repr(env_ref.models["e"])  # a reference is not a secret


async def test_an_error_that_echoes_the_key_is_masked(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script("m", Behavior(status=401, error_message=f"Key {SENTINEL} is not valid."))
    with pytest.raises(salvo.AuthenticationError) as info:
        await client.acompletion("m", MSGS)
    err = info.value
    assert_clean(str(err), repr(err), err.message, err.body, err.args)
    assert f"Key {MASKED} is not valid." in str(err)
    assert err.body["message"] == f"Key {MASKED} is not valid."
    assert "Check the API key (OPENAI_API_KEY)" in str(err)


async def test_the_providers_own_masked_key_is_kept(
    fake: FakeProvider, client: salvo.Client
) -> None:
    text = "Incorrect API key provided: sk-SENT********************91xz."
    fake.script("m", Behavior(status=401, error_message=text))
    with pytest.raises(salvo.AuthenticationError, match=r"sk-SENT\*+91xz"):
        await client.acompletion("m", MSGS)


async def test_a_stream_error_that_echoes_the_key_is_masked(
    fake: FakeProvider, client: salvo.Client
) -> None:
    fake.script(
        "m",
        Behavior(fault="midstream_error", error_message=f"bad key {SENTINEL}", chunk_interval=0.01),
    )
    stream = await client.acompletion("m", MSGS, stream=True)
    with pytest.raises(salvo.StreamError) as info:
        await stream.collect()
    assert_clean(str(info.value), repr(info.value))
    assert MASKED in str(info.value)


async def test_logs_never_show_the_key(
    fake: FakeProvider, client: salvo.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script("m", Behavior(status=503, error_message=f"upstream saw {SENTINEL}"))
    fake.script("n", Behavior(status=400, error_message=f"upstream saw {SENTINEL}"))
    with pytest.raises(salvo.ServerError):
        await client.acompletion("m", MSGS)
    with pytest.raises(salvo.BadRequestError):
        await client.acompletion("n", MSGS)
    levels = {r.levelno for r in caplog.records if r.name == "salvo"}
    assert levels == {logging.DEBUG, logging.INFO, logging.WARNING}
    for record in caplog.records:
        assert_clean(record.getMessage(), record.__dict__)
    assert_clean(caplog.text)
    assert MASKED in caplog.text


async def test_short_keys_are_left_alone(fake: FakeProvider) -> None:
    fake.script("m", Behavior(status=401, error_message="key k rejected"))
    async with salvo.Client() as c:
        with pytest.raises(salvo.AuthenticationError, match="key k rejected"):
            await c.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k")
