"""Cohere v2's shared structs, finish/usage mapping, and its stream parser.

Stream events carry a ``type`` discriminator and are decoded as a msgspec tagged union; types
salvo does not know (and ``debug``, citations, tool plans) are skipped. ``message-start`` ->
the role chunk; ``content-delta`` -> ``content`` (or ``reasoning_content`` for thinking);
``tool-call-start`` -> a tool-call delta with ``id`` and ``name`` (index = the call's ordinal);
``tool-call-delta`` -> ``arguments`` fragments; ``message-end`` -> ``finish_reason`` and
usage, and the end of the stream (``done``). A ``message-end`` that reports an ``error``
raises :class:`~salvo.StreamError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .._types import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    Usage,
)
from ._base import DECODE_ERRORS, Endpoint, decode_problem
from ._convert import event_type, now, stream_error

__all__ = [
    "FINISH_REASONS",
    "CohereStreamParser",
    "CohereToolCall",
    "CohereUsage",
    "finish_reason",
    "map_usage",
]

FINISH_REASONS: Mapping[str, str] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR_TOXIC": "content_filter",
    "ERROR": "error",
    "TIMEOUT": "error",
}


def finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return FINISH_REASONS.get(reason) or reason.lower()


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class CohereToolCall(msgspec.Struct):
    id: str = ""
    function: _Function = msgspec.field(default_factory=_Function)


class _Tokens(msgspec.Struct):
    input_tokens: float | None = None
    output_tokens: float | None = None


class CohereUsage(msgspec.Struct):
    billed_units: _Tokens | None = None
    tokens: _Tokens | None = None
    cached_tokens: float | None = None


def _n(value: float | None) -> int | None:
    return None if value is None else int(value)


def map_usage(u: CohereUsage) -> Usage:
    """``usage.tokens`` as OpenAI usage (``billed_units`` when ``tokens`` is absent); billed
    counts are kept in the details as ``billed_tokens``."""
    tokens = u.tokens or u.billed_units or _Tokens()
    prompt = _n(tokens.input_tokens) or 0
    completion = _n(tokens.output_tokens) or 0
    pdetails: dict[str, Any] = {}
    cdetails: dict[str, Any] = {}
    if u.cached_tokens is not None:
        pdetails["cached_tokens"] = int(u.cached_tokens)
    billed = u.billed_units
    if billed is not None:
        if billed.input_tokens is not None:
            pdetails["billed_tokens"] = int(billed.input_tokens)
        if billed.output_tokens is not None:
            cdetails["billed_tokens"] = int(billed.output_tokens)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=pdetails or None,
        completion_tokens_details=cdetails or None,
    )


# -- events -------------------------------------------------------------------------------------


class _MessageStart(msgspec.Struct, tag="message-start", tag_field="type"):
    id: str = ""


class _ContentPiece(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None


class _ContentMessage(msgspec.Struct):
    content: _ContentPiece | None = None


class _ContentDeltaBody(msgspec.Struct):
    message: _ContentMessage = msgspec.field(default_factory=_ContentMessage)


class _ContentStart(msgspec.Struct, tag="content-start", tag_field="type"):
    index: int = 0
    delta: _ContentDeltaBody = msgspec.field(default_factory=_ContentDeltaBody)


class _ContentDelta(msgspec.Struct, tag="content-delta", tag_field="type"):
    index: int = 0
    delta: _ContentDeltaBody = msgspec.field(default_factory=_ContentDeltaBody)


class _ToolMessage(msgspec.Struct):
    tool_calls: CohereToolCall | None = None


class _ToolDeltaBody(msgspec.Struct):
    message: _ToolMessage = msgspec.field(default_factory=_ToolMessage)


class _ToolCallStart(msgspec.Struct, tag="tool-call-start", tag_field="type"):
    index: int = 0
    delta: _ToolDeltaBody = msgspec.field(default_factory=_ToolDeltaBody)


class _ToolCallDelta(msgspec.Struct, tag="tool-call-delta", tag_field="type"):
    index: int = 0
    delta: _ToolDeltaBody = msgspec.field(default_factory=_ToolDeltaBody)


class _EndBody(msgspec.Struct):
    finish_reason: str | None = None
    usage: CohereUsage | None = None
    error: str | None = None


class _MessageEnd(msgspec.Struct, tag="message-end", tag_field="type"):
    delta: _EndBody = msgspec.field(default_factory=_EndBody)


_Event = (
    _ContentDelta | _ToolCallDelta | _ContentStart | _ToolCallStart | _MessageStart | _MessageEnd
)
_DECODE_EVENT = msgspec.json.Decoder(_Event).decode

_HANDLED = frozenset(
    {
        "message-start",
        "content-start",
        "content-delta",
        "tool-call-start",
        "tool-call-delta",
        "message-end",
    }
)


class CohereStreamParser:
    """One Cohere stream's state: message id and tool-call ordinals."""

    __slots__ = ("_created", "_ep", "_id", "_tools", "done")

    def __init__(self, ep: Endpoint) -> None:
        self._ep = ep
        self._id = ""
        self._created = now()
        self._tools: dict[int, int] = {}
        self.done = False

    def _chunk(
        self, delta: Delta, finish: str | None = None, usage: Usage | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id,
            created=self._created,
            model=self._ep.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
            provider=self._ep.provider,
        )

    def feed(self, event: str | None, data: bytes) -> ChatCompletionChunk | None:
        if data == b"[DONE]":
            self.done = True
            return None
        try:
            ev = _DECODE_EVENT(data)
        except msgspec.ValidationError as exc:
            kind = event_type(data)
            if kind in _HANDLED:
                raise stream_error(self._ep, f"a malformed {kind} event ({exc})") from None
            return None  # content-end, tool-plan-delta, citations, debug, newer types
        except DECODE_ERRORS as exc:
            raise stream_error(
                self._ep, f"an unreadable stream event ({decode_problem(exc)})"
            ) from None
        if type(ev) is _ContentDelta or type(ev) is _ContentStart:
            piece = ev.delta.message.content
            if piece is None:
                return None
            if piece.thinking:
                return self._chunk(Delta(reasoning_content=piece.thinking))
            if piece.text:
                return self._chunk(Delta(content=piece.text))
            return None
        if type(ev) is _ToolCallDelta:
            k = self._tools.get(ev.index)
            call = ev.delta.message.tool_calls
            if k is None or call is None or not call.function.arguments:
                return None
            delta = DeltaToolCall(
                index=k, function=DeltaFunction(arguments=call.function.arguments)
            )
            return self._chunk(Delta(tool_calls=[delta]))
        if type(ev) is _ToolCallStart:
            call = ev.delta.message.tool_calls
            if call is None:
                return None
            k = self._tools[ev.index] = len(self._tools)
            fn = DeltaFunction(
                name=call.function.name or "", arguments=call.function.arguments or ""
            )
            delta = DeltaToolCall(index=k, id=call.id, type="function", function=fn)
            return self._chunk(Delta(tool_calls=[delta]))
        if type(ev) is _MessageStart:
            self._id = ev.id
            return self._chunk(Delta(role="assistant", content=""))
        if type(ev) is _MessageEnd:
            self.done = True
            end = ev.delta
            if end.error:
                raise stream_error(self._ep, f"an error at its end ({end.error})")
            usage = map_usage(end.usage) if end.usage is not None else None
            return self._chunk(Delta(), finish_reason(end.finish_reason), usage)
        return None
