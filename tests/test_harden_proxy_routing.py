"""Item 9 of issue 11: proxy embeddings step an alias's round-robin once per request, on a
translated provider too (the alias used to be resolved twice, so two deployments alternated
in step and every request landed on the same one)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from salvo.testing import FakeProvider
from test_proxy_support import stack


@pytest.mark.parametrize(
    "models", [("cohere/embed-a", "cohere/embed-b"), ("openai/emb-a", "openai/emb-b")]
)
async def test_two_deployments_behind_one_alias_share_the_embeddings(
    models: tuple[str, str],
) -> None:
    def configure(fake: FakeProvider, config: dict[str, Any]) -> None:
        base = fake.cohere_base if models[0].startswith("cohere") else fake.openai_base
        config["model_list"] += [
            {"model_name": "pair", "params": {"model": m, "api_base": base, "api_key": "k"}}
            for m in models
        ]

    async with stack(configure=configure) as s:
        for _ in range(6):
            resp = await s.oai.embeddings.create(model="pair", input="x", encoding_format="float")
            assert resp.data[0].embedding
        seen = Counter(r.body["model"] for r in s.fake.records)
        assert seen == {models[0].split("/")[1]: 3, models[1].split("/")[1]: 3}


async def test_a_fan_out_names_at_most_max_fanout_models() -> None:
    """Item 11: a race or gather with more contenders than the setting is a 400 before any
    task starts (nothing reaches the upstream); the default is 16."""
    async with stack() as s:
        assert s.proxy.state.settings.max_fanout_models == 16
        for fastest in (True, False):
            for names in (["fast"] * 17, ["fast", "smart"] * 10_000):
                body = {"model": ",".join(names), "messages": [{"role": "user", "content": "x"}],
                        "fastest_response": fastest}  # fmt: skip
                async with s.http.post(
                    s.url + "/v1/chat/completions", json=body, headers=s.auth()
                ) as resp:
                    assert resp.status == 400
                    err = (await resp.json())["error"]
                assert err["code"] == "too_many_models" and err["param"] == "model"
                assert (
                    "at most 16 models" in err["message"] and "max_fanout_models" in err["message"]
                )
                assert f"names {len(names)}" in err["message"]
        assert s.fake.records == []
        ok = {"model": ",".join(["fast"] * 16), "messages": [{"role": "user", "content": "x"}]}
        async with s.http.post(s.url + "/v1/chat/completions", json=ok, headers=s.auth()) as resp:
            assert resp.status == 200
            assert len((await resp.json())["data"]) == 16


async def test_max_fanout_models_is_a_setting() -> None:
    async with stack(settings={"max_fanout_models": 2}) as s:
        body = {"model": "fast,smart,fast", "messages": [{"role": "user", "content": "x"}],
                "fastest_response": True}  # fmt: skip
        async with s.http.post(s.url + "/v1/chat/completions", json=body, headers=s.auth()) as resp:
            assert resp.status == 400
            assert "at most 2 models" in (await resp.json())["error"]["message"]
        body["model"] = "fast,smart"
        async with s.http.post(s.url + "/v1/chat/completions", json=body, headers=s.auth()) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("bad", [0, -1, 2.5, "16", True])
def test_a_bad_max_fanout_models_stops_start_up(bad: object) -> None:
    from salvo import ConfigError
    from salvo.proxy import create_app

    with pytest.raises(ConfigError, match="max_fanout_models"):
        create_app({"model_list": [], "general_settings": {"max_fanout_models": bad}})
