"""Details of errors and assembled answers that no other test pinned down (mutation testing,
issue 11): a key inside a JSON array of an error body, a very long error message in the log,
and every field ``collect()`` carries over from the stream."""

from __future__ import annotations

import logging

import pytest

import salvo
from salvo._retry import mask_secret, redact_secret
from salvo.testing import Behavior, FakeProvider

MSGS = [{"role": "user", "content": "Say hi"}]
KEY = "sk-live-0123456789abcdef"


def test_a_key_inside_a_json_array_of_an_error_body_is_masked() -> None:
    body = {"errors": [f"key {KEY} refused", {"detail": [KEY, "x"]}], "n": 3}
    err = salvo.AuthenticationError(
        f"bad key {KEY}", status_code=401, provider="openai", model="m", body=body
    )
    redact_secret(err, KEY)
    text = repr(err.body) + str(err) + err.message
    assert KEY not in text
    assert err.body["errors"][0] == f"key {mask_secret(KEY)} refused"
    assert err.body["errors"][1]["detail"] == [mask_secret(KEY), "x"]
    assert err.body["n"] == 3


def test_an_error_body_without_the_key_is_left_as_it_is() -> None:
    body = {"errors": ["nothing secret", ["a", "b"]]}
    err = salvo.BadRequestError("no", status_code=400, provider="openai", model="m", body=body)
    redact_secret(err, KEY)
    assert err.body is body


async def test_an_error_message_over_400_characters_is_logged_shortened(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    long = "x" * 2000
    fake.script("m", Behavior(status=500, error_message=long))
    caplog.set_level(logging.DEBUG, logger="salvo")
    async with salvo.Client(max_retries=1, retry_policy=salvo.RetryPolicy(wait=False)) as c:
        with pytest.raises(salvo.ServerError) as info:
            await c.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k")
    assert long in str(info.value)  # the exception keeps the whole message
    records = [r for r in caplog.records if r.name == "salvo"]
    assert [r.levelno for r in records] == [logging.INFO, logging.WARNING]
    assert "x" * 100 not in records[0].getMessage()  # a retry line names the error's kind
    shown = records[1].getMessage()
    assert "x" * 300 in shown and long not in shown and shown.endswith("…")
    assert len(shown) < 600
    assert [r.status_code for r in records] == [500, 500]  # type: ignore[attr-defined]


async def test_collect_keeps_id_model_usage_and_provider(fake: FakeProvider) -> None:
    fake.script("m", Behavior(text="one two three", prompt_tokens=7, completion_tokens=3,
                              include_usage=True))  # fmt: skip
    async with salvo.Client() as c:
        stream = await c.acompletion("openai/m", MSGS, stream=True, api_base=fake.openai_base,
                                     api_key="k")  # fmt: skip
        resp = await stream.collect()
    (record,) = fake.records_for("m")
    assert resp.content == "one two three"
    assert resp.id and resp.id.startswith("chatcmpl")
    assert record.status == 200 and record.stream
    assert resp.provider == "openai"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (7, 3)
    assert resp.usage.total_tokens == 10
    assert resp.choices[0].finish_reason == "stop"
    assert resp.latency_s is not None and resp.latency_s >= 0
