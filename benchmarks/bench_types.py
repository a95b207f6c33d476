"""Micro-benchmark: decode a chat completion and a stream chunk into salvo's types and read
the answer, the hot path every call takes. Run before/after a change to the types:

    .venv/bin/python benchmarks/bench_types.py
"""

from __future__ import annotations

import json
import timeit

import msgspec

from salvo._types import ChatCompletionChunk, ModelResponse

BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello " * 20},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }
).encode()
CHUNK = json.dumps(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
    }
).encode()


def main() -> None:
    dec = msgspec.json.Decoder(ModelResponse).decode
    dec_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode

    def attr() -> object:
        return dec(BODY).choices[0].message.content

    def chunk() -> object:
        return dec_chunk(CHUNK).choices[0].delta.content

    for name, fn in (("decode+attr ModelResponse", attr), ("decode+attr chunk", chunk)):
        n = 200_000
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n
        print(f"{name:28s} {best * 1e9:8.0f} ns/op")
    if hasattr(ModelResponse, "__getitem__"):
        resp = dec(BODY)

        def item() -> object:
            return resp["choices"][0]["message"]["content"]

        n = 200_000
        best = min(timeit.repeat(item, number=n, repeat=5)) / n
        print(f"{'dict access (decoded)':28s} {best * 1e9:8.0f} ns/op")


if __name__ == "__main__":
    main()
