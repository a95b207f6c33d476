"""What observability costs a client call when nobody is listening.

    python benchmarks/bench_otel.py [--n 3000] [--rounds 5] [--concurrency 16]

Per-request client CPU (``time.process_time()`` over N completions against the fake provider,
which runs in a process of its own, zero latency) in three set-ups, each in a fresh process:

- ``absent``: ``opentelemetry`` cannot be imported (as without the ``otel`` extra);
- ``api, no SDK``: the API is installed, no TracerProvider/MeterProvider is configured (the
  promise: within 3 % of ``absent``);
- ``SDK on``: an SDK TracerProvider and MeterProvider with nothing exporting (for scale: what
  a span, its events and the metrics cost when they are recorded).

The set-ups run in alternation, ``rounds`` times each, and the medians are compared, so that
the machine's background load hits each alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._fake import FakeProcess

MODES = ("absent", "api", "sdk")
LABELS = {"absent": "absent", "api": "api, no SDK", "sdk": "SDK on"}
MSGS = [{"role": "user", "content": "Say hello in one short sentence."}]


async def _calls(url: str, n: int, concurrency: int) -> float:
    import salvo

    async with salvo.Client(max_retries=0) as client:
        kw = {"api_base": url + "/v1", "api_key": "k"}

        async def batch(count: int) -> None:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with sem:
                    await client.acompletion("openai/gpt-4o-mini", MSGS, **kw)

            await asyncio.gather(*(one() for _ in range(count)))

        await batch(min(n, 300))  # warm: connections, caches, first imports
        t0 = time.process_time()
        await batch(n)
        return (time.process_time() - t0) / n


async def _paired(url: str, n: int, concurrency: int, rounds: int) -> dict[str, float]:
    """Both set-ups in one process, in adjacent batches (ABBA order): "absent" is what salvo
    sees when the import failed (its probe says so), "api" the installed API without an SDK.
    The answer is the median, over the pairs, of each pair's ratio: drift cancels out."""
    import salvo
    from salvo import _otel

    assert _otel.current() is None
    api_module = _otel._PROBE.trace_mod
    ratios: list[float] = []
    cpu = {"absent": 0.0, "api": 0.0}
    async with salvo.Client(max_retries=0) as client:
        kw = {"api_base": url + "/v1", "api_key": "k"}
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await client.acompletion("openai/gpt-4o-mini", MSGS, **kw)

        async def batch(mode: str) -> float:
            _otel._PROBE.trace_mod = False if mode == "absent" else api_module
            t0 = time.process_time()
            await asyncio.gather(*(one() for _ in range(n)))
            spent = time.process_time() - t0
            cpu[mode] += spent
            return spent

        await asyncio.gather(*(one() for _ in range(300)))
        for i in range(rounds):
            order = ("absent", "api") if i % 2 == 0 else ("api", "absent")
            got = {m: await batch(m) for m in order}
            ratios.append(got["api"] / got["absent"])
    _otel._PROBE.trace_mod = api_module
    per = {m: v / (n * rounds) * 1e6 for m, v in cpu.items()}
    return {**per, "ratio": statistics.median(ratios)}


def _check_ns(url: str) -> float:
    """The disabled path alone: what salvo._observe.start costs when it returns None (it is
    all that runs per call when nobody listens, plus one ``is not None`` test)."""
    import timeit

    import salvo
    from salvo import _observe

    client = salvo.Client()
    opts = client.options("openai/gpt-4o-mini", {"api_base": url + "/v1", "api_key": "k"})
    start = _observe.start
    params: dict[str, object] = {}
    loops = 200_000
    best = min(timeit.repeat(lambda: start(opts, "chat", params, MSGS), number=loops, repeat=5))
    return best / loops * 1e9


def worker(mode: str, url: str, n: int, concurrency: int) -> None:
    if mode == "paired":
        print(json.dumps(asyncio.run(_paired(url, n, concurrency, rounds=40))))
        return
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    elif mode == "sdk":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
        metrics.set_meter_provider(MeterProvider())
    per_call = asyncio.run(_calls(url, n, concurrency))
    from salvo import _otel

    on = _otel.current() is not None
    check = _check_ns(url) if mode != "sdk" else None
    print(json.dumps({"mode": mode, "cpu_us": per_call * 1e6, "otel_on": on, "check_ns": check}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--worker", choices=(*MODES, "paired"), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.url, args.n, args.concurrency)
        return 0
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        print("bench_otel: needs opentelemetry-api and -sdk (the dev extra); skipped.")
        return 0
    runs: dict[str, list[float]] = {m: [] for m in MODES}
    checks: dict[str, list[float]] = {m: [] for m in MODES}
    with FakeProcess(records=False) as fake:
        for _ in range(args.rounds):
            for mode in MODES:
                cmd = [sys.executable, __file__, "--worker", mode, "--url", fake.url]
                cmd += ["--n", str(args.n), "--concurrency", str(args.concurrency)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                got = json.loads(out.strip().splitlines()[-1])
                if got["otel_on"] != (mode == "sdk"):
                    raise SystemExit(f"bench_otel: {mode}: instrumentation on={got['otel_on']}")
                runs[mode].append(got["cpu_us"])
                if got["check_ns"] is not None:
                    checks[mode].append(got["check_ns"])
        cmd = [sys.executable, __file__, "--worker", "paired", "--url", fake.url]
        cmd += ["--n", "500", "--concurrency", str(args.concurrency)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        paired = json.loads(out.strip().splitlines()[-1])
    base = statistics.median(runs["absent"])
    print(f"client CPU per request, median of {args.rounds} runs of {args.n} calls:")
    for mode in MODES:
        med = statistics.median(runs[mode])
        spread = ", ".join(f"{v:.1f}" for v in runs[mode])
        print(f"  {LABELS[mode]:<12} {med:7.1f} us  ({(med / base - 1) * 100:+5.1f} %)  [{spread}]")
    print("  (fresh processes; this machine's load moves single runs by 10-20 %)")
    a, b, ratio = paired["absent"], paired["api"], paired["ratio"]
    verdict = "within" if ratio <= 1.03 else "NOT within"
    print(
        f"one process, 40 adjacent pairs of 500-call batches: absent {a:.1f} us, api no SDK "
        f"{b:.1f} us; median pair ratio {(ratio - 1) * 100:+.1f} % ({verdict} 3 %)"
    )
    for mode in ("absent", "api"):
        ns = min(checks[mode])
        share = ns / (base * 1000) * 100
        print(f"  the disabled check alone, {LABELS[mode]}: {ns:.0f} ns a call ({share:.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
