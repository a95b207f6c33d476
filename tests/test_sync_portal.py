"""The blocking API on salvo's persistent background loop: pacing and the pool persist across
calls, sync streams close their HTTP stream, calls from inside a running loop work, the loop
stops cleanly at exit, and trio gets a clear error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

import salvo
from _thread_fake import ThreadFake, thread_fake
from salvo import _api
from salvo._portal import portal
from salvo.testing import Behavior

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tfake() -> Iterator[ThreadFake]:
    with thread_fake() as tf:
        yield tf


def kw(tf: ThreadFake) -> dict[str, Any]:
    return {"api_base": tf.fake.openai_base, "api_key": "k"}


def wait_closed(tf: ThreadFake, n: int = 1, timeout: float = 5.0) -> list[Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        recs = tf.fake.records
        if len(recs) >= n and all(r.closed is not None for r in recs):
            return recs
        time.sleep(0.01)
    raise AssertionError(f"the fake's connections did not close: {tf.fake.records}")


def test_rpm_is_honoured_across_sync_calls(tfake: ThreadFake) -> None:
    for _ in range(4):
        salvo.completion("openai/paced", MSGS, rpm=600, **kw(tfake))  # one per 100 ms
    arrived = [r.arrived for r in tfake.fake.records]
    assert len(arrived) == 4
    # paced by one limiter for every call (not a fresh one per call, which would let all
    # four through at once): three intervals of 100 ms, less the arrival jitter
    assert arrived[-1] - arrived[0] >= 0.2, arrived


def test_one_client_and_pool_across_sync_calls(tfake: ThreadFake) -> None:
    salvo.completion("openai/m", MSGS, **kw(tfake))
    first = portal().call(_api.default_client)
    salvo.batch_completion("openai/m", [MSGS, MSGS], max_workers=1, **kw(tfake))

    async def stats() -> salvo.ClientStatistics:
        return first.statistics()

    assert portal().call(_api.default_client) is first
    snap = portal().call(stats)
    assert snap.requests >= 3  # the counters of every sync call, on one client
    assert snap.connections_open >= 1  # the pooled connection outlived the calls


def test_sync_stream_iterates_and_closes_on_break(tfake: ThreadFake) -> None:
    tfake.fake.script("whole", Behavior(text="one two three four", chunks=4))
    with salvo.completion("openai/whole", MSGS, stream=True, **kw(tfake)) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three four" and stream.closed
    tfake.fake.reset()
    tfake.fake.script("long", Behavior(text="x " * 200, chunks=200, chunk_interval=0.05))
    stream = salvo.completion("openai/long", MSGS, stream=True, **kw(tfake))
    for _chunk in stream:
        break  # leaving the loop drops the generator, which closes the HTTP stream
    broke = time.monotonic()
    (rec,) = wait_closed(tfake)
    assert rec.completed is None and rec.disconnected is not None
    assert rec.disconnected - broke < 1.0
    assert stream.closed


def test_sync_stream_close_and_collect(tfake: ThreadFake) -> None:
    tfake.fake.script("long", Behavior(text="x " * 100, chunks=100, chunk_interval=0.05))
    stream = salvo.completion("openai/long", MSGS, stream=True, **kw(tfake))
    stream.close()
    stream.close()  # idempotent
    (rec,) = wait_closed(tfake)
    assert rec.completed is None
    tfake.fake.script("short", Behavior(text="a b", chunks=2))
    resp = salvo.completion("openai/short", MSGS, stream=True, **kw(tfake)).collect()
    assert resp.content == "a b"


async def test_sync_call_inside_a_running_loop(tfake: ThreadFake) -> None:
    loop = asyncio.get_running_loop()
    resp = salvo.completion("openai/m", MSGS, **kw(tfake))  # blocks this loop, runs on the portal
    assert resp.content
    assert portal().call(asyncio.get_running_loop) is not loop
    results = salvo.batch_completion("openai/m", [MSGS] * 3, **kw(tfake))
    assert len(results) == 3 and all(isinstance(r, salvo.ModelResponse) for r in results)


def test_blocking_call_on_the_portal_itself_is_refused(tfake: ThreadFake) -> None:
    async def inner() -> Any:
        return salvo.completion("openai/m", MSGS, **kw(tfake))

    with pytest.raises(salvo.SalvoError, match=r"await salvo\.acompletion"):
        portal().call(inner)
    assert tfake.fake.records == []


def test_errors_cross_the_portal(tfake: ThreadFake) -> None:
    tfake.fake.script("bad", Behavior(status=400))
    with pytest.raises(salvo.BadRequestError):
        salvo.completion("openai/bad", MSGS, **kw(tfake))
    with pytest.raises(salvo.ConfigError):
        salvo.completion("nope/x", MSGS)


def test_trio_gets_a_clear_error() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        await salvo.acompletion("openai/m", MSGS, api_key="k", api_base="http://127.0.0.1:9")

    with pytest.raises(salvo.ConfigError, match="salvo runs on asyncio: it was called from trio"):
        trio.run(main)


EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, threading, salvo
    from salvo.testing import FakeProvider, Behavior

    ready = threading.Event()
    box = {}

    def serve():
        async def run():
            async with FakeProvider() as fake:
                fake.script("long", Behavior(text="x " * 100, chunks=100, chunk_interval=0.05))
                box["base"] = fake.openai_base
                box["stop"] = asyncio.Event()
                ready.set()
                await box["stop"].wait()
        box["loop"] = asyncio.new_event_loop()
        box["loop"].run_until_complete(run())
        box["loop"].close()

    t = threading.Thread(target=serve)
    t.start()
    ready.wait()
    kw = dict(api_base=box["base"], api_key="k")
    msgs = [{"role": "user", "content": "hi"}]
    print(salvo.completion("openai/a", msgs, **kw).content is not None)
    s = salvo.completion("openai/long", msgs, stream=True, **kw)
    print(next(iter(s)).model)  # an open stream left behind at exit
    box["loop"].call_soon_threadsafe(box["stop"].set)
    t.join()
    """
)


def test_portal_stops_cleanly_at_exit() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "long"]
    assert proc.stderr == ""


def test_a_dropped_sync_stream_is_closed(tfake: ThreadFake) -> None:
    import gc

    tfake.fake.script("long", Behavior(text="x " * 100, chunks=100, chunk_interval=0.05))
    stream = salvo.completion("openai/long", MSGS, stream=True, **kw(tfake))
    del stream  # never iterated, never closed
    gc.collect()
    dropped = time.monotonic()
    (rec,) = wait_closed(tfake)
    assert rec.completed is None and (rec.closed or 0) - dropped < 1.0


def test_an_error_mid_stream_reaches_the_for_loop(tfake: ThreadFake) -> None:
    tfake.fake.script(
        "cut", Behavior(text="a b c d e f", chunks=6, fault="reset_mid_body", fault_after=2)
    )
    got: list[Any] = []
    with pytest.raises(salvo.SalvoError):
        for chunk in salvo.completion("openai/cut", MSGS, stream=True, **kw(tfake)):
            got.append(chunk)
    assert 1 <= len(got) < 6
    wait_closed(tfake)


def test_ctrl_c_during_a_blocking_call_cancels_it(tfake: ThreadFake) -> None:
    import os
    import signal
    import threading

    tfake.fake.script("slow", Behavior(latency=10.0))

    def interrupt() -> None:
        while not tfake.fake.records:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        salvo.completion("openai/slow", MSGS, **kw(tfake))
    interrupted = time.monotonic()
    (rec,) = wait_closed(tfake)
    assert rec.completed is None and (rec.closed or 0) - interrupted < 1.0


def test_trio_with_a_client_gets_the_same_error() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        async with salvo.Client():
            pass

    with pytest.raises(salvo.ConfigError, match="salvo runs on asyncio"):
        trio.run(main)


def test_sync_mock_stream() -> None:
    with salvo.completion(
        "openai/gpt-4o", MSGS, mock_response="one two three", stream=True
    ) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream)
    assert text == "one two three" and stream.closed
