"""SSE framing edge cases (protocols.md 0.2), fed as raw bytes in every possible split."""

from __future__ import annotations

import pytest

from salvo import StreamError
from salvo._http import SSEDecoder, SSEEvent


def decode(stream: bytes, cuts: list[int] | None = None) -> list[SSEEvent]:
    d = SSEDecoder()
    out: list[SSEEvent] = []
    cuts = sorted(cuts or [])
    start = 0
    for c in [*cuts, len(stream)]:
        out.extend(d.feed(stream[start:c]))
        start = c
    out.extend(d.flush())
    return out


def every_split(stream: bytes) -> list[list[SSEEvent]]:
    """Decode with the stream cut at each single position and at every pair of positions."""
    results = [decode(stream)]
    n = len(stream)
    results += [decode(stream, [i]) for i in range(1, n)]
    results += [decode(stream, [i, j]) for i in range(1, n, 3) for j in range(i + 1, n, 5)]
    return results


CASES = [
    (b"data: a\n\n", [SSEEvent(None, b"a")]),
    (b"data: a\r\n\r\n", [SSEEvent(None, b"a")]),
    (b"data: a\r\rdata: b\r\r", [SSEEvent(None, b"a"), SSEEvent(None, b"b")]),
    (b"data: one\ndata: two\n\n", [SSEEvent(None, b"one\ntwo")]),
    (b": keep-alive\n\ndata: x\n\n", [SSEEvent(None, b"x")]),
    (b": OPENROUTER PROCESSING\ndata: x\n\n", [SSEEvent(None, b"x")]),
    (b"event: ping\ndata: {}\n\n", [SSEEvent("ping", b"{}")]),
    (b"event:ping\ndata:{}\n\n", [SSEEvent("ping", b"{}")]),
    (b"data:  two spaces\n\n", [SSEEvent(None, b" two spaces")]),
    (b"id: 7\nretry: 100\nfoo: bar\ndata: z\n\n", [SSEEvent(None, b"z")]),
    (b"data: tail-without-blank-line\n", [SSEEvent(None, b"tail-without-blank-line")]),
    (b"data: no-newline-at-all", [SSEEvent(None, b"no-newline-at-all")]),
    (b"data\n\n", [SSEEvent(None, b"")]),
    (b"\n\n\ndata: a\n\n\n\n", [SSEEvent(None, b"a")]),
    (b"event: message_stop\n\n", [SSEEvent("message_stop", b"")]),
    (
        'data: {"c":"line\u2028sep\u2029x\u0085"}\n\n'.encode(),
        [SSEEvent(None, '{"c":"line\u2028sep\u2029x\u0085"}'.encode())],
    ),
    (
        b"data: a\r\n\r\ndata: b\n\ndata: c\r\r",
        [SSEEvent(None, b"a"), SSEEvent(None, b"b"), SSEEvent(None, b"c")],
    ),
]


@pytest.mark.parametrize(("stream", "expected"), CASES)
def test_sse_framing_in_every_split(stream: bytes, expected: list[SSEEvent]) -> None:
    for got in every_split(stream):
        assert got == expected


def test_lone_cr_at_read_boundary_followed_by_lf_is_one_line_ending() -> None:
    d = SSEDecoder()
    assert d.feed(b"data: a\r") == []
    assert d.feed(b"\n\r") == [SSEEvent(None, b"a")]
    assert d.feed(b"\ndata: b\n\n") == [SSEEvent(None, b"b")]


def test_openai_stream_with_done() -> None:
    body = (
        b'data: {"id":"1","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        b'data: {"id":"1","choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    events = decode(body, [10, 50, 90])
    assert [e.data[-10:] for e in events][-1] == b"[DONE]"
    assert len(events) == 3


def test_long_line_split_across_many_reads() -> None:
    payload = b"x" * 100_000
    stream = b"data: " + payload + b"\n\n"
    d = SSEDecoder()
    out: list[SSEEvent] = []
    for i in range(0, len(stream), 997):
        out.extend(d.feed(stream[i : i + 997]))
    assert out == [SSEEvent(None, payload)]


@pytest.mark.parametrize(
    "chunk",
    [
        b"data: " + b"x" * 100 + b"\n\n",  # one whole event in one read
        b"data: a\n\ndata: " + b"x" * 100 + b"\n\ndata: b",  # whole events, then a tail
    ],
)
def test_an_event_over_the_cap_is_refused_however_it_arrives(chunk: bytes) -> None:
    with pytest.raises(StreamError, match="max_event_bytes"):
        SSEDecoder(max_event_bytes=64).feed(chunk)
    assert SSEDecoder(max_event_bytes=100).feed(b"data: " + b"x" * 100 + b"\n\n")
