"""The local batch engine against a plain ``asyncio.gather`` over raw aiohttp, on N requests.

    python benchmarks/bench_local_batch.py [--n 100000] [--concurrency 100]

The fake provider runs in a subprocess (zero latency), and so does each contender, so that
each one's peak RSS is its own. Rows:

- ``salvo batch engine``: the local engine (``salvo.batches._engine.Job``) reading the JSONL
  file as a stream and writing output JSONL plus its SQLite state (resumable, exactly once);
- ``salvo abatch_completion``: the same calls through salvo's in-memory fan-out (the client
  without the engine: what the engine itself costs is the difference);
- ``asyncio.gather + aiohttp``: every request built up front, a semaphore of ``concurrency``,
  all responses kept in a list (what a hand-written script does);

and the engine's SQLite cost: flushes, total and worst flush time (it runs on the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "gpt-4o-mini"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def write_input(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"question {i}"}]}
            line = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")


async def run_engine(url: str, src: Path, work: Path, concurrency: int) -> dict[str, Any]:
    import salvo
    from salvo.batches._engine import Job
    from salvo.batches._types import Batch

    state = work / "out.jsonl.salvo-state.sqlite3"
    Job.create(state, Batch(id="batch_bench", provider="local"))
    async with salvo.Client() as client:
        job = Job(
            client,
            state_path=state,
            input_path=src,
            output_path=work / "out.jsonl",
            error_path=work / "out.errors.jsonl",
            model=f"openai/{MODEL}",
            overrides={"api_key": "k", "api_base": f"{url}/v1"},
            concurrency=concurrency,
        )
        started = time.perf_counter()
        batch = await job.run()
        elapsed = time.perf_counter() - started
    stats = job.statistics()
    return {
        "seconds": elapsed,
        "ok": batch.request_counts.completed,
        "flushes": stats.flushes,
        "flush_total_s": stats.flush_seconds,
        "flush_max_ms": stats.max_flush_seconds * 1000,
    }


async def run_fanout(url: str, src: Path, concurrency: int) -> dict[str, Any]:
    import salvo

    prompts = [json.loads(line)["body"]["messages"] for line in src.read_text().splitlines()]
    async with salvo.Client() as client:
        started = time.perf_counter()
        results = await client.abatch_completion(
            f"openai/{MODEL}", prompts, max_concurrency=concurrency, api_key="k",
            api_base=f"{url}/v1",
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "ok": sum(isinstance(r, salvo.ModelResponse) for r in results)}


async def run_gather(url: str, src: Path, concurrency: int) -> dict[str, Any]:
    import aiohttp

    bodies = [json.loads(line)["body"] for line in src.read_text().splitlines()]
    sem = asyncio.Semaphore(concurrency)
    headers = {"authorization": "Bearer k", "content-type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(body: dict[str, Any]) -> Any:
            async with sem:
                post = session.post(f"{url}/v1/chat/completions", json=body, headers=headers)
                async with post as resp:
                    return await resp.json()

        started = time.perf_counter()
        results = await asyncio.gather(*(one(b) for b in bodies))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "ok": sum(1 for r in results if "choices" in r)}


def child(args: argparse.Namespace) -> None:
    src, work = Path(args.input), Path(args.work)
    if args.child == "engine":
        out = asyncio.run(run_engine(args.url, src, work, args.concurrency))
    elif args.child == "fanout":
        out = asyncio.run(run_fanout(args.url, src, args.concurrency))
    else:
        out = asyncio.run(run_gather(args.url, src, args.concurrency))
    out["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(out))


def contender(name: str, url: str, src: Path, work: Path, concurrency: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--url", url, "--input", str(src),
           "--work", str(work), "--concurrency", str(concurrency)]  # fmt: skip
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="requests (default 100000)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--child", choices=("engine", "fanout", "gather"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    fake = subprocess.Popen(
        [sys.executable, "-m", "salvo.testing", "--port", "0", "--no-records"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().split()[-1]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            src = work / "requests.jsonl"
            write_input(src, args.n)
            size_mb = src.stat().st_size / 1e6
            print(f"N = {args.n} requests ({size_mb:.1f} MB of JSONL), concurrency "
                  f"{args.concurrency}, fake provider in a subprocess at {url}\n")  # fmt: skip
            rows = [
                ("salvo batch engine", contender("engine", url, src, work, args.concurrency)),
                ("salvo abatch_completion", contender("fanout", url, src, work, args.concurrency)),
                ("asyncio.gather + aiohttp", contender("gather", url, src, work, args.concurrency)),
            ]
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        if fake.stdout is not None:
            fake.stdout.close()
    print(f"{'contender':<26} {'ok':>8} {'seconds':>9} {'req/s':>9} {'peak RSS MB':>12}")
    for name, r in rows:
        rate = r["ok"] / r["seconds"]
        print(
            f"{name:<26} {r['ok']:>8} {r['seconds']:>9.2f} {rate:>9.0f} {r['peak_rss_mb']:>12.1f}"
        )
    engine = rows[0][1]
    print(f"\nengine SQLite: {engine['flushes']} flushes, {engine['flush_total_s'] * 1000:.0f} ms "
          f"in all ({engine['flush_total_s'] / engine['seconds']:.1%} of the run), worst "
          f"{engine['flush_max_ms']:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
