"""Deterministic answer content shared by every wire format: text, pieces, token counts, vectors.

Nothing here is random, so two runs of the same test see the same bytes (ids aside).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from typing import Any

from ._behavior import Behavior

__all__ = [
    "DEFAULT_DIMENSIONS",
    "answer_text",
    "completion_tokens",
    "count_words",
    "embedding",
    "float32_base64",
    "now",
    "prompt_tokens",
    "split",
]

DEFAULT_DIMENSIONS = 8

# Keys under which request text lives in the four formats; everything else (model, roles,
# parameters) is not prompt text.
_TEXT_KEYS = frozenset(
    {
        "messages",
        "content",
        "text",
        "system",
        "contents",
        "parts",
        "systemInstruction",
        "input",
        "texts",
        "requests",
    }
)


def answer_text(behavior: Behavior, model: str) -> str:
    """The scripted text, or the default sentence naming the model (empty with tool calls)."""
    if behavior.text is not None:
        return behavior.text
    if behavior.tool_calls:
        return ""
    return f"Hello from {model}. This is a scripted answer."


def split(text: str, pieces: int) -> list[str]:
    """``text`` in ``pieces`` contiguous parts of near-equal length (fewer if it is shorter)."""
    n = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), n)
    out: list[str] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def count_words(node: Any) -> int:
    """Whitespace-separated words in the prompt-text parts of a request body."""
    if isinstance(node, str):
        return len(node.split())
    if isinstance(node, list):
        return sum(count_words(item) for item in node)
    if isinstance(node, dict):
        return sum(count_words(v) for k, v in node.items() if k in _TEXT_KEYS)
    return 0


def prompt_tokens(behavior: Behavior, body: Any) -> int:
    if behavior.prompt_tokens is not None:
        return behavior.prompt_tokens
    return max(1, count_words(body))


def completion_tokens(behavior: Behavior, text: str) -> int:
    if behavior.completion_tokens is not None:
        return behavior.completion_tokens
    words = len(text.split())
    for call in behavior.tool_calls or ():
        words += 1 + len(call.arguments.split())
    return max(1, words)


def embedding(model: str, item: Any, dimensions: int) -> list[float]:
    """A unit-length vector derived from a hash of (model, input); every value is exactly
    representable as float32, so the float and base64 encodings decode to the same numbers."""
    seed = f"{model}\x00{item!r}".encode()
    raw = b""
    counter = 0
    while len(raw) < 2 * dimensions:
        raw += hashlib.blake2b(seed + counter.to_bytes(4, "little"), digest_size=64).digest()
        counter += 1
    values = [
        (int.from_bytes(raw[2 * i : 2 * i + 2], "little") - 32767.5) for i in range(dimensions)
    ]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def float32_base64(values: list[float]) -> str:
    """Little-endian float32 bytes, base64-encoded (OpenAI ``encoding_format: "base64"``)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def now() -> int:
    return int(time.time())
