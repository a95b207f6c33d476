"""Item 4 of issue 11: JSON nested past any decoder's depth is a salvo error in place, never a
RecursionError: from an upstream (answers, error bodies, stream events, every adapter), in
the fan-outs, and in the local batch engine."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

import salvo
from _hostile import Hostile, nested
from salvo import ResponseDecodeError
from salvo.cli import main
from salvo.testing import Behavior, FakeProvider

USER = [{"role": "user", "content": "hi"}]
DEEP = 100_000
PROVIDERS = ["openai/m", "anthropic/claude-x", "gemini/gemini-x", "cohere/command-x"]


def _deep_answer(path: str, body: bytes) -> tuple[int, bytes]:
    return 200, nested(DEEP)


def _client(fake: FakeProvider, hostile: Hostile, model: str = "openai/m") -> salvo.Client:
    return salvo.Client(
        config={
            "model_list": [
                {
                    "model_name": "deep",
                    "params": {"model": model, "api_base": hostile.base, "api_key": "k"},
                },
                {
                    "model_name": "good",
                    "params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": fake.openai_base,
                        "api_key": "k",
                    },
                },
            ]
        },
        max_retries=0,
    )


@pytest.mark.parametrize("model", PROVIDERS)
async def test_a_deep_answer_is_a_decode_error_for_every_adapter(
    fake: FakeProvider, model: str
) -> None:
    async with Hostile(_deep_answer) as hostile, _client(fake, hostile, model) as client:
        with pytest.raises(ResponseDecodeError, match="nested too deeply"):
            await client.acompletion("deep", USER)


@pytest.mark.parametrize("status", [400, 429, 500])
async def test_a_deep_error_body_is_the_provider_error(fake: FakeProvider, status: int) -> None:
    for depth in (DEEP, 900, 600):  # past msgspec's limit, and deep enough to trip later code
        async with (
            Hostile(lambda p, b, d=depth: (status, nested(d))) as hostile,
            _client(fake, hostile) as client,
        ):
            with pytest.raises(salvo.ProviderError) as info:
                await client.acompletion("deep", USER)
            assert info.value.status_code == status
            body = info.value.body  # kept shallow: redaction, logging, re-encoding never recurse
            assert isinstance(body, str) and body.startswith('{"x": [[[')
            msgspec.json.encode(body)


async def test_arace_picks_the_other_model(fake: FakeProvider) -> None:
    fake.script("gpt-4o-mini", Behavior(text="healthy", latency=0.2))
    async with Hostile(_deep_answer) as hostile, _client(fake, hostile) as client:
        resp = await client.arace(["deep", "good"], USER)
        assert resp.content == "healthy"
        assert len(hostile.requests) == 1


async def test_agather_all_and_abatch_completion_report_in_place(fake: FakeProvider) -> None:
    fake.script("gpt-4o-mini", Behavior(text="healthy"))
    async with Hostile(_deep_answer) as hostile, _client(fake, hostile) as client:
        deep, good = await client.agather_all(["deep", "good"], USER)
        assert isinstance(deep, ResponseDecodeError)
        assert isinstance(good, salvo.ModelResponse) and good.content == "healthy"
        results: list[Any] = await client.abatch_completion("deep", [USER, USER, USER])
        assert len(results) == 3
        assert all(isinstance(r, ResponseDecodeError) for r in results)


@pytest.mark.parametrize("model", PROVIDERS)
async def test_a_deep_stream_event_is_a_stream_error(fake: FakeProvider, model: str) -> None:
    event = b"data: " + nested(DEEP) + b"\n\n"

    async with Hostile(lambda p, b: (200, b"")) as hostile, _client(fake, hostile, model) as client:
        hostile.answer = lambda p, b: (200, event)
        with pytest.raises(salvo.SalvoError):
            stream = await client.acompletion("deep", USER, stream=True)
            async with stream:
                async for _ in stream:
                    pass


def _answer_or_poison(path: str, body: bytes) -> tuple[int, bytes]:
    if b"poison" in body:
        return 200, nested(DEEP)
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip
    return 200, msgspec.json.encode(answer)


def _requests(n: int, poison: int, model: str = "openai/m") -> bytes:
    lines = []
    for i in range(n):
        text = "poison" if i == poison else f"hello {i}"
        lines.append(
            {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": model, "messages": [{"role": "user", "content": text}]}}
        )  # fmt: skip
    return b"".join(msgspec.json.encode(line) + b"\n" for line in lines)


async def test_the_local_engine_finishes_a_job_with_a_poison_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALVO_BATCH_DIR", str(tmp_path / "store"))
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(_requests(5, poison=2))
    async with Hostile(_answer_or_poison) as hostile:
        argv = ["batch", "run", str(src), "-o", str(out), "--api-base", hostile.base,
                "--api-key", "k", "--progress", "none", "--max-retries", "0"]  # fmt: skip
        for _ in range(2):  # a second run finds nothing left to do
            assert await asyncio.to_thread(main, argv) == 0
        assert len(hostile.requests) == 5
    ok = [msgspec.json.decode(x) for x in out.read_bytes().splitlines()]
    bad = [
        msgspec.json.decode(x) for x in (tmp_path / "out.errors.jsonl").read_bytes().splitlines()
    ]
    assert sorted(x["custom_id"] for x in ok) == ["req-0", "req-1", "req-3", "req-4"]
    assert [x["custom_id"] for x in bad] == ["req-2"]
    assert "nested too deeply" in bad[0]["error"]["message"]


async def test_an_unexpected_failure_on_one_line_is_an_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever one line's call raises (here a bug stood in for by a RuntimeError), the job
    finishes: that line becomes an error line and the failure is logged."""
    from salvo.batches._engine import Job
    from salvo.batches._types import Batch

    src = tmp_path / "in.jsonl"
    src.write_bytes(_requests(4, poison=1))
    paths = {"state_path": tmp_path / "s.sqlite3", "input_path": src,
             "output_path": tmp_path / "o.jsonl", "error_path": tmp_path / "e.jsonl"}  # fmt: skip
    Job.create(paths["state_path"], Batch(id="batch_t", provider="local"))
    async with Hostile(_answer_or_poison) as hostile:
        async with salvo.Client(max_retries=0) as client:
            real = client.complete_with

            async def buggy(opts: Any, messages: Any, params: Any, **kw: Any) -> Any:
                if messages[0]["content"] == "poison":
                    raise RuntimeError("a bug in salvo")
                return await real(opts, messages, params, **kw)

            monkeypatch.setattr(client, "complete_with", buggy)
            over = {"api_base": hostile.base, "api_key": "k"}
            batch = await Job(client, **paths, overrides=over).run()  # type: ignore[arg-type]
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 1)
    (bad,) = [msgspec.json.decode(x) for x in paths["error_path"].read_bytes().splitlines()]
    assert bad["custom_id"] == "req-1" and bad["error"]["code"] == "internal_error"
    assert "RuntimeError" in bad["error"]["message"]
    assert any("req-1" in r.getMessage() or "line 2" in r.getMessage() for r in caplog.records)


async def test_a_proxy_batch_with_a_poison_line_completes(tmp_path: Path) -> None:
    from salvo.proxy import ProxyServer

    async with Hostile(_answer_or_poison) as hostile:
        config = {
            "model_list": [{"model_name": "m", "params": {"model": "openai/m",
                                                          "api_base": hostile.base,
                                                          "api_key": "k"}}],
            "general_settings": {"master_key": "sk-master-0001",
                                 "files_dir": str(tmp_path / "store")},
        }  # fmt: skip
        async with (
            ProxyServer(config, max_retries=0) as proxy,
            aiohttp.ClientSession(headers={"Authorization": "Bearer sk-master-0001"}) as http,
        ):
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", _requests(4, poison=0, model="m"), filename="in.jsonl")
            async with http.post(proxy.url + "/v1/files", data=form) as resp:
                file_id = (await resp.json())["id"]
            body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h"}  # fmt: skip
            async with http.post(proxy.url + "/v1/batches", json=body) as resp:
                assert resp.status == 200, await resp.text()
                batch_id = (await resp.json())["id"]
            async with asyncio.timeout(20):
                while True:
                    async with http.get(proxy.url + f"/v1/batches/{batch_id}") as resp:
                        batch = await resp.json()
                    if batch["status"] not in ("validating", "in_progress", "finalizing"):
                        break
                    await asyncio.sleep(0.05)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 4, "completed": 3, "failed": 1}


async def test_a_client_body_nested_900000_deep_is_a_400() -> None:
    from salvo.proxy import ProxyServer

    config = {"model_list": [{"model_name": "m", "params": {"model": "openai/m",
                                                            "api_base": "http://127.0.0.1:9",
                                                            "api_key": "k"}}]}  # fmt: skip
    async with ProxyServer(config) as proxy, aiohttp.ClientSession() as http:
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/batches"):
            for body in (nested(900_000), b'{"model": "m", "messages": ' + nested(900_000) + b"}"):
                async with http.post(
                    proxy.url + path,
                    data=io.BytesIO(body),
                    headers={"Content-Type": "application/json"},
                ) as resp:
                    assert resp.status == 400, (path, await resp.text())
                    err = (await resp.json())["error"]
                    assert "nested too deeply" in err["message"]


async def test_a_local_batch_that_fails_unexpectedly_is_failed_not_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that dies of something salvo did not expect (here a RuntimeError standing in for
    a bug) ends its batch as failed, logged; await_batch returns instead of waiting forever."""
    from salvo import batches
    from salvo.batches._engine import Job

    async def broken(self: Job, db: Any) -> Any:
        raise RuntimeError("a bug in salvo")

    monkeypatch.setattr(Job, "_run", broken)
    async with salvo.Client() as client:
        kw: dict[str, Any] = {"client": client, "provider": "local", "store_dir": tmp_path}
        fo = await batches.acreate_file(_requests(2, poison=0), **kw)
        b = await batches.acreate_batch(input_file_id=fo.id, **kw)
        async with asyncio.timeout(10):
            done = await batches.await_batch(b.id, poll_interval=0.01, **kw)
    assert done.status == "failed" and done.errors is not None
    assert done.errors.data[0].code == "internal_error"
    assert "RuntimeError: a bug in salvo" in (done.errors.data[0].message or "")
    assert any("failed unexpectedly" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("model", PROVIDERS)
@pytest.mark.parametrize("depth", [DEEP, 900, 600])
async def test_a_deep_error_event_in_a_stream_is_a_salvo_error(
    fake: FakeProvider, model: str, depth: int
) -> None:
    """An error event whose details nest deep: the error a caller gets is salvo's, and a long
    key (which makes salvo walk the error to mask it) does not make that walk recurse."""
    error = b'{"type": "error", "error": {"code": 500, "status": "INTERNAL", "type": "api_error",'
    error += b' "message": "sk-long-secret-key-0001 broke", "details": ' + nested(depth) + b"}}"
    event = b"event: error\ndata: " + error + b"\n\n"
    params = {"model": model, "api_key": "sk-long-secret-key-0001"}
    async with Hostile(lambda p, b: (200, event)) as hostile:
        config = {
            "model_list": [{"model_name": "x", "params": {**params, "api_base": hostile.base}}]
        }
        async with salvo.Client(config=config, max_retries=0) as client:
            with pytest.raises(salvo.SalvoError) as info:
                stream = await client.acompletion("x", USER, stream=True)
                async with stream:
                    async for _ in stream:
                        pass
            assert "sk-long-secret-key-0001" not in str(info.value)
            assert "sk-long-secret-key-0001" not in repr(getattr(info.value, "body", None))
