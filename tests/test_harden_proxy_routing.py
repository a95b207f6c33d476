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
