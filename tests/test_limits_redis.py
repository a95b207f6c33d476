"""Limits shared through a real ``redis-server`` (started here on a free port, in a temp dir).

Several processes (``tests/redis_worker.py``) call the fake in this process through their own
Client on one store; every check reads the fake's records, whose times are the system-wide
monotonic clock. A second Client in this process with a store of its own stands for "another
process" where only Redis is shared anyway (separate connections, scripts, leases, heartbeat).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import salvo
from _redis_server import RedisServer, have_redis_server
from salvo._redis_store import LimitsStoreError, RedisStore
from salvo.testing import Behavior, FakeProvider, Record

# .ci/run installs redis-server, so under CI a missing one is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    not have_redis_server() and not os.environ.get("CI"),
    reason="redis-server is not installed (apt-get install redis-server)",
)

MSGS = [{"role": "user", "content": "hi"}]
WORKER = str(Path(__file__).with_name("redis_worker.py"))


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = RedisServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def store_url(server: RedisServer) -> str:
    import redis

    with redis.Redis(port=server.port) as r:
        r.flushall()
    return server.url


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider() as srv:
        yield srv


def spawn(cfg: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, WORKER, json.dumps(cfg)], stdout=subprocess.PIPE, text=True, env=env
    )


async def finish(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    out = []
    try:
        for proc in procs:
            stdout, _ = await asyncio.to_thread(proc.communicate, timeout=timeout)
            assert proc.returncode == 0, stdout
            out.append(json.loads(stdout.splitlines()[-1]))
    finally:  # a worker that hangs or fails is killed, never left behind
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return out


def max_overlap(records: list[Record]) -> int:
    events = []
    for r in records:
        assert r.closed is not None
        events += [(r.arrived, 1), (r.closed, -1)]
    now = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return peak


# -- across processes -----------------------------------------------------------------------------


async def test_four_processes_share_rpm_600_smoothly(fake: FakeProvider, store_url: str) -> None:
    start_at = time.monotonic() + 4.0  # time for four interpreters to import salvo
    cfg = {"base": fake.openai_base, "store": store_url, "model": "openai/m", "tasks": 4}
    cfg |= {"limits": {"rpm": 600}, "start_at": start_at, "duration": 21.0}
    results = await finish([spawn(cfg) for _ in range(4)], timeout=90)
    arrivals = sorted(r.arrived for r in fake.records_for("m"))
    t0 = arrivals[0]
    in_20s = sum(1 for a in arrivals if a < t0 + 20.0)
    assert 196 <= in_20s <= 204, in_20s  # 600 a minute across all four, not each
    busiest = max(sum(1 for b in arrivals if a <= b < a + 1.0) for a in arrivals)
    assert busiest <= 12, busiest  # never more than 1.2x the smooth 10 a second
    assert all(r["ok"] > 10 and r["err"] == 0 and r["store"] == "redis" for r in results)


async def test_max_parallel_requests_holds_across_four_processes(
    fake: FakeProvider, store_url: str
) -> None:
    fake.script("m", Behavior(latency=0.3))
    cfg = {"base": fake.openai_base, "store": store_url, "model": "openai/m", "tasks": 8}
    cfg |= {"limits": {"max_parallel_requests": 5}, "start_at": time.monotonic() + 3.0}
    cfg["duration"] = 4.0
    results = await finish([spawn(cfg) for _ in range(4)], timeout=60)
    records = fake.records_for("m")
    assert max_overlap(records) == 5  # saturated, never over
    assert sum(r["ok"] for r in results) == len(records)
    assert all(r["ok"] > 0 for r in results)  # every process got slots


async def test_a_sigkilled_process_gives_its_slots_back_within_the_ttl(
    fake: FakeProvider, store_url: str, server: RedisServer
) -> None:
    import redis

    fake.script("slow", Behavior(latency=60.0))
    fake.script("quick", Behavior())
    limits = {"max_parallel_requests": 5}
    cfg = {"base": fake.openai_base, "store": store_url, "model": "openai/slow", "tasks": 5}
    cfg |= {"limits": limits, "start_at": time.monotonic(), "duration": 60.0, "lease_ttl": 2.0}
    proc = spawn(cfg)
    try:
        async with asyncio.timeout(30):
            while len(fake.records_for("slow")) < 5:
                assert proc.poll() is None
                await asyncio.sleep(0.05)
        with redis.Redis(port=server.port) as r:
            (lease_set,) = r.keys("salvo:*:l")
            assert r.zcard(lease_set) == 5  # every slot held by the worker
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    killed = time.monotonic()
    store = RedisStore(store_url, lease_ttl=2.0)
    async with salvo.Client(limits_store=store, timeout=30) as client:
        kw = {"api_base": fake.openai_base, "api_key": "k", **limits}
        out = await asyncio.gather(
            *(client.acompletion("openai/quick", MSGS, **kw) for _ in range(5))
        )
    assert all(o.content for o in out)
    quick = fake.records_for("quick")
    assert len(quick) == 5 and max(r.arrived for r in quick) - killed < 2.0 + 1.5


async def test_a_429_in_one_process_pauses_the_key_in_the_others(
    fake: FakeProvider, store_url: str
) -> None:
    fake.script("m", [Behavior(status=429, headers={"retry-after": "2"}), Behavior()])
    kw = {"api_base": fake.openai_base, "api_key": "k"}
    async with (
        salvo.Client(limits_store=store_url, timeout=30) as one,
        salvo.Client(limits_store=store_url, timeout=30) as other,
    ):
        first = asyncio.create_task(one.acompletion("openai/m", MSGS, **kw))
        while not fake.records_for("m"):
            await asyncio.sleep(0.01)
        t429 = fake.records_for("m")[0].arrived
        await asyncio.sleep(0.2)  # the pause goes out in the store's next flush
        # A call whose deadline falls inside the pause fails at once, retry_after set.
        with pytest.raises(salvo.RateLimitError) as info:
            await other.acompletion("openai/n", MSGS, timeout=0.5, **kw)
        assert info.value.retry_after is not None and 1.0 < info.value.retry_after <= 2.0
        assert info.value.model == "n" and fake.records_for("n") == []
        resp = await other.acompletion("openai/n", MSGS, **kw)  # waits the pause out
        await first
    assert resp.content
    (n,) = fake.records_for("n")
    assert n.arrived - t429 >= 1.95
    assert [r.status for r in fake.records_for("m")] == [429, 200]


# -- when Redis fails ---------------------------------------------------------------------------


async def test_redis_killed_mid_run_every_call_ends_and_the_fallback_shows(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    srv = RedisServer().start()
    fake.script("m", Behavior(latency=0.05))
    kw = {"api_base": fake.openai_base, "api_key": "k", "rpm": 1200, "max_parallel_requests": 4}
    store = RedisStore(srv.url, timeout=0.5, probe_interval=0.2)
    try:
        async with salvo.Client(limits_store=store, timeout=20, max_retries=0) as client:
            calls = [
                asyncio.create_task(client.acompletion("openai/m", MSGS, **kw)) for _ in range(40)
            ]
            while len(fake.records_for("m")) < 8:
                await asyncio.sleep(0.01)
            assert client.statistics().limits_store == "redis"
            with caplog.at_level(logging.WARNING, logger="salvo"):
                srv.kill()
                async with asyncio.timeout(30):  # none hangs
                    done = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(d, salvo.ModelResponse | salvo.SalvoError) for d in done)
            assert sum(isinstance(d, salvo.ModelResponse) for d in done) == 40
            assert client.statistics().limits_store == "fallback"
            assert [r.message for r in caplog.records].count(
                next(r.message for r in caplog.records if "unreachable" in r.message)
            ) == 1  # a WARNING once, not once per call
            srv.start()  # back on the same port: the store is used again
            async with asyncio.timeout(10):
                while client.statistics().limits_store != "redis":
                    await asyncio.sleep(0.05)
            assert (await client.acompletion("openai/m", MSGS, **kw)).content
    finally:
        srv.stop()


async def test_fallback_fail_raises_instead(fake: FakeProvider) -> None:
    srv = RedisServer()  # never started: nothing listens there
    async with salvo.Client(
        limits_store=srv.url, limits_store_fallback="fail", timeout=10
    ) as client:
        with pytest.raises(LimitsStoreError, match="did not answer"):
            await client.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k")
    assert fake.records == []
    srv.stop()


# -- configuration and hygiene ----------------------------------------------------------------


async def test_keys_are_namespaced_expire_and_hold_no_secret(
    fake: FakeProvider, store_url: str, server: RedisServer
) -> None:
    import redis

    secret = "sk-very-secret-key-123"
    kw = {"api_base": fake.openai_base, "api_key": secret}
    kw |= {"rpm": 6000, "tpm": 100000, "max_parallel_requests": 3}
    async with salvo.Client(limits_store=store_url) as client:
        await asyncio.gather(*(client.acompletion("openai/m", MSGS, **kw) for _ in range(5)))
    with redis.Redis(port=server.port) as r:
        keys = r.keys("*")
        assert keys and all(k.startswith(b"salvo:") for k in keys)
        for k in keys:
            assert secret.encode() not in k and r.pttl(k) > 0
            value = r.dump(k) or b""
            assert secret.encode() not in value


async def test_the_store_comes_from_argument_config_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = {"model_list": [], "salvo_settings": {"limits_store": "redis://127.0.0.1:1/0"}}
    async with salvo.Client(config=cfg) as client:
        assert client.statistics().limits_store == "redis"
    monkeypatch.setenv("SALVO_LIMITS_STORE", "redis://127.0.0.1:1/0")
    async with salvo.Client() as client:
        assert client.statistics().limits_store == "redis"
    monkeypatch.delenv("SALVO_LIMITS_STORE")
    async with salvo.Client() as client:
        assert client.statistics().limits_store == "local"
    with pytest.raises(salvo.ConfigError, match="redis://"):
        salvo.Client(limits_store="http://127.0.0.1:6379")
    with pytest.raises(salvo.ConfigError, match="'local' or 'fail'"):
        salvo.Client(limits_store="redis://x", limits_store_fallback="maybe")  # type: ignore[arg-type]


async def test_without_the_redis_package_a_store_is_a_config_error_naming_the_extra(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    async with salvo.Client(limits_store="redis://127.0.0.1:1/0") as client:
        with pytest.raises(salvo.ConfigError, match=r"salvo-llm\[redis\]"):
            await client.acompletion("openai/m", MSGS, api_base=fake.openai_base, api_key="k")
    assert fake.records == []


# -- budgets ------------------------------------------------------------------------------------


async def test_a_budget_shared_by_two_stores_never_overspends(store_url: str) -> None:
    from salvo._budget_redis import RedisBudget

    one, two = RedisStore(store_url), RedisStore(store_url)
    try:
        a, b = RedisBudget(one, 1.0, name="team"), RedisBudget(two, 1.0, name="team")
        # 1,000 concurrent reservations of 1 cent each from two "processes": exactly 100 fit.
        got = await asyncio.gather(*((a if i % 2 else b).reserve(0.01) for i in range(1000)))
        assert sum(got) == 100
        for budget, ok in zip([b, a] * 500, got, strict=True):
            if ok:
                budget.settle(0.01, 0.004)  # each call cost less than its worst case
        spent, reserved = await a.spent()
        await b.spent()  # flushes the other store's settlements too
        spent, reserved = await a.spent()
        assert reserved == pytest.approx(0.0, abs=1e-9) and spent == pytest.approx(0.4)
        assert await b.reserve(0.6) and not await a.reserve(0.01)  # 0.4 + 0.6 = the budget
    finally:
        await one.aclose()
        await two.aclose()


async def test_clients_on_one_store_share_their_budget_usd(store_url: str) -> None:
    from salvo._budget_redis import RedisBudget

    async with (
        salvo.Client(limits_store=store_url, budget_usd=1.0) as one,
        salvo.Client(limits_store=store_url, budget_usd=1.0) as two,
    ):
        assert isinstance(one.budget, RedisBudget) and isinstance(two.budget, RedisBudget)
        await one.budget.reset()
        assert await one.budget.reserve(0.7)
        assert not await two.budget.reserve(0.5)  # the other process's reservation counts
        one.budget.settle(0.7, 0.2)  # queued, sent with the next pipelined flush
        assert await one.budget.spent() == pytest.approx((0.2, 0.0))  # (flushes it)
        assert await two.budget.reserve(0.5)  # 0.2 spent + 0.5 reserved
        assert await two.budget.spent() == pytest.approx((0.2, 0.5))
        await one.budget.reset()


async def test_a_budget_with_redis_down_refuses_to_reserve() -> None:
    from salvo._budget_redis import RedisBudget

    store = RedisStore(RedisServer().url, timeout=0.3)  # nothing listens there
    try:
        with pytest.raises(LimitsStoreError, match="unreachable"):
            await RedisBudget(store, 5.0).reserve(0.01)
        with pytest.raises(LimitsStoreError):  # and it stays refused while Redis is down
            await RedisBudget(store, 5.0).reserve(0.01)
    finally:
        await store.aclose()


# -- cancellation ------------------------------------------------------------------------------


async def test_cancelled_waiters_give_their_leases_and_slots_back(
    fake: FakeProvider, store_url: str, server: RedisServer
) -> None:
    import redis

    fake.script("slow", Behavior(latency=0.5))
    kw = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 2}
    async with salvo.Client(limits_store=store_url, timeout=30) as client:
        calls = [
            asyncio.create_task(client.acompletion("openai/slow", MSGS, **kw)) for _ in range(6)
        ]
        while len(fake.records_for("slow")) < 2:
            await asyncio.sleep(0.01)
        for i, task in enumerate(calls):  # cancel at once: the two in flight and two waiting
            if i % 3 != 2:
                task.cancel()
        done = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(isinstance(d, asyncio.CancelledError) for d in done) == 4
        assert sum(isinstance(d, salvo.ModelResponse) for d in done) == 2
        await client.acompletion("openai/quick", MSGS, **kw)
        stats = client.statistics()
        assert stats.in_flight == 0 and stats.waiting_on_limiters == 0
        await asyncio.sleep(0.1)  # the give-backs go out in the next flush
        with redis.Redis(port=server.port) as r:
            held = sum(r.zcard(k) for k in r.keys("salvo:*:l"))
            assert held == 0  # no lease left behind by a cancelled call
    for record in fake.records_for("slow"):
        assert record.closed is not None  # cancelled calls closed their connections


async def test_a_cancelled_rate_waiter_gives_its_slot_back(store_url: str) -> None:
    from salvo._limit_spec import LimitSpec

    store = RedisStore(store_url)
    try:
        limiter = store.limiter(("openai", "b", "k"), LimitSpec(rpm=60))  # one a second
        await limiter.acquire()
        limiter.release()
        t0 = time.monotonic()
        waiter = asyncio.create_task(limiter.acquire())  # reserves the slot at +1 s
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(0.05)  # the give-back is flushed
        await limiter.acquire()  # takes the +1 s slot the cancelled one gave back, not +2 s
        assert time.monotonic() - t0 < 1.5
        assert limiter.in_flight == 1
    finally:
        await store.aclose()


def test_serve_workers_share_limits_through_a_store_instead_of_splitting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from salvo import load_config
    from salvo.proxy._cli import split_limits

    entry = {"model_name": "a", "params": {"model": "openai/x", "rpm": 600}}
    monkeypatch.delenv("SALVO_LIMITS_STORE", raising=False)
    plain = load_config({"model_list": [entry]})
    assert split_limits(plain, 4).models["a"][0].params["rpm"] == 150
    shared = load_config(
        {"model_list": [entry], "salvo_settings": {"limits_store": "redis://127.0.0.1:6379/0"}}
    )
    assert split_limits(shared, 4) is shared  # every worker paces against the whole 600
    monkeypatch.setenv("SALVO_LIMITS_STORE", "redis://127.0.0.1:6379/0")
    assert split_limits(plain, 4) is plain


async def test_the_fallback_keeps_one_nth_of_each_limit() -> None:
    from salvo._limit_spec import LimitSpec

    store = RedisStore(RedisServer().url, timeout=0.3)  # nothing listens there
    store.processes = 4  # as last counted in salvo:procs
    try:
        limiter = store.limiter(("openai", "b", "k"), LimitSpec(rpm=600, max_parallel_requests=5))
        await limiter.acquire()
        assert store.state == "fallback"
        assert limiter._local.spec == LimitSpec(rpm=150, max_parallel_requests=2)  # type: ignore[attr-defined]
        limiter.release()
        assert limiter.in_flight == 0 and not limiter.at_rest()  # its 1/4 rpm bucket is full
        await asyncio.sleep(60 / 150 + 0.1)
        assert limiter.at_rest()
    finally:
        await store.aclose()


async def test_a_hung_redis_costs_a_call_at_most_its_timeout(fake: FakeProvider) -> None:
    srv = RedisServer().start()
    assert srv.proc is not None
    kw = {"api_base": fake.openai_base, "api_key": "k", "max_parallel_requests": 3}
    store = RedisStore(srv.url, timeout=0.3, probe_interval=0.2)
    try:
        async with salvo.Client(limits_store=store, timeout=20, max_retries=0) as client:
            assert (await client.acompletion("openai/m", MSGS, **kw)).content
            srv.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
            try:
                t0 = time.monotonic()
                async with asyncio.timeout(15):  # none hangs
                    out = await asyncio.gather(
                        *(client.acompletion("openai/m", MSGS, **kw) for _ in range(10))
                    )
                assert all(o.content for o in out) and time.monotonic() - t0 < 5
                assert client.statistics().limits_store == "fallback"
            finally:
                srv.proc.send_signal(signal.SIGCONT)
            async with asyncio.timeout(10):
                while client.statistics().limits_store != "redis":
                    await asyncio.sleep(0.05)
    finally:
        srv.stop()
