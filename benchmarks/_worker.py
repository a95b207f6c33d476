"""One system, measured in a fresh process: ``python -m benchmarks._worker --system S ...``.

Two modes. ``serve``: set the system up, then take commands, one JSON object per line on stdin
(``{"op": "calls", "kind": "complete", "n": 2000, "concurrency": 64}``, ``"warm"``, ``"race"``,
``"gather"``, ``"quit"``) and answer each with one line ``@@bench {json}`` on stdout. The
harness keeps one such process per system and alternates their measured runs, so a change
in the machine's background load hits every system alike. ``batch``: one batch of many
prompts, alone in its process so that its peak RSS means something, written to ``--out``.

CPU is the process's own CPU time (``time.process_time()``: every thread, user + system) over
the measured section; the fake server's CPU over the same section comes from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._fake import fake_records, proc_cpu_s
from ._systems import Msgs, System, make_system

MSGS: Msgs = [{"role": "user", "content": "Say hello in one short sentence."}]
RACE_LATENCY = {"race-fast": 0.05, "race-mid": 0.15, "race-slow": 0.30}
STREAM_CHUNKS = 200


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:  # not Linux: the peak is all getrusage knows
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return 0.0


class Meter:
    """Client CPU, wall time and the fake's CPU over one section."""

    def __init__(self, fake_pid: int) -> None:
        self.fake_pid = fake_pid

    def __enter__(self) -> Meter:
        self.f0 = proc_cpu_s(self.fake_pid)
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.c0
        self.wall = time.perf_counter() - self.t0
        self.fake_cpu = proc_cpu_s(self.fake_pid) - self.f0


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def run_calls(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> int:
    """``n`` calls, ``concurrency`` at a time (a pool of that many workers)."""
    if concurrency == 1:
        for _ in range(n):
            await call()
        return n
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return n


async def sample_calls(
    call: Callable[[], Awaitable[Any]], *, n: int, concurrency: int, per_call: int, fake_pid: int
) -> dict[str, Any]:
    """One measured run of ``n`` calls: CPU per unit (call or chunk), rate, the fake's CPU."""
    with Meter(fake_pid) as m:
        await run_calls(call, n, concurrency)
    units = n * per_call
    return {
        "n": n,
        "cpu_us": m.cpu / units * 1e6,
        "per_s": n / m.wall,
        "fake_cpu_us": m.fake_cpu / units * 1e6,
        "fake_util": m.fake_cpu / m.wall,
        "wall_s": m.wall,
    }


async def measure_race(sys_: System, args: argparse.Namespace) -> dict[str, Any]:
    models = list(RACE_LATENCY)
    fastest = min(RACE_LATENCY.values())
    rows = []
    for i in range(args.race_iters + 1):
        t0 = time.monotonic()
        c0 = time.process_time()
        if sys_.sync_fanout:
            winner = sys_.race_sync(models, MSGS)  # type: ignore[attr-defined]
        else:
            winner = await sys_.race(models, MSGS)
        t1 = time.monotonic()
        cpu = time.process_time() - c0
        # Let every loser that was not cancelled run to its end, then read the records.
        await asyncio.sleep(max(0.0, t0 + max(RACE_LATENCY.values()) + 0.12 - time.monotonic()))
        recs = {
            m: [r for r in fake_records(args.fake_url, m) if r["arrived"] >= t0] for m in models
        }
        if i == 0:
            continue  # warm-up
        fast = recs["race-fast"][0] if recs["race-fast"] else None
        lags = []
        cut = []
        for m in models[1:]:
            for r in recs[m]:
                if r["closed"] is not None:
                    lags.append((r["closed"] - t1) * 1e3)
                cut.append(r["disconnected"] is not None)
        rows.append(
            {
                "winner": winner,
                "return_ms": (t1 - t0) * 1e3,
                "overhead_ms": (t1 - t0 - fastest) * 1e3,
                "after_answer_ms": (t1 - fast["completed"]) * 1e3
                if fast and fast["completed"]
                else None,
                "loser_close_ms": max(lags) if lags else None,
                "losers_cut": all(cut) and len(cut) == len(models) - 1,
                "cpu_ms": cpu * 1e3,
            }
        )

    def col(k: str) -> list[float]:
        return [r[k] for r in rows if r[k] is not None]

    return {
        "iterations": len(rows),
        "latencies_ms": {m: v * 1e3 for m, v in RACE_LATENCY.items()},
        "return_ms": med(col("return_ms")),
        "overhead_ms": med(col("overhead_ms")),
        "overhead_ms_max": max(col("overhead_ms"), default=float("nan")),
        "after_answer_ms": med(col("after_answer_ms")),
        "after_answer_ms_max": max(col("after_answer_ms"), default=float("nan")),
        "loser_close_ms": med(col("loser_close_ms")),
        "loser_close_ms_max": max(col("loser_close_ms"), default=float("nan")),
        "losers_cut": all(r["losers_cut"] for r in rows),
        "winner_ok": all(str(r["winner"]).endswith("race-fast") for r in rows),
        "cpu_ms": med(col("cpu_ms")),
        "rows": rows,
    }


async def measure_gather(sys_: System, args: argparse.Namespace) -> dict[str, Any]:
    models = list(RACE_LATENCY)
    slowest = max(RACE_LATENCY.values())
    walls, cpus = [], []
    for i in range(args.gather_iters + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        if sys_.sync_fanout:
            n = sys_.gather_sync(models, MSGS)  # type: ignore[attr-defined]
        else:
            n = await sys_.gather(models, MSGS)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        assert n == len(models), n
        if i:
            walls.append(wall)
            cpus.append(cpu)
    return {
        "iterations": len(walls),
        "wall_ms": med(walls) * 1e3,
        "overhead_ms": (med(walls) - slowest) * 1e3,
        "cpu_ms": med(cpus) * 1e3,
    }


def _call(sys_: System, kind: str) -> Callable[[], Awaitable[Any]]:
    if kind == "complete":
        return lambda: sys_.complete("bench", MSGS)
    if kind in ("stream-spaced", "stream-burst"):
        return lambda: sys_.stream(kind, MSGS)
    raise ValueError(f"unknown kind {kind!r}")


async def serve(sys_: System, args: argparse.Namespace) -> None:
    """Answer the harness's commands until "quit" (or end of input)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await sys_.setup()
    try:
        reply({"ready": True})
        while line := await reader.readline():
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "quit":
                break
            try:
                if op in ("warm", "calls"):
                    res = await sample_calls(
                        _call(sys_, cmd["kind"]),
                        n=cmd["n"],
                        concurrency=cmd["concurrency"],
                        per_call=cmd.get("per_call", 1),
                        fake_pid=args.fake_pid,
                    )
                elif op == "race":
                    res = await measure_race(sys_, args)
                elif op == "gather":
                    res = await measure_gather(sys_, args)
                else:
                    res = {"error": f"unknown op {op!r}"}
            except Exception as exc:  # reported, and the harness leaves this system out
                res = {"error": f"{op} failed: {exc!r}"[:500]}
            reply(res)
    finally:
        await sys_.aclose()


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write("@@bench " + json.dumps(obj) + "\n")
    sys.stdout.flush()


async def batch(sys_: System, args: argparse.Namespace) -> dict[str, Any]:
    await sys_.setup()
    try:
        prompts = [
            [{"role": "user", "content": f"Prompt number {i}."}] for i in range(args.batch_n)
        ]
        warm = prompts[:200]
        if sys_.sync_fanout:
            sys_.batch_sync("bench", warm, args.batch_concurrency)  # type: ignore[attr-defined]
        else:
            await sys_.batch("bench", warm, args.batch_concurrency)
        rss0 = rss_mb()
        with Meter(args.fake_pid) as m:
            if sys_.sync_fanout:
                n = sys_.batch_sync("bench", prompts, args.batch_concurrency)  # type: ignore[attr-defined]
            else:
                n = await sys_.batch("bench", prompts, args.batch_concurrency)
        total = len(prompts)
        return {
            "n": total,
            "ok": n,
            "concurrency": args.batch_concurrency,
            "wall_s": m.wall,
            "cpu_s": m.cpu,
            "per_s": total / m.wall,
            "cpu_us": m.cpu / total * 1e6,
            "rss_before_mb": rss0,
            "peak_rss_mb": rss_mb("VmHWM"),
            "fake_cpu_s": m.fake_cpu,
        }
    finally:
        await sys_.aclose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._worker")
    p.add_argument("--system", required=True)
    p.add_argument("--group", choices=("serve", "batch"), required=True)
    p.add_argument("--fake-url", required=True, help="the fake server's root URL")
    p.add_argument("--fake-pid", type=int, required=True)
    p.add_argument("--race-iters", type=int, default=10)
    p.add_argument("--gather-iters", type=int, default=5)
    p.add_argument("--batch-n", type=int, default=10_000)
    p.add_argument("--batch-concurrency", type=int, default=100)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    system = make_system(args.system, args.fake_url + "/v1")
    if args.group == "serve":
        asyncio.run(serve(system, args))
        return 0
    res = asyncio.run(batch(system, args))
    with open(args.out, "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
