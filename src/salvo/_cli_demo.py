"""``salvo demo``: what a newcomer runs first. No key, no network: the built-in fake provider.

It shows a race between three scripted models (who won, when, and that the losers' connections
were closed, from the fake server's own records), a streaming race, a gather of every answer,
a batch of a few hundred prompts with a progress bar, and a hedged race (the backup model is
started only when the first one is slow, as the fake's records show).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, TextIO

__all__ = ["register", "run_demo"]


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="race, gather and batch against the built-in fake provider")
    p.add_argument("--batch", type=int, default=300, help="prompts in the batch step (300)")
    p.add_argument("--concurrency", type=int, default=32, help="batch concurrency (32)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    asyncio.run(run_demo(n_batch=args.batch, concurrency=args.concurrency))
    return 0


class _Out:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def bold(self, text: str) -> str:
        return f"\033[1m{text}\033[0m" if self.tty else text

    def dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.tty else text


def _bar(done: int, total: int, failed: int, elapsed: float, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    rate = done / elapsed if elapsed > 0 else 0.0
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
        f"failed {failed}  {rate:,.0f} req/s"
    )


async def run_demo(
    *, n_batch: int = 300, concurrency: int = 32, out: TextIO | None = None
) -> dict[str, Any]:
    """Run the demo; returns what it showed (for tests)."""
    import salvo
    from salvo.testing import Behavior, FakeProvider

    o = _Out(out or sys.stdout)
    shown: dict[str, Any] = {}
    msgs = [{"role": "user", "content": "In one sentence: why race LLM calls?"}]
    async with FakeProvider() as fake:
        staged = {"tortoise": 0.60, "hare": 0.08, "snail": 1.20}
        for name, latency in staged.items():
            fake.script(
                name,
                Behavior(
                    latency=latency,
                    text=f"{name} says: the fastest answer wins, the rest are cancelled.",
                    chunks=6,
                    chunk_interval=0.02,
                ),
            )
        fake.script("flaky", Behavior(status=503))
        hedged = {"steady": 0.05, "laggy": 0.90}
        for name, latency in hedged.items():
            fake.script(name, Behavior(latency=latency, text=f"{name} answered"))
        config = {
            "model_list": [
                {
                    "model_name": n,
                    "params": {
                        "model": f"openai/{n}",
                        "api_base": fake.openai_base,
                        "api_key": "demo-key",
                    },
                }
                for n in [*staged, "flaky", *hedged]
            ]
        }
        o.line(o.bold("salvo demo") + o.dim(f"  (fake provider at {fake.url}, no API key needed)"))
        o.line()
        # hedge_budget=1.0: hedges may double the requests of hedged races (the default, 0.1,
        # earns one hedge per ten races, so a client's very first race could not hedge).
        async with salvo.Client(config=config, hedge_budget=1.0) as client:
            # 1. The race.
            o.line(o.bold("1. arace: one prompt, three models, the fastest wins"))
            for name, latency in staged.items():
                o.line(f"   {name:<9} scripted to answer after {latency * 1000:.0f} ms")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            mono0 = time.monotonic()
            resp = await client.arace(list(staged), msgs)
            won_at = time.monotonic()
            elapsed = loop.time() - t0
            winner = resp.model
            o.line(f"   winner: {o.bold(winner)} after {elapsed * 1000:.1f} ms: {resp.content!r}")
            losers = {}
            for name in staged:
                if name == winner:
                    continue
                rec = await fake.wait_until_closed(fake.records_for(name)[0], timeout=1.0)
                closed = rec.closed
                ran_out = rec.completed is not None
                losers[name] = closed
                when = "never" if closed is None else f"{(closed - won_at) * 1000:+.1f} ms"
                status = "ran to completion!" if ran_out else "connection closed, never answered"
                o.line(f"   loser {name:<9} {status} ({when} after the win)")
            shown["race"] = {"winner": winner, "elapsed_s": elapsed, "losers_closed": losers}
            shown["race_started"] = mono0
            o.line()

            # 2. The streaming race.
            o.line(o.bold("2. arace(stream=True): the first model to deliver a token wins"))
            t0 = loop.time()
            stream = await client.arace(list(staged), msgs, stream=True)
            first = loop.time() - t0
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            o.line(f"   {stream.model} streamed first ({first * 1000:.1f} ms to first chunk)")
            o.line(f"   text: {text!r}")
            shown["stream_winner"] = stream.model
            o.line()

            # 3. Gather all.
            o.line(o.bold("3. agather_all: every model's answer, errors in place"))
            t0 = loop.time()
            results = await client.agather_all(["hare", "flaky", "tortoise"], msgs, max_retries=0)
            for name, r in zip(["hare", "flaky", "tortoise"], results, strict=True):
                if isinstance(r, salvo.SalvoError):
                    o.line(f"   {name:<9} error: {type(r).__name__}: {r}")
                    for note in getattr(r, "__notes__", ()):  # "salvo gave up after ..."
                        o.line(o.dim(f"             {note}"))
                else:
                    o.line(f"   {name:<9} {r.latency_s * 1000:6.1f} ms  {r.content!r}")
            shown["gather"] = [type(r).__name__ for r in results]
            o.line(f"   all answers in {(loop.time() - t0) * 1000:.0f} ms (the slowest one's time)")
            o.line()

            # 4. A batch with a progress bar.
            o.line(o.bold(f"4. abatch_completion: {n_batch} prompts, {concurrency} at a time"))
            fake.script(
                "hare",
                lambda n: Behavior(status=500) if n % 97 == 13 else Behavior(latency=0.005),
            )
            prompts = [[{"role": "user", "content": f"Label item {i}"}] for i in range(n_batch)]
            counts = {"done": 0, "failed": 0}
            t0 = loop.time()
            last = [0.0]

            def progress(i: int, r: Any) -> None:
                counts["done"] += 1
                counts["failed"] += isinstance(r, salvo.SalvoError)
                now = loop.time()
                if o.tty and (now - last[0] > 0.05 or counts["done"] == n_batch):
                    last[0] = now
                    o.stream.write(
                        "\r   " + _bar(counts["done"], n_batch, counts["failed"], now - t0)
                    )
                    o.stream.flush()
                elif not o.tty and counts["done"] % max(1, n_batch // 4) == 0:
                    o.line("   " + _bar(counts["done"], n_batch, counts["failed"], now - t0))

            batch = await client.abatch_completion(
                "hare", prompts, max_concurrency=concurrency, max_retries=0, on_result=progress
            )
            if o.tty:
                o.line()
            failed = [i for i, r in enumerate(batch) if isinstance(r, salvo.SalvoError)]
            o.line(
                f"   {n_batch - len(failed)} answers, {len(failed)} failures reported in place "
                f"(at indexes {failed[:5]}{'...' if len(failed) > 5 else ''}), "
                f"{loop.time() - t0:.2f} s"
            )
            shown["batch"] = {"n": len(batch), "failed": failed}
            o.line()

            # 5. Hedging: a full race pays for every contender; a hedge only when it must.
            o.line(o.bold("5. arace(hedge=0.15): the next model starts only if the first is slow"))
            shown["hedge"] = []
            for order in (["steady", "laggy"], ["laggy", "steady"]):
                before = {n: len(fake.records_for(n)) for n in hedged}
                resp = await client.arace(order, msgs, hedge=0.15)
                sent = {n: len(fake.records_for(n)) - before[n] for n in hedged}
                report = resp.race
                assert report is not None
                parts = []
                for c in report.contenders:
                    at = "" if c.started_s is None else f" at {c.started_s * 1000:.0f} ms"
                    parts.append(f"{c.model} {c.outcome}{at}")
                o.line(f"   {' then '.join(order):<18} -> {resp.model} wins; " + ", ".join(parts))
                o.line(o.dim(f"   {'':<18}    requests sent: {sum(sent.values())}"))
                shown["hedge"].append({"winner": resp.model, "sent": sent})
        o.line()
        o.line("Next: `make test`, or point salvo at a real provider (see README.md).")
    return shown
