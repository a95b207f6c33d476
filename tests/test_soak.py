"""Soak: 10,000 calls through ``abatch_completion`` against the fake provider with a seeded,
reproducible mix of every fault mode, then 1,000 streams with the same mix.

The fake answers its n-th request with ``PLAN(n)``, and its records list the requests in that
order, so for every prompt we know exactly which behaviors its attempts met and can predict
its result: a response (with the text of the attempt that succeeded) after transient faults,
the error of a non-retryable fault, or the last error after three transient faults in a row.
Every result must be that prediction, in its prompt's place; every prompt must have exactly
the attempts the prediction needs (none lost, none duplicated, nothing sent after the end);
and at the end no connection may be left open and no task left running.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from typing import Any

import salvo
from salvo.testing import Behavior, FakeProvider

N = 10_000
STREAMS = 1_000
SEED = 20_261_121
MAX_RETRIES = 2
# seconds: far above a normal answer's wait, even on a loaded machine; far below a stall's 30 s
FIRST_BYTE = 3.0

# (weight, behavior factory of the answer text, outcome): "ok", a retryable error class, or
# ("fatal", error class) for a fault that is not retried.
FaultRow = tuple[int, Any, Any]
MIX: list[FaultRow] = [
    (60, lambda t: Behavior(text=t), "ok"),
    (1, lambda t: Behavior(text=t, fault="drip", chunk_interval=0.0002), "ok"),
    (2, lambda t: Behavior(text=t, fault="no_terminator"), "ok"),  # streams: StreamError
    (2, lambda t: Behavior(text=t, fault="midstream_error"), "ok"),  # streams: StreamError
    (4, lambda t: Behavior(status=429, headers={"retry-after-ms": "1"}), salvo.RateLimitError),
    (3, lambda t: Behavior(status=500), salvo.ServerError),
    (2, lambda t: Behavior(status=503), salvo.ServerError),
    (2, lambda t: Behavior(status=529), salvo.ServerError),
    (1, lambda t: Behavior(status=408), salvo.ProviderError),
    (1, lambda t: Behavior(status=409), salvo.ConflictError),
    (3, lambda t: Behavior(fault="html_error"), salvo.ServerError),
    (3, lambda t: Behavior(fault="reset_before_body"), salvo.ConnectionError),
    (3, lambda t: Behavior(fault="reset_mid_body"), salvo.ConnectionError),
    (1, lambda t: Behavior(fault="stall", stall_s=30.0), salvo.TimeoutError),
    (2, lambda t: Behavior(fault="truncated_json"), ("fatal", salvo.ResponseDecodeError)),
    (1, lambda t: Behavior(status=400), ("fatal", salvo.BadRequestError)),
    (
        1,
        lambda t: Behavior(status=503, headers={"x-should-retry": "false"}),
        ("fatal", salvo.ServerError),
    ),
]
_WEIGHTS = [row[0] for row in MIX]


def row_for(n: int) -> FaultRow:
    """The n-th request's row of the mix: the same for a given seed, however the run goes."""
    return random.Random(SEED * 1_000_003 + n).choices(MIX, _WEIGHTS)[0]


def plan(n: int) -> Behavior:
    behavior: Behavior = row_for(n)[1](f"answer {n}")
    return behavior


def outcome_for(n: int, stream: bool) -> Any:
    outcome = row_for(n)[2]
    fault = plan(n).fault
    if stream and fault in ("no_terminator", "midstream_error", "truncated_json"):
        # The stream's first chunk comes before (or with) the bad part, so the error is
        # raised once that chunk was handed out: after the first chunk, no retry.
        return ("late", salvo.StreamError)
    if stream and fault == "reset_mid_body":
        # A chunk, then a reset: retried if the reset cut the chunk off too (no chunk yet),
        # a late ConnectionError if the chunk got through. The prompt's records tell which.
        return "either"
    return outcome


def predict(ns: list[int], stream: bool) -> tuple[Any, int]:
    """(expected result, attempts it takes) for a prompt whose attempts met requests ``ns``."""
    for k, n in enumerate(ns):
        outcome = outcome_for(n, stream)
        if outcome == "ok":
            return ("ok", f"answer {n}"), k + 1
        if isinstance(outcome, tuple):
            return outcome, k + 1
        if outcome == "either":
            if k == len(ns) - 1:
                return ("error", salvo.ConnectionError), k + 1
            continue
        if k == MAX_RETRIES:
            return ("error", outcome), k + 1
    return ("incomplete", None), len(ns)


def check_results(fake: FakeProvider, model: str, results: list[Any], stream: bool) -> Counter[str]:
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for n, rec in enumerate(fake.records_for(model)):
        by_prompt[int(rec.body["messages"][0]["content"][1:])].append(n)
    assert sorted(by_prompt) == list(range(len(results))), "a prompt was never sent"
    seen: Counter[str] = Counter()
    for i, result in enumerate(results):
        ns = by_prompt[i]
        (kind, expected), attempts = predict(ns, stream)
        assert len(ns) == attempts, (i, ns, kind)  # nothing lost, nothing sent twice or after
        if kind == "ok":
            assert isinstance(result, salvo.ModelResponse), (i, ns, result)
            assert result.content == expected, (i, ns)
            seen["retried then ok" if attempts > 1 else "ok"] += 1
        else:
            assert isinstance(result, expected), (i, ns, kind, result)
            seen[f"{kind} {expected.__name__}"] += 1
    return seen


async def all_records_closed(fake: FakeProvider) -> None:
    for rec in fake.records:
        if rec.closed is None:
            await fake.wait_until_closed(rec, timeout=5.0)
        assert rec.closed is not None


async def collect(client: salvo.Client, i: int, gate: asyncio.Semaphore) -> Any:
    async with gate:
        try:
            stream = await client.acompletion(
                "soak-s", [{"role": "user", "content": f"p{i}"}], stream=True
            )
            return await stream.collect()
        except salvo.SalvoError as exc:
            return exc


async def test_soak_every_fault_mode(capsys: Any) -> None:
    before = asyncio.all_tasks()
    t0 = time.perf_counter()
    fake = FakeProvider()
    await fake.start()
    try:
        fake.script("soak", plan)
        fake.script("soak-s", plan)
        config = {
            "model_list": [
                {
                    "model_name": name,
                    "params": {
                        "model": f"openai/{name}",
                        "api_base": fake.openai_base,
                        "api_key": "k",
                    },
                }
                for name in ("soak", "soak-s")
            ]
        }
        client = salvo.Client(
            config=config,
            retry_policy=salvo.RetryPolicy(wait=False),
            max_retries=MAX_RETRIES,
            first_byte_timeout=FIRST_BYTE,
            stream_idle_timeout=FIRST_BYTE,
        )
        async with client:
            prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(N)]
            results = await client.abatch_completion("soak", prompts)
            assert len(results) == N
            seen = check_results(fake, "soak", results, stream=False)

            gate = asyncio.Semaphore(100)
            streamed = await asyncio.gather(*(collect(client, i, gate) for i in range(STREAMS)))
            seen_s = check_results(fake, "soak-s", streamed, stream=True)

            stats = client.statistics()
            assert stats.requests == len(fake.records)
            assert stats.retries == len(fake.records) - N - STREAMS
            assert (stats.in_flight, stats.waiting_on_limiters) == (0, 0)
        assert client.statistics().connections_open == 0
        await all_records_closed(fake)
    finally:
        await fake.stop()
    for _ in range(3):
        await asyncio.sleep(0)
    assert asyncio.all_tasks() == before, asyncio.all_tasks() - before
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nsoak: {len(fake.records)} requests in {elapsed:.1f} s")
        print(f"  batch:   {dict(sorted(seen.items()))}")
        print(f"  streams: {dict(sorted(seen_s.items()))}")
    # Every kind of ending happened, so the mix really exercised each path.
    assert {"ok", "retried then ok"} <= set(seen) and seen["retried then ok"] > 1000
    assert seen["fatal ResponseDecodeError"] and seen["fatal BadRequestError"]
    assert seen_s["late StreamError"] and seen_s["retried then ok"]
