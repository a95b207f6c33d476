"""Response types in the OpenAI shape, whatever the provider.

Every struct tolerates unknown fields (providers add fields often) and gives every
non-essential field a default. ``to_dict()`` returns the OpenAI JSON shape (plus salvo's
``provider``, ``latency_s`` and ``cost_usd`` keys, which OpenAI clients ignore).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ChatCompletionChunk",
    "Choice",
    "ChunkChoice",
    "ContenderReport",
    "Delta",
    "DeltaFunction",
    "DeltaToolCall",
    "Embedding",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "Function",
    "Message",
    "ModelResponse",
    "RaceReport",
    "ToolCall",
    "Usage",
]


class _Base(msgspec.Struct, kw_only=True):
    def to_dict(self) -> dict[str, Any]:
        """The OpenAI JSON shape of this object, as plain Python builtins."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class Function(_Base):
    name: str = ""
    arguments: str = ""


class ToolCall(_Base):
    id: str = ""
    type: str = "function"
    function: Function = msgspec.field(default_factory=Function)


class Message(_Base):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None


class Choice(_Base):
    index: int = 0
    message: Message = msgspec.field(default_factory=Message)
    finish_reason: str | None = None
    logprobs: Any = None


class Usage(_Base):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class ContenderReport(_Base):
    """One contender of a race (``RaceReport.contenders``, in ``models`` order).

    ``outcome``: ``won`` / ``lost`` / ``failed`` / ``not_started``; ``started_s``: seconds from
    the start of the race (None if never started); ``duration_s``: until it answered, failed or
    was closed; ``hedge``: started by the hedge timer (not at once, nor to replace a failure);
    ``cost_usd``: what it cost where the price is known, ``estimated`` when any part of it is an
    estimate (a loser closed before the provider reported usage)."""

    model: str
    outcome: str = "not_started"
    started_s: float | None = None
    duration_s: float | None = None
    hedge: bool = False
    usage: Usage | None = None
    cost_usd: float | None = None
    estimated: bool = False


class RaceReport(_Base):
    """What a race (``arace`` / ``afirst_k``) did and cost: ``resp.race`` / ``stream.race``.

    ``winner``: the index in ``models`` of the contender that produced this answer;
    ``cost_usd``: the sum of every contender's known ``cost_usd`` (estimated parts included,
    each contender marked ``estimated``), None when no contender's cost is known. For a
    streamed race the winner's entry is completed when the stream is closed."""

    winner: int | None = None
    contenders: list[ContenderReport] = msgspec.field(default_factory=list)
    cost_usd: float | None = None
    hedges: int = 0


class ModelResponse(_Base):
    """A chat completion (``object: "chat.completion"``)."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    provider: str = ""
    latency_s: float = 0.0
    cost_usd: float | None = None
    race: RaceReport | None = None

    @property
    def content(self) -> str | None:
        """The first choice's text, the field most callers want."""
        return self.choices[0].message.content if self.choices else None


class DeltaFunction(_Base):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(_Base):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: DeltaFunction | None = None


class Delta(_Base):
    role: str | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(_Base):
    index: int = 0
    delta: Delta = msgspec.field(default_factory=Delta)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletionChunk(_Base):
    """One streamed piece (``object: "chat.completion.chunk"``).

    ``latency_s`` is the time from the start of the call to this chunk's arrival.
    """

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    provider: str = ""
    latency_s: float = 0.0


class Embedding(_Base):
    object: str = "embedding"
    index: int = 0
    embedding: list[float] | str = msgspec.field(default_factory=list)


class EmbeddingUsage(_Base):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(_Base):
    object: str = "list"
    data: list[Embedding] = msgspec.field(default_factory=list)
    model: str = ""
    usage: EmbeddingUsage | None = None
    provider: str = ""
    latency_s: float = 0.0
    cost_usd: float | None = None
