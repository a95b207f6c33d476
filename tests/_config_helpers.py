"""Client and proxy configs for models the fake provider serves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from salvo.testing import FakeProvider


def openai_models(
    fake: FakeProvider, names: Iterable[str], *, api_key: str = "k", **params: Any
) -> dict[str, Any]:
    """A ``model_list`` config: each name an ``openai/<name>`` model on the fake's OpenAI API,
    with ``params`` added to each."""
    return {
        "model_list": [
            {
                "model_name": n,
                "params": {
                    "model": f"openai/{n}",
                    "api_base": fake.openai_base,
                    "api_key": api_key,
                    **params,
                },
            }
            for n in names
        ]
    }
