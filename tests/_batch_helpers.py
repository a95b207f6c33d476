"""What the batch tests share: OpenAI-format input files, the ``salvo batch`` CLI run in a
worker thread, and the custom_ids of result files."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

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
