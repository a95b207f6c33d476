"""``list_of_messages`` is checked before anything is sent, the same way on both batch paths:
``abatch_completion`` through the fan-out engine and its call-level twin (``fallbacks``)."""

from __future__ import annotations

from typing import Any

import pytest

import salvo
from salvo.testing import FakeProvider

GOOD = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("call_level", [False, True])
@pytest.mark.parametrize(
    ("prompts", "said"),
    [
        ("not a list", "list_of_messages must be a list of message lists"),
        ([GOOD, []], r"list_of_messages\[1\]: messages must be a non-empty list"),
        (
            [GOOD, GOOD, [{"role": "robot", "content": "x"}]],
            r"list_of_messages\[2\]: messages\[0\]",
        ),
    ],
)
async def test_a_bad_prompt_is_named_before_any_request(
    fake: FakeProvider, call_level: bool, prompts: Any, said: str
) -> None:
    kw: dict[str, Any] = {"api_base": fake.openai_base, "api_key": "k"}
    if call_level:
        kw["fallbacks"] = ["openai/other"]
    with pytest.raises(salvo.ConfigError, match=said):
        await salvo.abatch_completion("openai/m", prompts, **kw)
    assert fake.records == []
