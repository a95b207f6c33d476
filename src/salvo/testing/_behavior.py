"""What the fake answers: the `Behavior` struct and per-model scripts.

A `Behavior` is plain data (a frozen msgspec Struct), so the same value can be built in Python,
sent as JSON in an ``x-fake-behavior`` request header, or posted to ``/_fake/script`` by another
process. A script maps the 0-based request count of one model to a Behavior.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias, get_args

import msgspec

__all__ = [
    "FAULTS",
    "Behavior",
    "Fault",
    "Script",
    "ScriptSpec",
    "ToolCallSpec",
    "decode_behavior",
    "decode_script_spec",
]

Fault: TypeAlias = Literal[
    "reset_before_body",
    "reset_mid_body",
    "truncated_json",
    "html_error",
    "no_terminator",
    "midstream_error",
    "stall",
    "drip",
]
FAULTS: frozenset[str] = frozenset(get_args(Fault))
_LINE_ENDINGS = frozenset({"\n", "\r\n", "\r"})


class ToolCallSpec(msgspec.Struct, frozen=True):
    """One tool call in a scripted answer; ``arguments`` is the JSON text the model "wrote"."""

    name: str
    arguments: str
    id: str | None = None


class Behavior(msgspec.Struct, kw_only=True, frozen=True):
    """How the fake answers one request. Every field has a default: ``Behavior()`` is a quick,
    well-formed answer. See the package docstring for what each field does."""

    latency: float = 0.0
    first_chunk_delay: float = 0.0
    status: int = 200
    error_message: str | None = None
    error_code: str | None = None
    error_type: str | None = None
    headers: dict[str, str] = {}
    text: str | None = None
    chunks: int = 4
    chunk_interval: float = 0.0
    tool_calls: list[ToolCallSpec] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    fault: Fault | None = None
    fault_after: int = 1
    stall_s: float = 5.0
    sse_line_ending: Literal["\n", "\r\n", "\r"] | None = None
    sse_comments: bool = False
    split_writes: bool = False
    include_usage: bool | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {sorted(FAULTS)}")
        if self.sse_line_ending is not None and self.sse_line_ending not in _LINE_ENDINGS:
            raise ValueError(r"sse_line_ending must be '\n', '\r\n' or '\r'")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status (100-599), got {self.status}")
        if self.chunks < 1:
            raise ValueError(f"chunks must be at least 1, got {self.chunks}")
        if self.fault_after < 0:
            raise ValueError(f"fault_after must not be negative, got {self.fault_after}")
        if min(self.latency, self.first_chunk_delay, self.chunk_interval, self.stall_s) < 0:
            raise ValueError("latency, first_chunk_delay, chunk_interval and stall_s must be >= 0")

    @property
    def is_error(self) -> bool:
        return not 200 <= self.status < 300


ScriptSpec: TypeAlias = Behavior | Sequence[Behavior] | Callable[[int], Behavior]


class Script:
    """A model's script: one Behavior for every request, a list played in order (the last one
    repeats), or a callable of the 0-based request count."""

    __slots__ = ("_fixed", "_func", "_seq")

    def __init__(self, spec: ScriptSpec) -> None:
        self._fixed: Behavior | None = None
        self._seq: tuple[Behavior, ...] = ()
        self._func: Callable[[int], Behavior] | None = None
        if isinstance(spec, Behavior):
            self._fixed = spec
        elif callable(spec):
            self._func = spec
        else:
            seq = tuple(spec)
            if not seq:
                raise ValueError("a script list needs at least one Behavior")
            for item in seq:
                if not isinstance(item, Behavior):
                    raise TypeError(f"a script list holds Behavior values, got {item!r}")
            self._seq = seq

    def pick(self, n: int) -> Behavior:
        if self._fixed is not None:
            return self._fixed
        if self._func is not None:
            got = self._func(n)
            if not isinstance(got, Behavior):
                raise TypeError(f"a script callable must return a Behavior, got {got!r}")
            return got
        return self._seq[min(n, len(self._seq) - 1)]


_DECODE_BEHAVIOR = msgspec.json.Decoder(Behavior)


def decode_behavior(raw: str | bytes) -> Behavior:
    """A Behavior from its JSON object (the ``x-fake-behavior`` header); ValueError if invalid."""
    try:
        return _DECODE_BEHAVIOR.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"invalid Behavior JSON: {exc}") from None


def decode_script_spec(value: object) -> Behavior | list[Behavior]:
    """A Behavior, or a list of them, from already-parsed JSON (the control endpoint)."""
    try:
        return msgspec.convert(value, Behavior | list[Behavior])
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid Behavior JSON: {exc}") from None
