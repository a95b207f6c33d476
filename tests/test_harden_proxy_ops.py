"""Item 13 of issue 11: the proxy's operations. ``salvo serve`` logs (stderr, INFO, every 5xx
at WARNING with its reason); slow clients are cut off (headers, bodies, uploads: raw
sockets); the files list pages from an index; a BOM on line 1 is accepted; a 404 from a
files or batches API talks about the object, not a model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import salvo
from _hostile import Hostile
from _serve import salvo_serve
from salvo import batches
from salvo.cli import main
from salvo.proxy import ProxyServer
from salvo.testing import FakeProvider
from test_proxy_support import MASTER_KEY, stack

USER = [{"role": "user", "content": "hi"}]


def _config(base: str, **settings: Any) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "m", "params": {"model": "openai/m", "api_base": base,
                                                      "api_key": "k"}}],
        "general_settings": {"master_key": MASTER_KEY, **settings},
    }  # fmt: skip


async def _closed_or_answered(reader: asyncio.StreamReader) -> bytes:
    """What the proxy sends before it closes the connection."""
    return await reader.read()


# -- slow clients -------------------------------------------------------------------------------


async def test_a_client_that_drips_its_headers_is_cut_off() -> None:
    async with ProxyServer(_config("http://127.0.0.1:9", client_header_timeout=0.5)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        dripped = 0
        async with asyncio.timeout(30):
            while not reader.at_eof() and dripped < 300:  # 300 x 0.1 s: far past the limit
                try:
                    writer.write(b"X-Drip: 1\r\n")
                    await writer.drain()
                except ConnectionError:
                    break
                dripped += 1
                try:
                    async with asyncio.timeout(0.1):
                        if await reader.read(1) == b"":
                            break
                except TimeoutError:
                    pass
        writer.close()
        assert dripped < 300, "the proxy kept a connection whose headers never ended"


async def test_a_client_that_never_sends_its_body_gets_a_408() -> None:
    async with ProxyServer(_config("http://127.0.0.1:9", client_body_timeout=0.3)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nAuthorization: Bearer " + MASTER_KEY.encode() + b"\r\nContent-Length: 1000"
            b'\r\n\r\n{"model": "m", '
        )
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await _closed_or_answered(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"client_body_timeout" in answer and b"request_timeout" in answer


async def test_an_upload_that_stalls_gets_a_408(tmp_path: Path) -> None:
    config = _config("http://127.0.0.1:9", client_body_timeout=0.3, files_dir=str(tmp_path))
    async with ProxyServer(config) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        head = (
            b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
            b'{"custom_id": "a"'
        )
        writer.write(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + MASTER_KEY.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000"
            + b"\r\n\r\n"
            + head
        )
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await _closed_or_answered(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert list((tmp_path / "proxy-uploads").glob("*")) == []  # no spool file left


async def test_ordinary_requests_are_not_affected_by_the_read_timeouts() -> None:
    async with stack(settings={"client_body_timeout": 5, "client_header_timeout": 5}) as s:
        resp = await s.oai.chat.completions.create(model="fast", messages=USER)  # type: ignore[arg-type]
        assert resp.choices[0].message.content


# -- logging ------------------------------------------------------------------------------------


def _upstream_500(path: str, body: bytes) -> tuple[int, bytes]:
    return 500, b'{"error": {"message": "the upstream broke down"}}'


@pytest.mark.parametrize("level", [None, "warning"])
async def test_salvo_serve_logs_to_stderr_and_every_5xx_at_warning(
    tmp_path: Path, level: str | None
) -> None:
    async with Hostile(_upstream_500) as hostile:
        cfg = _config(hostile.base, files_dir=str(tmp_path / "store"), num_retries=0)
        cfg["model_list"].append(
            {"model_name": "down", "params": {"model": "openai/m", "api_base": "http://127.0.0.1:9",
                                              "api_key": "k"}}
        )  # fmt: skip
        path = tmp_path / "c.yaml"
        path.write_bytes(msgspec.json.encode(cfg))  # JSON is YAML
        args = ["--config", str(path), "--port", "0"]
        if level:
            args += ["--log-level", level]
        async with salvo_serve(*args) as served:
            url = served.url
            import aiohttp

            async with aiohttp.ClientSession() as http:
                for model in ("m", "down"):
                    async with http.post(
                        url + "/v1/chat/completions",
                        json={"model": model, "messages": USER},
                        headers={"Authorization": f"Bearer {MASTER_KEY}"},
                    ) as resp:
                        assert resp.status in (500, 502)
    err = served.err.decode()
    assert served.proc.returncode == 0, err
    warnings = [x for x in err.splitlines() if " WARNING salvo.proxy: " in x]
    assert any("POST /v1/chat/completions answered 500" in x and "the upstream broke down" in x
               for x in warnings), err  # fmt: skip
    assert any("POST /v1/chat/completions answered 502" in x for x in warnings), err
    infos = [x for x in err.splitlines() if " INFO salvo" in x]
    if level is None:
        assert any(str(tmp_path / "store") in x for x in infos), err
    else:
        assert infos == [], err


def test_a_bad_log_level_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--config", "c.yaml", "--log-level", "loud"])
    assert "--log-level" in capsys.readouterr().err


# -- the files index ----------------------------------------------------------------------------


async def test_the_files_list_pages_from_the_index(tmp_path: Path) -> None:
    """Listing reads the index, not the metadata files: with every metadata file garbled
    after the upload, pages still come back whole and in order."""
    kw: dict[str, Any] = {"provider": "local", "store_dir": tmp_path}
    ids = []
    for i in range(25):
        fo = await batches.acreate_file(b'{"a": 1}\n', purpose="batch" if i % 5 else "user_data",
                                        filename=f"f{i}.jsonl", **kw)  # fmt: skip
        ids.append(fo.id)
    for meta in (tmp_path / "files").glob("*.json"):
        meta.write_bytes(b"garbled")
    page = await batches.alist_files(limit=1, **kw)
    assert [f.id for f in page.data] == [ids[-1]] and page.has_more
    assert page.data[0].filename == "f24.jsonl"
    seen, after = [], None
    while True:
        page = await batches.alist_files(limit=4, after=after, **kw)
        seen += [f.id for f in page.data]
        if not page.has_more:
            break
        after = page.last_id
    assert seen == ids[::-1]
    asc = await batches.alist_files(limit=100, order="asc", purpose="user_data", **kw)
    assert [f.id for f in asc.data] == ids[0::5]
    await batches.adelete_file(ids[-1], **kw)
    assert (await batches.alist_files(limit=1, **kw)).data[0].id == ids[-2]


async def test_a_store_written_before_the_index_is_indexed_once(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"provider": "local", "store_dir": tmp_path}
    made = [(await batches.acreate_file(b"{}\n", purpose="batch", **kw)).id for _ in range(3)]
    (tmp_path / "index.sqlite3").unlink()  # as an older salvo left it: metadata files only
    page = await batches.alist_files(limit=10, **kw)
    assert [f.id for f in page.data] == made[::-1]


async def test_the_proxy_lists_files_a_page_at_a_time(tmp_path: Path) -> None:
    async with stack(settings={"files_dir": str(tmp_path)}) as s:
        for i in range(3):
            await s.oai.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="batch")
        async with s.http.get(s.url + "/v1/files?limit=1", headers=s.auth()) as resp:
            body = await resp.json()
        assert len(body["data"]) == 1 and body["data"][0]["filename"] == "f2.jsonl"
        assert body["has_more"] is True


# -- a byte order mark ---------------------------------------------------------------------------


def _lines(model: str, n: int) -> bytes:
    return b"".join(
        msgspec.json.encode({"custom_id": f"req-{i}", "method": "POST",
                             "url": "/v1/chat/completions",
                             "body": {"model": model, "messages": USER}}) + b"\n"
        for i in range(n)
    )  # fmt: skip


async def test_a_bom_on_line_1_is_accepted(tmp_path: Path) -> None:
    async with FakeProvider() as fake:
        src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        src.write_bytes(b"\xef\xbb\xbf" + _lines("openai/gpt-4o-mini", 3))
        argv = ["batch", "run", str(src), "-o", str(out), "--api-base", fake.openai_base,
                "--api-key", "k", "--progress", "none"]  # fmt: skip
        assert await asyncio.to_thread(main, argv) == 0
        assert len(out.read_bytes().splitlines()) == 3
        assert (tmp_path / "out.errors.jsonl").read_bytes() == b""
    async with stack(settings={"files_dir": str(tmp_path / "store")}) as s:
        up = await s.oai.files.create(file=("b.jsonl", b"\xef\xbb\xbf" + _lines("fast", 1)),
                                      purpose="batch")  # fmt: skip
        batch = await s.oai.batches.create(
            input_file_id=up.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"salvo batch {batch.id}"]
        await asyncio.wait([task])
        done = await s.oai.batches.retrieve(batch.id)
        assert done.status == "completed" and done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (1, 0)


# -- 404s about objects ---------------------------------------------------------------------------


@pytest.fixture
async def fake_apis() -> AsyncIterator[FakeProvider]:
    from salvo.testing import _batches, _files

    async with FakeProvider(installers=[_files.install, _batches.install]) as fake:
        yield fake


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_404_from_a_batches_api_is_about_the_batch(
    fake_apis: FakeProvider, provider: str
) -> None:
    base = fake_apis.openai_base if provider == "openai" else fake_apis.anthropic_base
    async with salvo.Client() as client:
        kw = {"provider": provider, "api_base": base, "api_key": "k", "client": client}
        with pytest.raises(salvo.NotFoundError) as info:
            await batches.aretrieve_batch("batch_nope123", **kw)
    text = str(info.value)
    assert "batch_nope123" in text and "Check the id" in text
    assert "model" not in text
