"""The proxy's added latency and throughput: ``python benchmarks/bench_proxy.py``.

Three processes on loopback: the fake provider (``python -m salvo.testing --no-records``), the
proxy (``salvo serve`` in front of it), and an aiohttp load generator (this file with
``--loadgen``) that keeps a fixed number of requests in flight, bounded by a request count and
a time limit. Each concurrency level is measured against the fake directly and through the
proxy, alternating, ``--rounds`` times; the round with the median p50 is reported. The added
latency is proxy minus direct at the same concurrency; ``x-salvo-overhead-ms`` is the proxy's
own account of its share (see ``salvo.proxy._relay.Timer``). CPU us/req is the server under
test's CPU (user + system, children included) per request served; under each saturated level
a line adds up the CPU per request of all three processes in the proxy run (load generator:
its own process time over the measured requests; fake: its CPU while serving the proxy), which
bounds the throughput any proxy can reach on this machine: CPUs / (sum of CPU per request).

Options: ``--concurrency 1,32`` ``--requests 6000`` ``--seconds 15`` ``--rounds 3``
``--workers 1`` ``--stream`` (relay SSE instead of JSON) ``--json`` (machine-readable output).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KEY = "bench-master-key"
BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}]}
).encode()


# -- the load generator (its own process) ----------------------------------------------------


async def _loadgen(
    url: str, concurrency: int, requests: int, seconds: float, stream: bool
) -> dict[str, Any]:
    import aiohttp

    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load a non-loopback address: {host}")
    body = json.loads(BODY)
    if stream:
        body["stream"] = True
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    latencies: list[float] = []
    overheads: list[float] = []
    errors = 0
    remaining = requests
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            async with http.post(url, data=payload, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
                overhead = resp.headers.get("x-salvo-overhead-ms")
            if not ok:
                errors += 1
                return
            latencies.append(time.perf_counter() - t0)
            if overhead is not None:
                overheads.append(float(overhead))

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                await one()

        for _ in range(min(concurrency * 4, 200)):  # warm the connections and the JIT-less paths
            await one()
        latencies.clear()
        overheads.clear()
        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {
        "latencies": latencies,
        "overheads": overheads,
        "errors": errors,
        "elapsed": elapsed,
        "cpu": cpu,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(raw: dict[str, Any]) -> dict[str, Any]:
    lat = raw["latencies"]
    over = raw["overheads"]
    return {
        "requests": len(lat),
        "errors": raw["errors"],
        "rps": len(lat) / raw["elapsed"] if raw["elapsed"] else 0.0,
        "p50_ms": _pct(lat, 0.50) * 1000,
        "p99_ms": _pct(lat, 0.99) * 1000,
        "overhead_p50_ms": _pct(over, 0.50) if over else None,
        "overhead_p99_ms": _pct(over, 0.99) if over else None,
        # the load generator's own CPU over the measured requests (no start-up, no warm-up)
        "loadgen_cpu_us_per_request": raw["cpu"] / max(len(lat) + raw["errors"], 1) * 1e6,
    }


# -- the driver ---------------------------------------------------------------------------------


def _start(cmd: list[str], marker: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        raise SystemExit(f"{cmd[:4]} did not start: {line!r}")
    return proc, line.split(marker, 1)[1].split()[0]


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children still running (Linux /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _measure(
    url: str, args: argparse.Namespace, concurrency: int, pid: int, upstream_pid: int | None = None
) -> dict[str, Any]:
    """One load-generator run against ``url``; ``pid`` is the server under test and
    ``upstream_pid`` (proxy runs) the fake behind it, whose CPU is reported too."""
    cmd = [sys.executable, __file__, "--loadgen", url, "--concurrency", str(concurrency),
           "--requests", str(args.requests), "--seconds", str(args.seconds)]  # fmt: skip
    if args.stream:
        cmd.append("--stream")
    cpu = _cpu_seconds(pid)
    up = _cpu_seconds(upstream_pid) if upstream_pid is not None else 0.0
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=args.seconds + 60)
    cpu = _cpu_seconds(pid) - cpu
    summary = _summary(json.loads(out.stdout))
    # CPU of the server under test per request (warm-up requests included in the count)
    served = max(summary["requests"] + summary["errors"] + min(concurrency * 4, 200), 1)
    summary["cpu_us_per_request"] = cpu / served * 1e6
    if upstream_pid is not None:
        summary["upstream_cpu_us_per_request"] = (_cpu_seconds(upstream_pid) - up) / served * 1e6
    return summary


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(rounds, key=lambda r: r["p50_ms"])[len(rounds) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--loadgen", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    levels = [int(c) for c in str(args.concurrency).split(",")]
    if args.loadgen:
        result = asyncio.run(
            _loadgen(args.loadgen, levels[0], args.requests, args.seconds, args.stream)
        )
        json.dump(result, sys.stdout)
        return 0

    fake, fake_url = _start(
        [sys.executable, "-m", "salvo.testing", "--port", "0", "--no-records"], "listening on "
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "proxy.yaml"
        config.write_text(
            "model_list:\n  - model_name: bench\n    params:\n"
            f"      model: openai/gpt-4o-mini\n      api_base: {fake_url}/v1\n      api_key: k\n"
            f"general_settings:\n  master_key: {KEY}\n",
            encoding="utf-8",
        )
        proxy, proxy_url = _start(
            [sys.executable, "-m", "salvo.cli", "serve", "--config", str(config),
             "--port", "0", "--workers", str(args.workers)],
            "listening on ",
        )  # fmt: skip
        try:
            results = []
            for c in levels:
                direct, through = [], []
                for _ in range(args.rounds):
                    direct.append(_measure(fake_url + "/v1/chat/completions", args, c, fake.pid))
                    url = proxy_url + "/v1/chat/completions"
                    through.append(_measure(url, args, c, proxy.pid, fake.pid))
                d, p = _median_round(direct), _median_round(through)
                results.append({"concurrency": c, "direct": d, "proxy": p})
        finally:
            _stop(proxy)
            _stop(fake)
    _report(results, args)
    return 0


def _report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return
    kind = "streamed (SSE)" if args.stream else "JSON"
    print(
        f"salvo proxy benchmark: {kind} chat completions, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, proxy workers {args.workers}, "
        f"median of {args.rounds} rounds, up to {args.requests} requests / {args.seconds:g} s each"
    )
    head = f"{'conc':>4}  {'target':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    print(head + f" {'CPU us/req':>10}  {'overhead p50/p99 ms':>20}")
    for r in results:
        for name in ("direct", "proxy"):
            s = r[name]
            over = ""
            if s["overhead_p50_ms"] is not None:
                over = f"{s['overhead_p50_ms']:.3f} / {s['overhead_p99_ms']:.3f}"
            print(
                f"{r['concurrency']:>4}  {name:<7} {s['rps']:>8.0f} {s['p50_ms']:>8.3f} "
                f"{s['p99_ms']:>8.3f} {s['errors']:>6} {s['cpu_us_per_request']:>10.0f}  {over:>20}"
            )
        d, p = r["direct"], r["proxy"]
        print(
            f"{'':>4}  added   p50 {p['p50_ms'] - d['p50_ms']:+.3f} ms, "
            f"p99 {p['p99_ms'] - d['p99_ms']:+.3f} ms; "
            f"throughput {p['rps'] / d['rps']:.0%} of direct"
        )
        if r["concurrency"] == 1:
            continue  # one request at a time is bound by latency, not by CPU
        lg, px, fk = (
            p["loadgen_cpu_us_per_request"],
            p["cpu_us_per_request"],
            p.get("upstream_cpu_us_per_request", 0.0),
        )
        total = lg + px + fk
        ceiling = (os.cpu_count() or 1) * 1e6 / total if total else float("nan")
        print(
            f"{'':>4}  CPU/req through the proxy: loadgen {lg:.0f} + proxy {px:.0f} + fake "
            f"{fk:.0f} = {total:.0f} us, so at most {ceiling:.0f} req/s on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    sys.exit(main())
