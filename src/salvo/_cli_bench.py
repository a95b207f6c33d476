"""``salvo bench``: measure models as a caller sees them: time to first token, latency
percentiles, tokens per second, errors.

    salvo bench --models gpt-4o-mini,groq/llama-3.1-8b-instant --n 100 --concurrency 10 --stream
    salvo bench --fake --models a,b,c              # the built-in fake provider, no key needed
    salvo bench --api-base http://127.0.0.1:8080/v1 --models local --json out.json

Each model gets ``--n`` requests, ``--concurrency`` at a time, one model after another so they
do not compete. Retries are off by default (``--max-retries``) so that errors show as errors.
Latency is from the call to its complete answer; time to first token is from the call to the
first streamed chunk (with ``--stream``; without it, to the whole answer). Tokens per second is
each answer's completion tokens over its generation time (after the first token when
streaming), the median over answers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

__all__ = ["BenchResult", "ModelStats", "bench_models", "format_table", "register"]

_MSGS = [{"role": "user", "content": "Write one sentence about the sea."}]


class ModelStats(msgspec.Struct, kw_only=True):
    """What ``salvo bench`` measured for one model (times in seconds)."""

    model: str
    n: int
    ok: int
    errors: dict[str, int]
    wall_s: float
    requests_per_s: float
    ttft_p50: float | None
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    tokens_per_s: float | None
    completion_tokens: int


class BenchResult(msgspec.Struct, kw_only=True):
    stream: bool
    concurrency: int
    models: list[ModelStats]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` (0-100) percentile of ``values`` by linear interpolation; None if empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class _Sample(msgspec.Struct):
    ttft: float
    latency: float
    tokens: int
    rate: float | None


async def _one(
    client: Any, model: str, messages: Any, stream: bool, params: Mapping[str, Any]
) -> _Sample:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    if not stream:
        resp = await client.acompletion(model, messages, **params)
        latency = loop.time() - t0
        tokens = resp.usage.completion_tokens if resp.usage is not None else 0
        return _Sample(latency, latency, tokens, tokens / latency if latency > 0 else None)
    s = await client.acompletion(model, messages, stream=True, **params)
    ttft = loop.time() - t0
    chunks = 0
    usage_tokens = None
    async with s:
        async for chunk in s:
            if chunk.usage is not None and chunk.usage.completion_tokens:
                usage_tokens = chunk.usage.completion_tokens
            for c in chunk.choices:
                if c.delta.content or c.delta.tool_calls:
                    chunks += 1
    latency = loop.time() - t0
    tokens = usage_tokens if usage_tokens is not None else chunks
    gen = latency - ttft
    return _Sample(ttft, latency, tokens, tokens / gen if gen > 0 and tokens else None)


async def _bench_one(
    client: Any,
    model: str,
    *,
    n: int,
    concurrency: int,
    stream: bool,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> ModelStats:
    from ._errors import SalvoError

    samples: list[_Sample] = []
    errors: Counter[str] = Counter()
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            try:
                samples.append(await _one(client, model, messages, stream, params))
            except SalvoError as exc:
                errors[type(exc).__name__] += 1

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(max(1, min(concurrency, n))):
            tg.create_task(worker())
    wall = time.perf_counter() - t0
    lat = [s.latency for s in samples]
    rates = [s.rate for s in samples if s.rate is not None]
    return ModelStats(
        model=model,
        n=n,
        ok=len(samples),
        errors=dict(sorted(errors.items())),
        wall_s=wall,
        requests_per_s=n / wall if wall > 0 else 0.0,
        ttft_p50=percentile([s.ttft for s in samples], 50),
        latency_p50=percentile(lat, 50),
        latency_p90=percentile(lat, 90),
        latency_p99=percentile(lat, 99),
        tokens_per_s=percentile(rates, 50),
        completion_tokens=sum(s.tokens for s in samples),
    )


async def bench_models(
    client: Any,
    models: Sequence[str],
    *,
    n: int,
    concurrency: int,
    stream: bool = False,
    messages: Sequence[Mapping[str, Any]] = _MSGS,
    params: Mapping[str, Any] | None = None,
    on_model_done: Callable[[ModelStats], None] | None = None,
) -> BenchResult:
    """Bench each model in turn on ``client`` (a :class:`salvo.Client`): ``n`` requests,
    ``concurrency`` at a time; a request that fails counts under its error's class name."""
    out: list[ModelStats] = []
    for model in models:
        stats = await _bench_one(
            client,
            model,
            n=n,
            concurrency=concurrency,
            stream=stream,
            messages=messages,
            params=dict(params or {}),
        )
        out.append(stats)
        if on_model_done is not None:
            on_model_done(stats)
    return BenchResult(stream=stream, concurrency=concurrency, models=out)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.1f}"


def format_table(result: BenchResult) -> str:
    header = [
        "model",
        "n",
        "ok",
        "errors",
        "TTFT p50 ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "tokens/s",
        "req/s",
    ]
    rows = [header]
    for m in result.models:
        errs = ", ".join(f"{k} {v}" for k, v in m.errors.items()) or "0"
        rows.append(
            [
                m.model,
                str(m.n),
                str(m.ok),
                errs,
                _ms(m.ttft_p50),
                _ms(m.latency_p50),
                _ms(m.latency_p90),
                _ms(m.latency_p99),
                "-" if m.tokens_per_s is None else f"{m.tokens_per_s:.1f}",
                f"{m.requests_per_s:.1f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_chart(result: BenchResult, path: Path) -> str:
    """A latency chart (p50 bar, p90/p99 marks per model); a sentence saying what happened."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)."
    models = [m.model for m in result.models]
    p50 = [(m.latency_p50 or 0.0) * 1e3 for m in result.models]
    p90 = [(m.latency_p90 or 0.0) * 1e3 for m in result.models]
    p99 = [(m.latency_p99 or 0.0) * 1e3 for m in result.models]
    fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(models) + 1.6))
    ax.barh(models, p50, color="#2b7bba", label="p50")
    ax.scatter(p90, models, marker="|", s=200, color="#d9822b", label="p90", zorder=3)
    ax.scatter(p99, models, marker="|", s=200, color="#b22222", label="p99", zorder=3)
    ax.set_xlabel("latency (ms)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.set_title(f"salvo bench ({'stream' if result.stream else 'complete'})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"


def _model_names(raw: str, *, openai_default: bool, aliases: Sequence[str]) -> list[str]:
    from ._models import parse_models

    names = parse_models(raw)
    if openai_default:
        names = [m if "/" in m or m in aliases else f"openai/{m}" for m in names]
    return names


async def _run(args: argparse.Namespace) -> BenchResult:
    from ._client import Client

    params: dict[str, Any] = {"max_retries": args.max_retries}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    fake: Any = None
    try:
        if args.fake:
            from .testing import Behavior, FakeProvider

            fake = FakeProvider()
            await fake.start()
            args.api_base = fake.openai_base
            args.api_key = args.api_key or "fake-key"
        client = Client(config=args.config, timeout=args.timeout)
        aliases = list(client.config.model_names)
        models = _model_names(args.models, openai_default=bool(args.api_base), aliases=aliases)
        if fake is not None:
            # Model i answers after 20*(i+1) ms, in 12 chunks 2 ms apart.
            for i, m in enumerate(models):
                behavior = Behavior(latency=0.02 * (i + 1), chunks=12, chunk_interval=0.002)
                fake.script(m.split("/", 1)[-1], behavior)
        if args.api_base:
            params["api_base"] = args.api_base
        if args.api_key:
            params["api_key"] = args.api_key

        def progress(stats: ModelStats) -> None:
            print(
                f"  {stats.model}: {stats.ok}/{stats.n} ok in {stats.wall_s:.1f} s", file=sys.stderr
            )

        async with client:
            return await bench_models(
                client,
                models,
                n=args.n,
                concurrency=args.concurrency,
                stream=args.stream,
                messages=[{"role": "user", "content": args.prompt}],
                params=params,
                on_model_done=progress,
            )
    finally:
        if fake is not None:
            await fake.stop()


def _main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ._errors import ConfigError

    out = out or sys.stdout
    if args.n < 1 or args.concurrency < 1:
        print("salvo bench: --n and --concurrency must be at least 1", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_run(args))
    except ConfigError as exc:
        print(f"salvo bench: {exc}", file=sys.stderr)
        return 2
    out.write(format_table(result) + "\n")
    if args.json:
        Path(args.json).write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
        out.write(f"results written to {args.json}\n")
    if args.chart:
        out.write(write_chart(result, Path(args.chart)) + "\n")
    return 1 if any(m.ok == 0 for m in result.models) else 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark models: TTFT, latency percentiles, tokens/s",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("--models", required=True, help="comma-separated model strings or aliases")
    p.add_argument("--n", type=int, default=100, help="requests per model (100)")
    p.add_argument("--concurrency", type=int, default=10, help="requests at a time (10)")
    p.add_argument("--stream", action="store_true", help="stream, and measure time to first token")
    p.add_argument("--api-base", default=None, help="an OpenAI-compatible base URL for every model")
    p.add_argument("--api-key", default=None, help="the key for --api-base")
    p.add_argument("--config", default=None, help="a salvo/LiteLLM config file (model aliases)")
    p.add_argument("--fake", action="store_true", help="use the built-in fake provider")
    p.add_argument("--prompt", default=_MSGS[0]["content"], help="the user message to send")
    p.add_argument("--max-tokens", type=int, default=None, help="max_tokens per answer")
    p.add_argument("--max-retries", type=int, default=0, help="retries per request (0)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--chart", default=None, help="write a latency chart PNG here (matplotlib)")
    p.set_defaults(func=_main)
