"""Cheap token estimates for the tpm limiter (corrected from ``usage`` afterwards)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["estimate_input_tokens", "estimate_tokens"]


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    chars = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                t = part.get("text")
                if isinstance(t, str):
                    chars += len(t)
    return chars


def estimate_tokens(messages: Any, max_tokens: Any) -> int:
    """A cheap estimate of a chat request's tokens: ~4 characters a token, 4 a message, plus
    the completion budget when the caller set one (corrected from ``usage`` afterwards)."""
    chars = 0
    for m in messages:
        chars += _text_chars(m.get("content"))
    out = chars // 4 + 4 * len(messages)
    if isinstance(max_tokens, int):
        out += max_tokens
    return out


def estimate_input_tokens(value: Any) -> int:
    """The same estimate for an embeddings input: a string, strings, or token arrays."""
    if isinstance(value, str):
        return len(value) // 4 + 1
    if isinstance(value, list):
        if value and isinstance(value[0], int):
            return len(value)
        return sum(estimate_input_tokens(v) for v in value)
    return 1
