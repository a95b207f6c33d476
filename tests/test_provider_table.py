"""The provider table: the new rows, their prefixes, and that bare names resolve to them."""

from __future__ import annotations

import pytest

import salvo
from salvo._models import split_model
from salvo.providers import Adapter, get_provider


@pytest.mark.parametrize(
    ("model", "provider", "name"),
    [
        ("claude-haiku-4-5", "anthropic", "claude-haiku-4-5"),
        ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        ("gemini-2.5-flash", "gemini", "gemini-2.5-flash"),
        ("gemini/text-embedding-004", "gemini", "text-embedding-004"),
        ("command-a-03-2025", "cohere", "command-a-03-2025"),
        ("cohere/embed-english-v3.0", "cohere", "embed-english-v3.0"),
        ("azure/my-deployment", "azure", "my-deployment"),
        ("gpt-4o-mini", "openai", "gpt-4o-mini"),
    ],
)
def test_model_strings_pick_the_row(model: str, provider: str, name: str) -> None:
    info, rest = split_model(model)
    assert (info.name, rest) == (provider, name)


@pytest.mark.parametrize("name", ["anthropic", "gemini", "cohere", "azure"])
def test_rows_are_listed_and_adapters_fit_the_protocol(name: str) -> None:
    info = get_provider(name)
    assert info is not None
    assert info in salvo.providers()
    adapter: Adapter = info.adapter
    assert adapter.name == name
    assert isinstance(adapter.stream_ends_at_eof, bool)
    assert info.key_env and info.base_env
    assert info.finish_reasons or name == "azure"
