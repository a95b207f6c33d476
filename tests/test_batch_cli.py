"""``salvo batch`` (run with progress and resume; submit, status, results, cancel, list) and the
blocking twins. The CLI runs in a worker thread with its own event loop (as it would in its own
process), talking over real sockets to the fake on the test's loop."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import ids_in, jsonl, salvo_cli
from salvo import batches
from salvo.batches._cli import Progress
from salvo.batches._types import Batch, RequestCounts
from salvo.testing import Behavior, FakeProvider
from salvo.testing import _batches as fake_batches

MODEL = "openai/gpt-4o-mini"


pytestmark = pytest.mark.usefixtures("batch_dir")


async def test_run_writes_results_and_errors_and_resumes(
    fake: FakeProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script("gpt-4o-mini", lambda n: Behavior(status=422) if n % 10 == 0 else Behavior())
    src, out = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    src.write_bytes(jsonl(MODEL, 50))
    args = ["run", str(src), "-o", str(out), "--api-base", fake.openai_base, "--api-key", "k",
            "--progress", "lines", "--progress-interval", "0", "--concurrency", "8"]  # fmt: skip
    assert await salvo_cli(*args) == 0
    errors = tmp_path / "results.errors.jsonl"
    assert (tmp_path / "results.jsonl.salvo-state.sqlite3").exists()
    assert ids_in(out, errors) == Counter(f"req-{i}" for i in range(50))
    assert len(errors.read_bytes().splitlines()) == 5
    err = capsys.readouterr().err
    assert "50/50 done (100.0%)  failed 5" in err and "req/s  ETA" in err
    assert re.fullmatch(
        r"batch completed: 45 succeeded, 5 failed of 50, cost \$0\.\d{6}", err.splitlines()[-1]
    )
    before = len(fake.records)
    assert await salvo_cli(*args) == 0  # the same command again: nothing left to send
    assert len(fake.records) == before
    assert "batch completed: 45 succeeded" in capsys.readouterr().err


async def test_run_options(
    fake: FakeProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "o.jsonl"
    src.write_bytes(jsonl("anything", 3))
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model_list:\n  - model_name: fast\n    params:\n      model: openai/m2\n"
        f"      api_base: {fake.openai_base}\n      api_key: k\n"
    )
    code = await salvo_cli("run", str(src), "-o", str(out), "--config", str(config),
                           "--model", "fast", "--rpm", "6000", "--progress", "none")  # fmt: skip
    assert code == 0 and capsys.readouterr().err == ""
    assert len(fake.records_for("m2")) == 3
    assert await salvo_cli("run", str(tmp_path / "missing.jsonl"), "-o", str(out)) == 2
    assert "does not exist" in capsys.readouterr().err


async def test_provider_actions(
    fake: FakeProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_batches.batches_of(fake).auto_advance = 1
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl("gpt-4o-mini", 3))
    common = ["--provider", "openai", "--api-base", fake.openai_base, "--api-key", "k"]
    assert await salvo_cli("submit", str(src), "--metadata", "job=x", *common) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["status"] == "validating" and created["metadata"] == {"job": "x"}
    assert await salvo_cli("status", created["id"], "--wait", "--poll-interval", "0", *common) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"
    out = tmp_path / "results.jsonl"
    assert await salvo_cli("results", created["id"], "-o", str(out), *common) == 0
    assert ids_in(out) == Counter(["req-0", "req-1", "req-2"])
    assert await salvo_cli("list", "--limit", "1", *common) == 0
    page = json.loads(capsys.readouterr().out)
    assert [b["id"] for b in page["data"]] == [created["id"]] and not page["has_more"]
    assert await salvo_cli("submit", str(src), *common) == 0
    second = json.loads(capsys.readouterr().out)["id"]
    assert await salvo_cli("cancel", second, *common) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelling"
    assert await salvo_cli("status", "batch_nope", *common) == 2
    assert "404" in capsys.readouterr().err


async def test_local_actions_share_the_store(
    fake: FakeProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl(MODEL, 2))
    common = ["--provider", "local", "--store-dir", str(tmp_path / "store"),
              "--api-base", fake.openai_base, "--api-key", "k"]  # fmt: skip
    assert await salvo_cli("submit", str(src), "--wait", *common) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 2
    assert await salvo_cli("results", done["id"], *common) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_progress_display() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    batch = Batch(id="b", request_counts=RequestCounts(total=10, completed=4, failed=1))
    tty = Tty()
    bar = Progress(tty, interval=0)
    assert bar.mode == "bar"
    bar.update(batch)
    assert tty.getvalue().startswith("\r[") and tty.getvalue().endswith("\x1b[K")
    assert "5/10 done (50.0%)  failed 1" in tty.getvalue()
    plain = io.StringIO()
    lines = Progress(plain, interval=3600)
    assert lines.mode == "lines"
    lines.update(batch)
    lines.update(batch)  # within the interval: not printed again
    assert plain.getvalue().count("\n") == 1
    batch.status = "completed"
    lines.finish(batch)
    assert plain.getvalue().endswith("batch completed: 4 succeeded, 1 failed of 10\n")


def test_blocking_twins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_batch_crash import fake_process

    monkeypatch.setenv("SALVO_BATCH_DIR", str(tmp_path / "store"))
    src = tmp_path / "in.jsonl"
    src.write_bytes(jsonl(MODEL, 4))
    with fake_process() as url:
        kw: dict[str, Any] = {"provider": "local", "api_base": f"{url}/v1", "api_key": "k"}
        done = batches.batch_completion_create(input_file_path=src, **kw)
        assert done.status == "completed" and done.request_counts.completed == 4
        assert batches.batch_completion_retrieve(done.id, **kw).id == done.id
        assert [b.id for b in batches.batch_completion_list(limit=5, **kw).data] == [done.id]
        assert batches.retrieve_batch(done.id, **kw).status == "completed"
        assert batches.cancel_batch(done.id, **kw).status == "completed"
        assert len(batches.file_content(done.output_file_id or "", **kw).splitlines()) == 4
        fo = batches.create_file(src, **kw)
        again = batches.create_batch(input_file_id=fo.id, **kw)
        assert again.status == "completed"
        assert len(batches.list_batches(**kw).data) == 2


async def test_blocking_twins_run_inside_a_loop(tmp_path: Path) -> None:
    # a blocking twin called on a running loop runs on salvo's background loop, not refused
    with pytest.raises(salvo.SalvoError) as info:
        batches.retrieve_batch("batch_x", provider="local", store_dir=tmp_path)
    assert "await salvo" not in str(info.value)
