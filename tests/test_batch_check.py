"""The pre-upload check of batch files: every rule names the line that breaks it, whatever
pieces the file arrives in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from salvo import ConfigError
from salvo.batches._backends import Limits
from salvo.batches._check import check_pieces

CHAT = "/v1/chat/completions"
LIMITS = Limits(frozenset({CHAT, "/v1/embeddings"}), max_custom_id=8, one_model=True)


def line(i: int, **over: Any) -> bytes:
    base = {"custom_id": f"c{i}", "method": "POST", "url": CHAT, "body": {"model": "m"}}
    return json.dumps({**base, **over}).encode() + b"\n"


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("size", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("extra", [0, -1, 1])
async def test_the_byte_limit_names_the_line_that_passes_it(size: int, extra: int) -> None:
    data = b"".join(line(i) for i in range(10))
    three = len(line(0)) * 3
    limits = Limits(frozenset({CHAT}), max_bytes=three + extra)
    with pytest.raises(ConfigError) as info:
        await check_pieces("p", limits, pieces(data, size))
    assert str(info.value).startswith(f"Line {3 if extra < 0 else 4}: the file passes")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"not json\n", "Line 2: not valid JSON"),
        (line(1, custom_id=""), "Line 2: custom_id must be a non-empty string"),
        (line(1, custom_id=5), "Line 2: custom_id must be a non-empty string"),
        (line(1, custom_id="c123456789"), "Line 2: custom_id 'c123456789' has 10 characters"),
        (line(0), "Line 2: custom_id 'c0' repeats line 1"),
        (line(1, method="GET"), "Line 2: method must be POST"),
        (line(1, url="/v1/images"), "Line 2: p has no batch for url '/v1/images'"),
        (line(1, url="/v1/embeddings"), "Line 2: url '/v1/embeddings' differs from"),
        (line(1, body=[1]), "Line 2: body must be a JSON object"),
        (line(1, body={"input": "x"}), "Line 2: body.model is required"),
        (line(1, body={"model": "n"}), "Line 2: model 'n' differs from 'm' of line 1"),
    ],
)
async def test_each_rule_names_the_line(bad: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        await check_pieces("p", LIMITS, pieces(line(0) + bad + line(9), 5))
    assert str(info.value).startswith(message) and str(info.value).endswith("uploaded.")


async def test_blank_lines_count_as_lines_but_not_requests() -> None:
    data = line(0) + b"\n  \n" + line(1, url="/v1/images")
    with pytest.raises(ConfigError, match=r"^Line 4: "):
        await check_pieces("p", LIMITS, pieces(data, 3))
    checked = await check_pieces("p", LIMITS, pieces(line(0) + b"\n" + line(1).rstrip(), 4))
    assert (checked.lines, checked.url, checked.model) == (2, CHAT, "m")
    with pytest.raises(ConfigError, match="holds no requests"):
        await check_pieces("p", LIMITS, pieces(b"\n\n", 1))
    with pytest.raises(ConfigError, match="not the batch's endpoint"):
        await check_pieces("p", LIMITS, pieces(line(0), 9), endpoint="/v1/embeddings")
