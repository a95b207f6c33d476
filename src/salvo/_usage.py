"""The few fields observability reads from OpenAI-format bytes (a body, an SSE tail), and
small conversions for span attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["Brief", "decode_brief", "last_usage_event", "param", "to_json"]

_DECODE_ANY = msgspec.json.Decoder().decode
_ENCODE = msgspec.json.Encoder().encode


def param(params: Mapping[str, Any], defaults: Mapping[str, Any], key: str) -> Any:
    """``params[key]``, else ``defaults[key]``; raw JSON (the proxy's pass-through) decoded."""
    value = params.get(key)
    if value is None:
        value = defaults.get(key)
    if isinstance(value, msgspec.Raw):  # the proxy's pass-through keeps values as raw JSON
        try:
            value = _DECODE_ANY(value)
        except msgspec.DecodeError:
            return None
    return value


class BriefUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class BriefChoice(msgspec.Struct):
    finish_reason: str | None = None


class Brief(msgspec.Struct):
    """The few fields of an OpenAI-format body (or chunk) that observability reads."""

    id: str | None = None
    model: str | None = None
    usage: BriefUsage | None = None
    choices: list[BriefChoice] | None = None


decode_brief = msgspec.json.Decoder(Brief).decode


def last_usage_event(tail: bytes) -> Brief | None:
    """The last SSE ``data:`` event in ``tail`` that carries a ``usage`` object."""
    at = tail.rfind(b'"usage"')
    while at >= 0:
        begin = tail.rfind(b"data:", 0, at)
        if begin < 0:
            return None
        end = tail.find(b"\n", at)
        line = tail[begin + 5 : end if end >= 0 else len(tail)].strip()
        try:
            brief = decode_brief(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            at = tail.rfind(b'"usage"', 0, begin)
            continue
        return brief if brief.usage is not None else None
    return None


def to_json(value: Any) -> str:
    try:
        return _ENCODE(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)
