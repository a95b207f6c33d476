"""Anthropic's wire structs and its stream parser: typed SSE events -> OpenAI chunks.

Events are decoded as a msgspec tagged union on ``type``; an event type salvo does not know is
ignored (Anthropic adds new ones). The mapping (protocols.md 5.4 / 5.8):

- ``message_start`` -> the role chunk (``delta.role = "assistant"``, ``content = ""``);
- ``text_delta`` -> ``delta.content``; ``thinking_delta`` -> ``delta.reasoning_content``;
- ``content_block_start`` of a ``tool_use`` block -> a tool-call delta with ``id`` and
  ``name``; its ``input_json_delta`` fragments -> ``function.arguments`` deltas. The tool-call
  ``index`` is the block's ordinal among ``tool_use`` blocks, not Anthropic's block index;
- ``message_delta`` -> ``finish_reason`` and the usage so far (output tokens are cumulative);
- ``message_stop`` ends the stream (``done``); ``ping`` and unknown events are skipped.

An ``error`` event (HTTP status already 200) raises the :class:`~salvo.ProviderError`
subclass that the same error type gets as an HTTP status: ``overloaded_error`` ->
:class:`~salvo.ServerError` with ``status_code`` 529, ``api_error`` -> ServerError 500,
``rate_limit_error`` -> RateLimitError 429, ``invalid_request_error`` -> BadRequestError
400, ... so an overload mid-stream looks (and is treated) exactly like a 529: retryable
before the first chunk was delivered. An error type salvo does not know raises
:class:`~salvo.StreamError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .._errors import ProviderError, StreamError
from .._types import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    Usage,
)
from ._base import DECODE_ERRORS, Endpoint, decode_problem
from ._convert import error_in_stream, event_type, now, stream_error

__all__ = [
    "FINISH_REASONS",
    "AnthropicBlock",
    "AnthropicStreamParser",
    "AnthropicUsage",
    "map_usage",
]

FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}

#: The HTTP status Anthropic uses for each error type (protocols.md 5.5).
ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicBlock(msgspec.Struct):
    """One content block; only the fields salvo reads (``input`` kept as raw JSON)."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw(b"{}")
    thinking: str | None = None


class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class AnthropicUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None


def map_usage(u: AnthropicUsage) -> Usage:
    """Anthropic usage in OpenAI's terms: ``prompt_tokens`` includes cache reads and writes
    (Anthropic's ``input_tokens`` counts only uncached input)."""
    read = u.cache_read_input_tokens
    write = u.cache_creation_input_tokens
    prompt = (u.input_tokens or 0) + (read or 0) + (write or 0)
    completion = u.output_tokens or 0
    details: dict[str, Any] | None = None
    if read is not None or write is not None:
        details = {"cached_tokens": read or 0, "cache_creation_tokens": write or 0}
        cc = u.cache_creation
        if cc is not None and cc.ephemeral_1h_input_tokens:
            details["cache_creation_1h_tokens"] = cc.ephemeral_1h_input_tokens
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=details,
    )


# -- events -------------------------------------------------------------------------------------


class _StartMessage(msgspec.Struct):
    id: str = ""
    model: str = ""
    usage: AnthropicUsage | None = None


class _MessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: _StartMessage


class _BlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: AnthropicBlock


class _Delta(msgspec.Struct):
    type: str = ""
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None


class _BlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: _Delta


class _BlockStop(msgspec.Struct, tag="content_block_stop", tag_field="type"):
    index: int = 0


class _MessageDeltaBody(msgspec.Struct):
    stop_reason: str | None = None


class _MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: _MessageDeltaBody = msgspec.field(default_factory=_MessageDeltaBody)
    usage: AnthropicUsage | None = None


class _MessageStop(msgspec.Struct, tag="message_stop", tag_field="type"):
    pass


class _Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


class _ErrorBody(msgspec.Struct):
    type: str = ""
    message: str = ""


class _Error(msgspec.Struct, tag="error", tag_field="type"):
    error: _ErrorBody = msgspec.field(default_factory=_ErrorBody)


_Event = (
    _BlockDelta
    | _BlockStart
    | _BlockStop
    | _MessageStart
    | _MessageDelta
    | _MessageStop
    | _Ping
    | _Error
)
_DECODE_EVENT = msgspec.json.Decoder(_Event).decode

_KNOWN = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)


def _merge(old: AnthropicUsage | None, new: AnthropicUsage | None) -> AnthropicUsage | None:
    if new is None:
        return old
    if old is None:
        return new
    return AnthropicUsage(
        input_tokens=new.input_tokens if new.input_tokens is not None else old.input_tokens,
        output_tokens=new.output_tokens if new.output_tokens is not None else old.output_tokens,
        cache_creation_input_tokens=(
            new.cache_creation_input_tokens
            if new.cache_creation_input_tokens is not None
            else old.cache_creation_input_tokens
        ),
        cache_read_input_tokens=(
            new.cache_read_input_tokens
            if new.cache_read_input_tokens is not None
            else old.cache_read_input_tokens
        ),
        cache_creation=new.cache_creation or old.cache_creation,
    )


def in_stream_error(ep: Endpoint, error_type: str, message: str) -> ProviderError | StreamError:
    """The exception for an ``event: error`` (see the module docstring)."""
    status = ERROR_STATUS.get(error_type)
    if status is None:
        return stream_error(ep, f"an error event ({error_type or 'no type'}: {message})")
    return error_in_stream(
        ep, status, error_type, message, {"type": error_type, "message": message}
    )


class AnthropicStreamParser:
    """One Anthropic stream's state: message id/model, tool ordinals, usage so far."""

    __slots__ = ("_created", "_ep", "_id", "_model", "_tools", "_usage", "done")

    def __init__(self, ep: Endpoint) -> None:
        self._ep = ep
        self._id = ""
        self._model = ep.model
        self._created = now()
        self._tools: dict[int, int] = {}
        self._usage: AnthropicUsage | None = None
        self.done = False

    def _chunk(
        self, delta: Delta, finish: str | None = None, usage: Usage | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
            provider=self._ep.provider,
        )

    def feed(self, event: str | None, data: bytes) -> ChatCompletionChunk | None:
        if event is not None and event not in _KNOWN:
            return None
        try:
            ev = _DECODE_EVENT(data)
        except msgspec.ValidationError as exc:
            kind = event_type(data)
            if kind in _KNOWN:
                raise stream_error(self._ep, f"a malformed {kind} event ({exc})") from None
            return None
        except DECODE_ERRORS as exc:
            raise stream_error(
                self._ep, f"an unreadable stream event ({decode_problem(exc)})"
            ) from None
        if type(ev) is _BlockDelta:
            return self._delta(ev)
        if type(ev) is _BlockStart:
            return self._block_start(ev.index, ev.content_block)
        if type(ev) is _MessageStart:
            msg = ev.message
            self._id = msg.id
            self._model = msg.model or self._model
            self._usage = msg.usage
            return self._chunk(Delta(role="assistant", content=""))
        if type(ev) is _MessageDelta:
            self._usage = _merge(self._usage, ev.usage)
            stop = ev.delta.stop_reason
            finish = FINISH_REASONS.get(stop, stop) if stop else None
            usage = map_usage(self._usage) if self._usage is not None else None
            return self._chunk(Delta(), finish, usage)
        if type(ev) is _MessageStop:
            self.done = True
            return None
        if type(ev) is _Error:
            raise in_stream_error(self._ep, ev.error.type, ev.error.message)
        return None  # ping, content_block_stop

    def _delta(self, ev: _BlockDelta) -> ChatCompletionChunk | None:
        d = ev.delta
        kind = d.type
        if kind == "text_delta":
            return self._chunk(Delta(content=d.text or ""))
        if kind == "input_json_delta":
            k = self._tools.get(ev.index)
            if k is None or not d.partial_json:
                return None
            call = DeltaToolCall(index=k, function=DeltaFunction(arguments=d.partial_json))
            return self._chunk(Delta(tool_calls=[call]))
        if kind == "thinking_delta":
            return self._chunk(Delta(reasoning_content=d.thinking or ""))
        return None  # signature_delta, citations_delta, and newer kinds

    def _block_start(self, index: int, block: AnthropicBlock) -> ChatCompletionChunk | None:
        if block.type == "tool_use":
            k = len(self._tools)
            self._tools[index] = k
            call = DeltaToolCall(
                index=k,
                id=block.id or "",
                type="function",
                function=DeltaFunction(name=block.name or "", arguments=""),
            )
            return self._chunk(Delta(tool_calls=[call]))
        if block.type == "text" and block.text:
            return self._chunk(Delta(content=block.text))
        return None
