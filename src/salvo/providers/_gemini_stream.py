"""Gemini's response structs, finish/usage mapping, and its stream parser.

A Gemini stream (``?alt=sse``) is a series of whole ``GenerateContentResponse`` objects whose
parts are deltas; it has no terminator (the connection closing ends it). Each event becomes
one chunk with one choice per candidate: the first chunk of each candidate carries
``role: "assistant"``; ``functionCall`` parts (they arrive whole) become tool-call deltas
numbered per candidate; the chunk that carries a ``finishReason`` also carries the usage. An
``{"error": {...}}`` event raises the ProviderError subclass for its ``code``.
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
from ._base import DECODE_ERRORS, Endpoint, bounded, decode_problem, error_message_from_body
from ._convert import error_in_stream, now, stream_error, tool_call_id

__all__ = [
    "FINISH_REASONS",
    "GeminiResponse",
    "GeminiStreamParser",
    "choice_parts",
    "finish_reason",
    "map_usage",
]

_FILTERED = "content_filter"
FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": _FILTERED,
    "RECITATION": _FILTERED,
    "BLOCKLIST": _FILTERED,
    "PROHIBITED_CONTENT": _FILTERED,
    "SPII": _FILTERED,
    "LANGUAGE": _FILTERED,
    "OTHER": _FILTERED,
    "IMAGE_SAFETY": _FILTERED,
    "IMAGE_PROHIBITED_CONTENT": _FILTERED,
    "IMAGE_OTHER": _FILTERED,
    "IMAGE_RECITATION": _FILTERED,
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
    "TOO_MANY_TOOL_CALLS": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
}


class GeminiFunctionCall(msgspec.Struct):
    name: str = ""
    args: msgspec.Raw = msgspec.Raw(b"{}")
    id: str | None = None


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    function_call: GeminiFunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = msgspec.field(default_factory=list)


class GeminiCandidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    index: int = 0


class GeminiUsage(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int | None = None
    cached_content_token_count: int | None = None
    thoughts_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class GeminiResponse(msgspec.Struct, rename="camel"):
    candidates: list[GeminiCandidate] = msgspec.field(default_factory=list)
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: GeminiUsage | None = None
    model_version: str = ""
    response_id: str = ""


_DECODE_RESPONSE = msgspec.json.Decoder(GeminiResponse).decode
_DECODE_ANY = msgspec.json.Decoder().decode


def finish_reason(reason: str | None, called: bool) -> str | None:
    """``finishReason`` in OpenAI's terms; ``tool_calls`` when a function call ended it."""
    if reason is None:
        return None
    mapped = FINISH_REASONS.get(reason) or reason.lower()
    return "tool_calls" if called and mapped == "stop" else mapped


def map_usage(u: GeminiUsage) -> Usage:
    prompt = u.prompt_token_count + (u.tool_use_prompt_token_count or 0)
    completion = u.candidates_token_count + (u.thoughts_token_count or 0)
    total = u.total_token_count if u.total_token_count is not None else prompt + completion
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        prompt_tokens_details=(
            {"cached_tokens": u.cached_content_token_count}
            if u.cached_content_token_count is not None
            else None
        ),
        completion_tokens_details=(
            {"reasoning_tokens": u.thoughts_token_count}
            if u.thoughts_token_count is not None
            else None
        ),
    )


def choice_parts(
    cand: GeminiCandidate,
) -> tuple[str | None, str | None, list[GeminiFunctionCall]]:
    """A candidate's answer text, thought text and function calls (None when absent)."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[GeminiFunctionCall] = []
    for part in cand.content.parts if cand.content is not None else ():
        if part.function_call is not None:
            calls.append(part.function_call)
        elif part.text is not None:
            (thoughts if part.thought else texts).append(part.text)
    return ("".join(texts) if texts else None, "".join(thoughts) if thoughts else None, calls)


class GeminiStreamParser:
    """One Gemini stream's state: which candidates have started, tool counts per candidate."""

    __slots__ = ("_created", "_ep", "_started", "_tools", "done")

    def __init__(self, ep: Endpoint) -> None:
        self._ep = ep
        self._created = now()
        self._started: set[int] = set()
        self._tools: dict[int, int] = {}
        self.done = False  # Gemini streams have no terminator: they end at EOF

    def feed(self, event: str | None, data: bytes) -> ChatCompletionChunk | None:
        if not data.strip():
            return None
        if b'"error"' in data[:20]:
            self._raise_if_error(data)
        try:
            resp = _DECODE_RESPONSE(data)
        except DECODE_ERRORS as exc:
            raise stream_error(
                self._ep, f"an unreadable stream event ({decode_problem(exc)})"
            ) from None
        choices = []
        finished = False
        for cand in resp.candidates:
            i = cand.index
            text, thoughts, calls = choice_parts(cand)
            delta = Delta(content=text, reasoning_content=thoughts)
            if i not in self._started:
                self._started.add(i)
                delta.role = "assistant"
            if calls:
                first = self._tools.get(i, 0)
                self._tools[i] = first + len(calls)
                delta.tool_calls = [
                    DeltaToolCall(
                        index=first + k,
                        id=fc.id or tool_call_id(),
                        type="function",
                        function=DeltaFunction(name=fc.name, arguments=bytes(fc.args).decode()),
                    )
                    for k, fc in enumerate(calls)
                ]
            finish = finish_reason(cand.finish_reason, i in self._tools)
            finished = finished or finish is not None
            choices.append(ChunkChoice(index=i, delta=delta, finish_reason=finish))
        blocked = resp.prompt_feedback is not None and resp.prompt_feedback.block_reason
        if not choices and blocked:
            choices.append(
                ChunkChoice(delta=Delta(role="assistant"), finish_reason="content_filter")
            )
            finished = True
        usage = resp.usage_metadata
        if not choices and usage is None:  # {} or no candidates: nothing to hand out
            return None
        return ChatCompletionChunk(
            id=resp.response_id,
            created=self._created,
            model=resp.model_version or self._ep.model,
            choices=choices,
            usage=map_usage(usage) if usage is not None and (finished or not choices) else None,
            provider=self._ep.provider,
        )

    def _raise_if_error(self, data: bytes) -> None:
        try:
            obj: Any = _DECODE_ANY(data)
        except DECODE_ERRORS:
            return
        err = obj.get("error") if isinstance(obj, dict) else None
        if not isinstance(err, dict):
            return
        _, msg = error_message_from_body(data)
        code = err.get("code")
        kind = str(err.get("status") or "an error")
        if isinstance(code, int) and code >= 400:
            raise error_in_stream(self._ep, code, kind, msg or "", bounded(err, data))
        raise stream_error(self._ep, f"an error event ({kind}: {msg})")
