"""Exactly once under SIGKILL: ``salvo batch run`` of 20,000 requests in a subprocess, against
the fake in another subprocess, killed part-way and run again; then the crash window itself
(bytes written past the last commit) reproduced deterministically."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import salvo
from _batch_helpers import ids_in
from salvo.batches._engine import Job
from salvo.batches._types import Batch

N = 20_000


@contextlib.contextmanager
def fake_process() -> Iterator[str]:
    """``python -m salvo.testing --port 0`` in a subprocess; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "salvo.testing", "--port", "0", "--no-records"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, line
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def write_requests(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {i}"}]}
            line = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**line, "body": body}) + "\n")


@pytest.mark.timeout(240)  # 20,000 real requests: seconds here, slower on a busy CI box
def test_sigkill_part_way_then_rerun_gives_each_custom_id_once(tmp_path: Path) -> None:
    src, out = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    errors = tmp_path / "results.errors.jsonl"
    write_requests(src, N)
    with fake_process() as url:
        cmd = [sys.executable, "-m", "salvo.cli", "batch", "run", str(src), "-o", str(out),
               "--api-base", f"{url}/v1", "--api-key", "k", "--progress", "none"]  # fmt: skip
        job = subprocess.Popen(cmd)
        deadline = time.monotonic() + 60
        while not out.exists() or out.stat().st_size < 2_000_000:  # a few thousand answers
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(job.pid, signal.SIGKILL)
        assert job.wait(timeout=10) == -signal.SIGKILL
        killed_at = len(out.read_bytes().splitlines())
        assert 0 < killed_at < N
        subprocess.run(cmd, check=True, timeout=180)
    assert ids_in(out, errors) == Counter(f"req-{i}" for i in range(N))


async def test_bytes_written_after_the_last_commit_are_cut(tmp_path: Path) -> None:
    """The window between appending results and committing them, made to happen on purpose:
    the file holds duplicate and torn lines past the committed size; resuming cuts them off
    and answers those lines again, once."""
    from _batch_helpers import jsonl
    from salvo.testing import Behavior, FakeProvider

    src, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    src.write_bytes(jsonl("openai/gpt-4o-mini", 30))
    state = tmp_path / "state.sqlite3"
    Job.create(state, Batch(id="batch_c", provider="local"))
    async with FakeProvider() as fake, salvo.Client() as client:
        fake.script("gpt-4o-mini", Behavior(latency=0.01))

        def job() -> Job:
            over = {"api_key": "k", "api_base": fake.openai_base}
            return Job(client, state_path=state, input_path=src, output_path=out,
                       error_path=err, overrides=over, concurrency=2, flush_every=3)  # fmt: skip

        first = job()
        task = asyncio.create_task(first.run())
        while first.statistics().flushes < 3 or not out.exists() or not out.stat().st_size:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        committed = out.read_bytes()
        lines = committed.splitlines(keepends=True)
        with open(out, "ab") as f:  # as if killed after the write, before the commit
            f.write(lines[0] + lines[-1] + lines[1][:25])
        with open(err, "ab") as f:
            f.write(b'{"id": "batch_req_x_1", "custom_id": "req-1", "respo')
        done = await job().run()
    assert done.request_counts.completed == 30
    assert out.read_bytes().startswith(committed)
    assert ids_in(out, err) == Counter(f"req-{i}" for i in range(30))
