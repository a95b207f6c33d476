"""``"hedge"`` next to ``fastest_response`` in a proxy request, and the config's default."""

from __future__ import annotations

import json

import openai
import pytest

from salvo.testing import Behavior
from test_proxy_support import USER, stack

RACE = {"fastest_response": True}


async def test_request_hedge_starts_the_second_model_only_after_the_delay() -> None:
    async with stack(settings={"hedge_budget": 1.0}) as s:
        s.fake.script("gpt-4o-mini", Behavior(latency=3.0, text="slow"))
        s.fake.script("gpt-4o", Behavior(text="quick"))
        raw = await s.oai.chat.completions.with_raw_response.create(
            model="fast, smart", messages=USER, extra_body={**RACE, "hedge": 0.3}
        )
        body = json.loads(raw.http_response.text)
        assert body["choices"][0]["message"]["content"] == "quick"
        race = body["race"]
        assert race["winner"] == 1 and race["hedges"] == 1
        assert [c["outcome"] for c in race["contenders"]] == ["lost", "won"]
        (slow,) = s.fake.records_for("gpt-4o-mini")
        (quick,) = s.fake.records_for("gpt-4o")
        assert quick.arrived - slow.arrived >= 0.29
        assert "hedge" not in quick.body and "fastest_response" not in quick.body
        await s.fake.wait_until_closed(slow)
        assert slow.disconnected is not None and slow.completed is None


async def test_config_default_hedge_and_a_fast_answer_sends_one_request() -> None:
    async with stack(settings={"hedge": "p95", "hedge_budget": 1.0}) as s:
        s.fake.script("gpt-4o-mini", Behavior(text="first"))
        resp = await s.oai.chat.completions.create(
            model="fast,smart", messages=USER, extra_body=RACE
        )
        assert resp.choices[0].message.content == "first"
        assert s.fake.records_for("gpt-4o") == []  # the default delay (1 s) never ran out


async def test_streamed_hedged_race() -> None:
    async with stack(settings={"hedge_budget": 1.0}) as s:
        s.fake.script("gpt-4o-mini", Behavior(first_chunk_delay=3.0))
        s.fake.script("gpt-4o", Behavior(text="quick answer", chunks=3))
        raw = await s.oai.chat.completions.with_raw_response.create(
            model="fast,smart",
            messages=USER,
            stream=True,
            extra_body={**RACE, "hedge": 0.1},
        )
        assert raw.headers["x-salvo-model"] == "smart"
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        assert text == "quick answer"


@pytest.mark.parametrize("hedge", ["p100", "soon", -1, True, [0.5]])
async def test_bad_hedge_is_a_400_before_sending(hedge: object) -> None:
    async with stack() as s:
        with pytest.raises(openai.BadRequestError) as info:
            await s.oai.chat.completions.create(
                model="fast,smart", messages=USER, extra_body={**RACE, "hedge": hedge}
            )
        assert "hedge" in info.value.message
        assert s.fake.records == []


async def test_hedge_without_a_race_is_a_400() -> None:
    async with stack() as s:
        with pytest.raises(openai.BadRequestError, match="fastest_response"):
            await s.oai.chat.completions.create(
                model="fast,smart", messages=USER, extra_body={"hedge": 0.5}
            )
        assert s.fake.records == []


def test_bad_config_default_stops_start_up() -> None:
    from salvo import ConfigError, load_config
    from salvo.proxy._settings import load_settings

    with pytest.raises(ConfigError, match="hedge"):
        load_settings(load_config({"model_list": [], "general_settings": {"hedge": "p200"}}))
    with pytest.raises(ConfigError, match="hedge_budget"):
        load_settings(load_config({"model_list": [], "general_settings": {"hedge_budget": -1}}))
