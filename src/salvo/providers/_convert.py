"""Small pure helpers shared by the non-OpenAI adapters (Anthropic, Gemini, Cohere).

Turning OpenAI-shaped messages into another provider's shape needs the same few steps
everywhere: the text of a content value, the parts of a ``data:`` URL, a tool call's JSON
arguments, and well-worded errors for a body that is not what the provider promised.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from .._errors import (
    ConfigError,
    ProviderError,
    ResponseDecodeError,
    StreamError,
    error_for_status,
)
from ._base import DECODE_ERRORS, Endpoint, decode_problem

__all__ = [
    "decode_arguments",
    "decode_failed",
    "error_in_stream",
    "event_type",
    "image_url_of",
    "merge_turn",
    "now",
    "parse_data_url",
    "stop_list",
    "stream_error",
    "text_of",
    "tool_call_id",
]

_DECODE_ANY = msgspec.json.Decoder().decode


class _Typed(msgspec.Struct):
    type: str = ""


_DECODE_TYPE = msgspec.json.Decoder(_Typed).decode


def event_type(data: bytes) -> str:
    """The ``type`` of a typed stream event ("" when the data is not a JSON object with one)."""
    try:
        return _DECODE_TYPE(data).type
    except DECODE_ERRORS:
        return ""


def merge_turn(turns: list[dict[str, Any]], role: str, items: list[Any], key: str) -> None:
    """Append ``items`` as a ``role`` turn, merged into the previous turn when it has the same
    role (providers that want strictly alternating roles); nothing for no items."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def now() -> int:
    """``created`` for providers whose responses carry no timestamp."""
    return int(time.time())


def tool_call_id() -> str:
    """A fresh OpenAI-style tool-call id, for providers that do not send one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def text_of(content: Any) -> str:
    """The text of an OpenAI content value: a string, or the text parts of a list joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                out.append(part["text"])
        return "".join(out)
    return str(content)


def stop_list(stop: Any) -> list[str]:
    """OpenAI's ``stop`` (a string or a list of strings) as a list."""
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str)]


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> ``("image/png", "AAAA")``; None for other URLs.

    Raises ConfigError for a ``data:`` URL that is not base64, which no provider accepts.
    """
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise ConfigError(
            "An image data: URL must be base64-encoded "
            "(data:<media type>;base64,<data>); got one beginning "
            f"{url[:40]!r}."
        )
    return head[: -len(";base64")] or "application/octet-stream", data


def image_url_of(part: Mapping[str, Any]) -> str:
    """The URL of an OpenAI ``image_url`` part (the object form or a bare string)."""
    value = part.get("image_url")
    if isinstance(value, Mapping):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"An image_url part has no URL: {dict(part)!r:.120}.")
    return value


def decode_arguments(arguments: Any, name: str) -> Any:
    """A tool call's ``arguments`` (a JSON string in OpenAI's format) as a Python value."""
    if arguments is None or arguments == "":
        return {}
    if not isinstance(arguments, str | bytes):
        return arguments
    try:
        return _DECODE_ANY(arguments)
    except DECODE_ERRORS:
        raise ConfigError(
            f"The arguments of tool call {name!r} are not valid JSON ({arguments!r:.80}); "
            "this provider needs them as a JSON object. Fix or drop that tool call."
        ) from None


def decode_failed(ep: Endpoint, what: str, body: bytes, exc: Exception) -> ResponseDecodeError:
    preview = body[:200].decode("utf-8", "replace")
    why = "It was probably cut short." if not isinstance(exc, RecursionError) else ""
    err = ResponseDecodeError(
        f"{ep.provider} sent a {what} for model {ep.model!r} that is not the JSON its API promises "
        f"({decode_problem(exc)}); it began with {preview!r}. {why} salvo does not retry "
        "this (the provider has likely done and billed the work): retry the call yourself if "
        "it was a one-off, and report it if it keeps happening."
    )
    err.provider, err.model = ep.provider, ep.model
    return err


def stream_error(ep: Endpoint, what: str) -> StreamError:
    err = StreamError(
        f"The {ep.provider} stream for model {ep.model!r} carried {what.rstrip('.')}, so the "
        "answer is incomplete. Retry the call (salvo retries by itself until the first chunk "
        "is delivered)."
    )
    err.provider, err.model = ep.provider, ep.model
    return err


def error_in_stream(ep: Endpoint, status: int, kind: str, message: str, body: Any) -> ProviderError:
    """The ProviderError for an error reported inside a 200 stream, classed by the HTTP status
    the provider gives that error elsewhere (so an overload mid-stream is a ServerError)."""
    cls = error_for_status(status)
    retry = " salvo retries it like an HTTP error." if status >= 500 or status == 429 else ""
    return cls(
        f"{ep.provider} reported {kind} in the middle of the stream for model "
        f"{ep.model!r}: {message or 'no message'}.{retry}",
        status_code=status,
        provider=ep.provider,
        model=ep.model,
        body=body,
    )
