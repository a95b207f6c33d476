"""The proxy's added latency and throughput: ``python benchmarks/bench_proxy.py``.

Processes on loopback: the fake provider (``python -m salvo.testing --no-records``), the salvo
proxy (``salvo serve`` in front of it), a raw aiohttp relay in front of it too
(``_raw_relay.py``: the least any aiohttp-based proxy can cost, our physical limit) and a load
generator that keeps a fixed number of requests in flight (``_loadgen.py``: wrk when it is
installed, else an aiohttp client). Each concurrency level is measured against the fake
directly, through the raw relay and through the proxy, in turn, ``--rounds`` times. Each figure
is its median over the rounds; the added latency (relay minus direct) and salvo-vs-raw ratios
are taken within each round, then their median, because this machine's speed drifts by tens of
percent from one minute to the next (the fake's own CPU per request, the same work in every
row, shows by how much); ``x-salvo-overhead-ms`` is the proxy's own account of its share (see
``salvo.proxy._relay.Timer``).

CPU us/req is each process's CPU (user + system) per request served: the relay under test,
the fake behind it and the load generator. Their sum bounds the throughput of the whole
machine: CPUs / (sum of CPU per request). A relay is a single process (``--workers 1``), so it
also stops at 1 / (its own CPU per request) whatever the other core does.

Options: ``--concurrency 1,32`` ``--seconds 3`` ``--rounds 5`` ``--workers 1``
``--loadgen auto|wrk|python`` ``--requests 6000`` (python generator only) ``--stream`` (relay
SSE instead of JSON) ``--json`` (machine-readable output).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _loadgen
from benchmarks._fake import proc_cpu_s

KEY = "bench-master-key"
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello in five words."}]}
TARGETS = ("direct", "raw", "proxy")
_LABELS = {"direct": "fake direct", "raw": "raw aiohttp relay", "proxy": "salvo proxy"}


def _start(
    cmd: list[str], marker: str, log: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd``; its stderr goes to ``log`` when given (the proxy's access lines, one per
    request: written as in production, kept off the terminal)."""
    with open(log, "w") if log else contextlib.nullcontext() as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ}
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        detail = log.read_text()[-2000:] if log else ""
        raise SystemExit(f"{cmd[:4]} did not start: {line!r} {detail}")
    return proc, line.split(marker, 1)[1].split()[0]


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of its children still running (``--workers N``)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return sum(proc_cpu_s(p) for p in pids)


def _measure(
    tool: str, url: str, args: argparse.Namespace, concurrency: int, pids: list[int]
) -> dict[str, Any]:
    """One load-generator run against ``url``; ``pids``: the server under test, then (for the
    relays) the fake behind it."""
    body = dict(BODY, stream=True) if args.stream else BODY
    payload = json.dumps(body).encode()

    def probe() -> list[float]:
        return [_cpu_seconds(p) for p in pids]

    if tool == "wrk":
        result = _loadgen.run_wrk(url, concurrency, args.seconds, payload, KEY, probe)
    else:
        result = _loadgen.run_python(
            url, concurrency, args.requests, args.seconds, payload, KEY, probe
        )
    cpu = result.pop("server_cpu_us_per_request")
    result["cpu_us_per_request"] = cpu[0]
    result["upstream_cpu_us_per_request"] = cpu[1] if len(cpu) > 1 else None
    return result


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (None stays None)."""
    return {
        k: None if rounds[0][k] is None else statistics.median(r[k] for r in rounds)
        for k in rounds[0]
    }


def _paired(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Differences and ratios taken within each round (the three targets measured back to
    back), then their median: steadier than comparing medians when the machine's speed drifts."""
    d, raw, p = rounds["direct"], rounds["raw"], rounds["proxy"]
    n = range(len(d))
    return {
        "raw_added_p50_ms": statistics.median(raw[i]["p50_ms"] - d[i]["p50_ms"] for i in n),
        "proxy_added_p50_ms": statistics.median(p[i]["p50_ms"] - d[i]["p50_ms"] for i in n),
        "proxy_added_p99_ms": statistics.median(p[i]["p99_ms"] - d[i]["p99_ms"] for i in n),
        "cpu_ratio_to_raw": statistics.median(
            p[i]["cpu_us_per_request"] / raw[i]["cpu_us_per_request"] for i in n
        ),
        "rps_ratio_to_raw": statistics.median(p[i]["rps"] / raw[i]["rps"] for i in n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    levels = [int(c) for c in str(args.concurrency).split(",")]
    tool = _loadgen.pick(args.loadgen)
    if tool == "python" and args.loadgen == "auto":
        print(
            "wrk is not installed (Debian: apt-get install wrk): using the aiohttp load "
            "generator, whose own CPU caps the throughput figures on 2 cores.",
            file=sys.stderr,
        )

    procs: list[subprocess.Popen[str]] = []
    try:
        fake, fake_url = _start(
            [sys.executable, "-m", "salvo.testing", "--port", "0", "--no-records"],
            "listening on ",
        )
        procs.append(fake)
        raw, raw_url = _start(
            [sys.executable, str(Path(__file__).parent / "_raw_relay.py"),
             fake_url + "/v1/chat/completions"],
            "listening on ",
        )  # fmt: skip
        procs.append(raw)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "proxy.yaml"
            config.write_text(
                "model_list:\n  - model_name: bench\n    params:\n"
                f"      model: openai/gpt-4o-mini\n      api_base: {fake_url}/v1\n"
                f"      api_key: k\ngeneral_settings:\n  master_key: {KEY}\n",
                encoding="utf-8",
            )
            proxy, proxy_url = _start(
                [sys.executable, "-m", "salvo.cli", "serve", "--config", str(config),
                 "--port", "0", "--workers", str(args.workers)],
                "listening on ",
                Path(tmp) / "proxy.log",
            )  # fmt: skip
            procs.append(proxy)
            urls = {"direct": fake_url, "raw": raw_url, "proxy": proxy_url}
            pids = {
                "direct": [fake.pid],
                "raw": [raw.pid, fake.pid],
                "proxy": [proxy.pid, fake.pid],
            }
            results = []
            for c in levels:
                rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
                for _ in range(args.rounds):
                    for t in TARGETS:
                        url = urls[t] + "/v1/chat/completions"
                        rounds[t].append(_measure(tool, url, args, c, pids[t]))
                medians = {t: _medians(rounds[t]) for t in TARGETS}
                results.append({"concurrency": c, **medians, "paired": _paired(rounds)})
    finally:
        for proc in reversed(procs):
            _stop(proc)
    _report(results, args, tool)
    return 0


def _report(results: list[dict[str, Any]], args: argparse.Namespace, tool: str) -> None:
    if args.json:
        json.dump({"loadgen": tool, "results": results}, sys.stdout, indent=2)
        print()
        return
    kind = "streamed (SSE)" if args.stream else "JSON"
    cpus = os.cpu_count() or 1
    length = f"{args.seconds:g} s"
    if tool == "python":
        length = f"up to {args.requests} requests / {length}"
    print(
        f"salvo proxy benchmark: {kind} chat completions, {cpus} CPUs, Python "
        f"{platform.python_version()}, load generator {tool}, proxy workers {args.workers}, "
        f"medians of {args.rounds} rounds of {length} each"
    )
    print(
        f"{'conc':>4}  {'target':<18} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'CPU us/req':>10} {'fake us/req':>11} {'loadgen':>7}  {'overhead p50/p99 ms':>19}"
    )
    for r in results:
        for name in TARGETS:
            s = r[name]
            over = ""
            if s["overhead_p50_ms"] is not None:
                over = f"{s['overhead_p50_ms']:.3f} / {s['overhead_p99_ms']:.3f}"
            fake = s["upstream_cpu_us_per_request"]
            print(
                f"{r['concurrency']:>4}  {_LABELS[name]:<18} {s['rps']:>7.0f} {s['p50_ms']:>7.3f} "
                f"{s['p99_ms']:>7.3f} {s['errors']:>6} {s['cpu_us_per_request']:>10.0f} "
                f"{'' if fake is None else f'{fake:.0f}':>11} "
                f"{s['loadgen_cpu_us_per_request']:>7.0f}  {over:>19}"
            )
        p, pair = r["proxy"], r["paired"]
        print(
            f"{'':>4}  added p50: raw relay {pair['raw_added_p50_ms']:+.3f} ms, salvo proxy "
            f"{pair['proxy_added_p50_ms']:+.3f} ms (p99 {pair['proxy_added_p99_ms']:+.3f} ms); "
            f"salvo vs the raw relay: CPU/req {pair['cpu_ratio_to_raw']:.2f}x, "
            f"req/s {pair['rps_ratio_to_raw']:.2f}x"
        )
        if r["concurrency"] == 1:
            continue  # one request at a time is bound by latency, not by CPU
        total = p["loadgen_cpu_us_per_request"] + p["cpu_us_per_request"]
        total += p["upstream_cpu_us_per_request"] or 0.0
        print(
            f"{'':>4}  CPU per proxied request, all processes: {total:.0f} us, so at most "
            f"{cpus * 1e6 / total:.0f} req/s on {cpus} CPUs; the proxy alone at most "
            f"{min(args.workers, cpus) * 1e6 / p['cpu_us_per_request']:.0f} req/s"
        )


if __name__ == "__main__":
    sys.exit(main())
