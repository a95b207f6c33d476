"""Client CPU per stream chunk by wire format: OpenAI vs Anthropic, Gemini, Cohere, Azure.

``python benchmarks/bench_provider_streams.py`` (part of ``make bench``). The fake provider
runs in its own process; each format is streamed through salvo (``Client.acompletion(...,
stream=True)``) with the same chunk count, and this process's CPU time is divided by the chunks
received. Formats take turns over several rounds and the median is reported, with each
format's ratio to the OpenAI path measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import salvo
from benchmarks._fake import FakeProcess, script

FORMATS = ("openai", "anthropic", "gemini", "cohere", "azure")
MSGS = [{"role": "user", "content": "stream please"}]


async def one_round(client: salvo.Client, fmt: str, streams: int, concurrency: int) -> float:
    """CPU seconds per chunk for ``streams`` streams of format ``fmt``."""
    sem = asyncio.Semaphore(concurrency)
    chunks = 0

    async def go() -> None:
        nonlocal chunks
        async with sem:
            stream = await client.acompletion(f"{fmt}-m", MSGS, stream=True)
            async with stream:
                async for _ in stream:
                    chunks += 1

    t0 = time.process_time()
    await asyncio.gather(*(go() for _ in range(streams)))
    return (time.process_time() - t0) / max(chunks, 1)


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    with FakeProcess(records=False) as fake:
        script(fake.url, "m", {"chunks": args.chunks, "text": "tok " * args.chunks})
        bases = {
            "openai": f"{fake.url}/v1",
            "anthropic": fake.url,
            "gemini": fake.url,
            "cohere": fake.url,
            "azure": fake.url,
        }
        config = {
            "model_list": [
                {
                    "model_name": f"{f}-m",
                    "params": {"model": f"{f}/m", "api_base": bases[f], "api_key": "bench"},
                }
                for f in FORMATS
            ]
        }
        async with salvo.Client(config=config) as client:
            for f in FORMATS:  # warm up connections and code paths
                await one_round(client, f, 4, 4)
            samples: dict[str, list[float]] = {f: [] for f in FORMATS}
            for r in range(args.rounds):
                order = FORMATS[r % len(FORMATS) :] + FORMATS[: r % len(FORMATS)]
                for f in order:
                    samples[f].append(await one_round(client, f, args.streams, 16))
    return {f: statistics.median(v) for f, v in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=200, help="content chunks per stream (200)")
    ap.add_argument("--streams", type=int, default=40, help="streams per round (40)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, median taken (5)")
    args = ap.parse_args()
    result = asyncio.run(main_async(args))
    base = result["openai"]
    print(f"client CPU per stream chunk, {args.chunks}-chunk streams, median of {args.rounds}")
    print(f"{'format':<10} {'us/chunk':>9} {'vs openai':>10}")
    for f, v in result.items():
        print(f"{f:<10} {v * 1e6:9.1f} {v / base:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
