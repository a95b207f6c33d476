"""The hot path's shortcuts give exactly what the general code gives."""

from __future__ import annotations

import itertools

import pytest

from salvo._http import SSEDecoder, SSEEvent

MIXED = (
    b"data: a\n\nevent: e\ndata: b\n\ndata: c\n\n: comment\n\ndata: d\ndata: e\n\n"
    b"data:f\n\ndata: g\n\n\n\ndata:  h\n\nid: 1\ndata: i\n\ndata: j\n"
)
EXPECTED = [
    SSEEvent(None, b"a"),
    SSEEvent("e", b"b"),
    SSEEvent(None, b"c"),
    SSEEvent(None, b"d\ne"),
    SSEEvent(None, b"f"),
    SSEEvent(None, b"g"),
    SSEEvent(None, b" h"),
    SSEEvent(None, b"i"),
    SSEEvent(None, b"j"),
]


def _decode(pieces: list[bytes]) -> list[SSEEvent]:
    d = SSEDecoder()
    out: list[SSEEvent] = []
    for p in pieces:
        out.extend(d.feed(p))
    return out + d.flush()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 1000])
def test_sse_whole_events_match_byte_by_byte(size: int) -> None:
    pieces = [MIXED[i : i + size] for i in range(0, len(MIXED), size)]
    got = _decode(pieces)
    assert got == EXPECTED
    assert all(type(e) is SSEEvent for e in got)


def test_sse_pending_event_across_reads_then_whole_events() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\n") == []
    # The blank line that ends "a" comes with whole events after it.
    assert d.feed(b"\ndata: b\n\ndata: c\n\n") == [
        SSEEvent(None, b"a"),
        SSEEvent(None, b"b"),
        SSEEvent(None, b"c"),
    ]
    assert d.feed(b"event: x\n") == []
    assert d.feed(b"data: y\n\ndata: z\n\n") == [SSEEvent("x", b"y"), SSEEvent(None, b"z")]


def test_sse_every_two_cuts_of_mixed_stream() -> None:
    n = len(MIXED)
    for i, j in itertools.combinations(range(1, n, 4), 2):
        assert _decode([MIXED[:i], MIXED[i:j], MIXED[j:]]) == EXPECTED


# -- deadlines ---------------------------------------------------------------------------------


async def test_near_deadline_raises_timeout_and_uncancels() -> None:
    import asyncio

    from salvo._deadline import deadline_at

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(TimeoutError):
        with deadline_at(loop.time() + 0.01) as d:
            await asyncio.sleep(1)
    assert d.expired()
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # the task is usable afterwards


async def test_far_deadline_shares_one_timer_and_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from salvo import _deadline

    monkeypatch.setattr(_deadline, "COARSE_AFTER", 0.05)
    monkeypatch.setattr(_deadline, "TICK", 0.02)
    loop = asyncio.get_running_loop()

    async def wait(seconds: float, limit: float) -> str:
        try:
            with _deadline.deadline_at(loop.time() + limit):
                await asyncio.sleep(seconds)
        except TimeoutError:
            return "timeout"
        return "done"

    start = loop.time()
    # Two far deadlines (one passes, one does not) and a near one, all on the shared wheel
    # or their own timer; every result is the same as with asyncio.timeout_at.
    got = await asyncio.gather(wait(0.3, 0.1), wait(0.01, 0.1), wait(0.3, 0.03))
    assert got == ["timeout", "done", "timeout"]
    assert loop.time() - start < 0.3
    wheel = _deadline._wheel_for(loop)
    assert not wheel.live  # nothing left behind


async def test_deadline_keeps_outside_cancellation() -> None:
    import asyncio

    from salvo._deadline import deadline_at

    loop = asyncio.get_running_loop()

    async def body() -> None:
        with deadline_at(loop.time() + 600):
            await asyncio.sleep(1)

    t = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t


async def test_deadline_exit_drops_its_entry() -> None:
    import asyncio

    from salvo._deadline import deadline_at

    loop = asyncio.get_running_loop()
    with deadline_at(loop.time() + 600) as d:
        await asyncio.sleep(0)
    assert not d.expired()
    from salvo._deadline import _wheel_for

    assert d not in _wheel_for(loop).live


async def test_stream_past_a_far_deadline_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The call's deadline on the shared timer still ends a stream that stalls mid-way."""
    import salvo
    from salvo import _deadline
    from salvo.testing import Behavior, FakeProvider

    monkeypatch.setattr(_deadline, "COARSE_AFTER", 0.05)  # a 0.3 s deadline counts as far
    monkeypatch.setattr(_deadline, "TICK", 0.02)
    async with FakeProvider() as fake:
        fake.script("s", Behavior(chunks=5, chunk_interval=0.5, text="a b c d e"))
        async with salvo.Client(timeout=0.3, max_retries=0) as client:
            stream = await client.acompletion(
                "openai/s", [{"role": "user", "content": "hi"}], stream=True,
                api_base=fake.openai_base, api_key="k",
            )  # fmt: skip
            with pytest.raises(salvo.TimeoutError):
                async for _ in stream:
                    pass
            assert stream.closed
        (rec,) = fake.records_for("s")
        await fake.wait_until_closed(rec)
        assert rec.disconnected is not None
