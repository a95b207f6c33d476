"""The batch REST backends on ``Client.send``: a retried upload streams a fresh body each
attempt; a download holds its key's parallel slot until it is closed, and is not held to the
body cap; errors are the provider's, their bodies capped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import salvo
from _raw_upstream import RawRequest, RawUpstream, http_head
from salvo import batches
from salvo.testing import FakeProvider


def lines(n: int) -> bytes:
    """A batch file of ``n`` chat requests (custom_ids are unique: salvo checks that)."""
    return b"".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini",
                             "messages": [{"role": "user", "content": "q"}]}}
                   ).encode() + b"\n"
        for i in range(n)
    )  # fmt: skip


DATA = lines(50)
FILE = {"id": "file-1", "object": "file", "bytes": len(DATA), "created_at": 1,
        "filename": "in.jsonl", "purpose": "batch"}  # fmt: skip


pytestmark = pytest.mark.usefixtures("batch_dir")


async def test_a_retried_upload_sends_the_whole_file_again(tmp_path: Path) -> None:
    answers = iter([(503, b'{"error": {"message": "busy"}}'), (200, json.dumps(FILE).encode())])

    async def respond(req: RawRequest, w: asyncio.StreamWriter) -> None:
        status, body = next(answers)
        w.write(http_head(status, {"Content-Type": "application/json",
                                   "Content-Length": str(len(body))}) + body)  # fmt: skip

    path = tmp_path / "in.jsonl"
    path.write_bytes(DATA)
    async with (
        RawUpstream(respond) as up,
        salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as client,
    ):
        fo = await batches.acreate_file(path, client=client, api_key="sk-t", api_base=up.base)
        assert fo.id == "file-1"
        first, second = up.requests
        # the second attempt started again from the first byte (a fresh multipart body)
        assert DATA in first.body and DATA in second.body
        assert len(first.body) == len(second.body)
        assert first.headers["content-type"].startswith("multipart/")


async def test_a_download_holds_the_keys_slot_until_closed_and_is_not_capped() -> None:
    async with (
        FakeProvider() as fake,
        salvo.Client(limits={"max_parallel_requests": 1}, max_body_bytes=1024) as client,
    ):
        kw: dict[str, Any] = {"client": client, "api_key": "sk-t", "api_base": fake.openai_base}
        big = lines(2000)  # far over the body cap: a download is streamed, not capped
        fo = await batches.acreate_file(big, **kw)
        async with batches.aiter_file_content(fo.id, **kw) as pieces:
            got = [await anext(pieces)]
            listing = asyncio.create_task(batches.alist_files(**kw))
            for _ in range(10):
                await asyncio.sleep(0.01)
            assert not listing.done()  # waiting for the download's slot
            got += [p async for p in pieces]
        assert b"".join(got) == big
        page = await listing
        assert [f.id for f in page.data] == [fo.id]
        assert client.statistics().in_flight == 0


async def test_a_listing_over_the_body_cap_is_refused_clearly() -> None:
    async with (
        FakeProvider() as fake,
        salvo.Client(max_body_bytes=600, max_retries=0) as client,
    ):
        kw: dict[str, Any] = {"client": client, "api_key": "sk-t", "api_base": fake.openai_base}
        for _ in range(5):
            await batches.acreate_file(lines(1), **kw)
        with pytest.raises(salvo.ResponseDecodeError, match="max_body_bytes"):
            await batches.alist_files(**kw)
