"""Load generators for ``bench_proxy.py``: wrk when it is installed, else an aiohttp client.

Both keep a fixed number of requests in flight against one URL on loopback, in a process of
their own, and report the same summary: requests, errors, req/s, p50/p99 latency, the
``x-salvo-overhead-ms`` header's p50/p99 and the generator's own CPU per request.

The generator's CPU is part of the machine the benchmark shares. On 2 cores the aiohttp
generator spends about 300 us of CPU a request, as much as half of what the proxy costs, and
caps what any server behind it can show; wrk (C, the usual HTTP load generator, Debian package
``wrk``) spends about 40 us. wrk is used when it is on PATH; ``--loadgen python`` forces the
aiohttp one. Every figure says which generator produced it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["check_loopback", "pick", "run_python", "run_wrk"]


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load a non-loopback address: {host}")


def pick(choice: str) -> str:
    """``auto`` -> ``wrk`` when installed, else ``python``; an explicit ``wrk`` must exist."""
    if choice == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if choice == "wrk":
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk); or --loadgen python")
    return "python"


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- wrk ----------------------------------------------------------------------------------------

# One wrk thread; every response's x-salvo-overhead-ms kept in the thread's state and read back
# in done(), which prints one JSON line after the marker.
_WRK_LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) overheads = {} end
function response(status, headers, body)
  local v = headers["x-salvo-overhead-ms"] or headers["X-Salvo-Overhead-Ms"]
  if v then overheads[#overheads + 1] = tonumber(v) end
end
function done(summary, latency, requests)
  local over = {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("overheads")) do over[#over + 1] = v end
  end
  table.sort(over)
  local function pick(q)
    if #over == 0 then return "null" end
    return string.format("%%.4f", over[math.min(#over, math.floor(q * #over) + 1)])
  end
  local e = summary.errors
  io.write(string.format(
    'SALVO_JSON {"requests": %%d, "duration_us": %%d, "errors": %%d, ' ..
    '"p50_us": %%d, "p99_us": %%d, "overhead_p50_ms": %%s, "overhead_p99_ms": %%s}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), pick(0.50), pick(0.99)))
end
"""


#: CPU seconds so far of each server process under load (read before and after a run).
Probe = Callable[[], list[float]]


def _per_request(before: list[float], after: list[float], served: int) -> list[float]:
    return [(b - a) / max(served, 1) * 1e6 for a, b in zip(before, after, strict=True)]


def run_wrk(
    url: str, concurrency: int, seconds: float, body: bytes, key: str, probe: Probe
) -> dict[str, Any]:
    """A 1 s warm-up, then ``seconds`` of load with ``concurrency`` connections; the servers'
    CPU is read around the measured run only."""
    check_loopback(url)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_WRK_LUA % {"body": body.decode(), "key": key}, encoding="utf-8")

        def wrk(duration: str) -> str:
            cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}", "-s", str(script), url]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            return done.stdout

        wrk("1s")
        cpu, servers = _children_cpu(), probe()
        out = wrk(f"{seconds:g}s")
        cpu, servers_after = _children_cpu() - cpu, probe()
    line = next(x for x in out.splitlines() if x.startswith("SALVO_JSON "))
    raw = json.loads(line.split(" ", 1)[1])
    ok = raw["requests"] - raw["errors"]
    return {
        "served": raw["requests"],
        "requests": ok,
        "errors": raw["errors"],
        "rps": ok / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "overhead_p50_ms": raw["overhead_p50_ms"],
        "overhead_p99_ms": raw["overhead_p99_ms"],
        "loadgen_cpu_us_per_request": cpu / max(raw["requests"], 1) * 1e6,
        "server_cpu_us_per_request": _per_request(servers, servers_after, raw["requests"]),
    }


# -- the aiohttp generator (``python benchmarks/_loadgen.py URL C N S`` prints raw JSON) ---------


async def _aiohttp_load(
    url: str, concurrency: int, requests: int, seconds: float, payload: bytes, key: str
) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
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

        for _ in range(min(concurrency * 4, 200)):  # warm the connections
            await one()
        latencies.clear()
        overheads.clear()
        errors = 0
        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    n = len(latencies)
    return {
        "warmup": min(concurrency * 4, 200),
        "served": n + errors,
        "requests": n,
        "errors": errors,
        "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": (_pct(latencies, 0.50) or 0.0) * 1000,
        "p99_ms": (_pct(latencies, 0.99) or 0.0) * 1000,
        "overhead_p50_ms": _pct(overheads, 0.50),
        "overhead_p99_ms": _pct(overheads, 0.99),
        # its own CPU over the measured requests (no start-up, no warm-up)
        "loadgen_cpu_us_per_request": cpu / max(n + errors, 1) * 1e6,
    }


def run_python(
    url: str, concurrency: int, requests: int, seconds: float, body: bytes, key: str, probe: Probe
) -> dict[str, Any]:
    """The aiohttp generator in a process of its own. Its warm-up is not in the latencies; the
    servers' CPU is read around the whole process, so it is divided by every request served,
    warm-up included."""
    check_loopback(url)
    cmd = [sys.executable, __file__, url, str(concurrency), str(requests), str(seconds), key]
    before = probe()
    out = subprocess.run(cmd, input=body, check=True, capture_output=True, timeout=seconds + 60)
    after = probe()
    result: dict[str, Any] = json.loads(out.stdout)
    served = result["served"] + result.pop("warmup")
    result["server_cpu_us_per_request"] = _per_request(before, after, served)
    return result


if __name__ == "__main__":
    _url, _c, _n, _s, _key = sys.argv[1:6]
    _result = asyncio.run(
        _aiohttp_load(_url, int(_c), int(_n), float(_s), sys.stdin.buffer.read(), _key)
    )
    json.dump(_result, sys.stdout)
