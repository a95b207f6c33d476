"""What the Redis limits store adds to a request, against the in-process limiter, side by side.

Two measurements, each with rpm, tpm and max_parallel_requests set high enough never to wait:

- the limiter alone: ``await acquire(tokens)`` then ``release(tokens, used)``, one after another
  (the round trip to Redis is on the request's path; the release and the tpm correction go out
  in the next pipelined flush, off it);
- whole calls against the fake provider on loopback, one after another.

Latency is wall time per request; CPU is this process's CPU time per request (redis-server's
own CPU is not counted). Needs ``redis-server`` on PATH (skipped with a message otherwise).
``python benchmarks/bench_limits_store.py [--n 3000]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import salvo
from _redis_server import RedisServer, have_redis_server
from salvo._limit_spec import LimitSpec
from salvo._limits import KeyLimiter, Limiter
from salvo._redis_store import RedisStore
from salvo.testing import FakeProvider

SPEC = LimitSpec(rpm=10_000_000, tpm=10_000_000_000, max_parallel_requests=1000)
LIMITS = {"rpm": 10_000_000, "tpm": 10_000_000_000, "max_parallel_requests": 1000}
MSGS = [{"role": "user", "content": "hi"}]


async def limiter_only(limiter: Limiter, n: int) -> tuple[float, float]:
    for _ in range(200):  # warm up (connections, scripts loaded)
        await limiter.acquire(20)
        limiter.release(20, 25)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await limiter.acquire(20)
        limiter.release(20, 25)
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


async def whole_calls(client: salvo.Client, base: str, n: int) -> tuple[float, float]:
    kw = {"api_base": base, "api_key": "k", **LIMITS}
    for _ in range(100):
        await client.acompletion("openai/m", MSGS, **kw)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await client.acompletion("openai/m", MSGS, **kw)
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


async def run(url: str, n: int) -> None:
    store = RedisStore(url)
    rows: list[tuple[str, tuple[float, float], tuple[float, float]]] = []
    local = await limiter_only(KeyLimiter(SPEC), n)
    shared = await limiter_only(store.limiter(("openai", "bench", "k"), SPEC), n)
    await store.aclose()
    rows.append(("limiter alone (acquire + release)", local, shared))
    async with FakeProvider() as fake:
        async with salvo.Client() as plain:
            local = await whole_calls(plain, fake.openai_base, n)
        async with salvo.Client(limits_store=url) as client:
            shared = await whole_calls(client, fake.openai_base, n)
            assert client.statistics().limits_store == "redis"
    rows.append(("whole call to the fake (loopback)", local, shared))
    print(f"limits store: in-process vs Redis ({n} sequential requests, redis-server on loopback)")
    print(f"{'':36} {'in-process':>22} {'Redis':>22} {'added':>10}")
    for name, (lw, lc), (rw, rc) in rows:
        print(
            f"{name:36} {lw * 1e3:8.3f} ms {lc * 1e3:6.3f} ms CPU "
            f"{rw * 1e3:8.3f} ms {rc * 1e3:6.3f} ms CPU {(rw - lw) * 1e3:7.3f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    if not have_redis_server():
        print("bench_limits_store: skipped (no redis-server on PATH; apt-get install redis-server)")
        return
    server = RedisServer().start()
    try:
        asyncio.run(run(server.url, args.n))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
