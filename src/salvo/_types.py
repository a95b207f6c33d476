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
    "DictAccess",
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


_MISSING: Any = object()
_JSON = msgspec.json.Encoder()


class DictAccess:
    """What LiteLLM's and openai's response objects allow besides attributes, for code that
    uses them: ``resp["choices"][0]["message"]["content"]``, ``resp.get("usage")``,
    ``"usage" in resp``, ``model_dump()`` / ``model_dump_json()`` / ``json()`` (pydantic's
    names; ``json()`` is a JSON string, as pydantic's). Methods only: a struct decodes as
    fast as without them."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if type(key) is str and key in self.__struct_fields__:  # type: ignore[attr-defined]
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        if type(key) is str and key in self.__struct_fields__:  # type: ignore[attr-defined]
            return getattr(self, key)
        return default

    def __contains__(self, key: object) -> bool:
        return key in self.__struct_fields__  # type: ignore[attr-defined]

    def keys(self) -> tuple[str, ...]:
        fields: tuple[str, ...] = self.__struct_fields__  # type: ignore[attr-defined]
        return fields

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI JSON shape of this object, as plain Python builtins."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """pydantic's name for :meth:`to_dict` (its keyword options are accepted, unused)."""
        return self.to_dict()

    def model_dump_json(self, **_: Any) -> str:
        """The object as a JSON string."""
        return _JSON.encode(self).decode()

    def json(self, **_: Any) -> str:
        """The object as a JSON string (pydantic v1's name)."""
        return _JSON.encode(self).decode()


class _Base(DictAccess, msgspec.Struct, kw_only=True):
    pass


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
