"""What the batch tests share: OpenAI-format input files, a batch's results, the ``salvo
batch`` CLI run in a worker thread, and the custom_ids of result files."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from salvo import batches
from salvo.cli import main


def jsonl(model: str, n: int, *, url: str = "/v1/chat/completions", **body: Any) -> bytes:
    """``n`` batch input lines ``req-0`` .. for ``model`` (chat, or embeddings by ``url``)."""
    lines = []
    for i in range(n):
        payload = (
            {"input": f"text {i}"}
            if url.endswith("embeddings")
            else {"messages": [{"role": "user", "content": f"question {i}"}]}
        )
        line = {"custom_id": f"req-{i}", "method": "POST", "url": url,
                "body": {"model": model, **payload, **body}}  # fmt: skip
        lines.append(json.dumps(line))
    return ("\n".join(lines) + "\n").encode()


def chat_lines(n: int, model: str = "gemini-2.5-flash", **extra: Any) -> bytes:
    """``n`` chat lines ``req-0`` .. with a system message and ``max_tokens`` 16."""
    return b"".join(
        json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": model, "max_tokens": 16, **extra,
                             "messages": [{"role": "system", "content": "Be terse."},
                                          {"role": "user", "content": f"question {i}"}]}}).encode()
        + b"\n"
        for i in range(n)
    )  # fmt: skip


async def results_of(b: batches.Batch, kw: dict[str, Any]) -> list[batches.BatchResult]:
    """All the results of a batch, in the order they come."""
    async with batches.abatch_results(b, **kw) as rs:
        return [r async for r in rs]


async def salvo_cli(*argv: str) -> int:
    """``salvo batch *argv`` in a worker thread (its own event loop, as in its own process)."""
    return await asyncio.to_thread(main, ["batch", *argv])


def ids_in(*paths: Path) -> Counter[str]:
    """How often each custom_id appears in the JSONL files (a file not there counts none)."""
    return Counter(
        json.loads(line)["custom_id"]
        for p in paths
        if p.exists()
        for line in p.read_bytes().splitlines()
    )
