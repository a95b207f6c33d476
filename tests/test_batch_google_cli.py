"""``salvo batch submit requests.jsonl --provider gemini|vertex_ai --wait`` from the shell,
against the fake in this process (the CLI runs in a child process)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from _batch_helpers import chat_lines
from _google_creds import service_account
from salvo.testing import FakeProvider
from salvo.testing._gemini_batches import gemini_batches_of
from salvo.testing._vertex import vertex_jobs_of


async def _salvo(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    code = "import sys; from salvo.cli import main; sys.exit(main())"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("provider", ["gemini", "vertex_ai"])
async def test_submit_wait_and_results(provider: str, tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(chat_lines(3))
    async with FakeProvider() as fake:
        gemini_batches_of(fake).auto_advance = 1
        vertex_jobs_of(fake).auto_advance = 1
        env = {"SALVO_BATCH_DIR": str(tmp_path / "store"), "GEMINI_API_KEY": "k",
               "STORAGE_EMULATOR_HOST": fake.url, "GCS_BUCKET_NAME": "b",
               "GOOGLE_APPLICATION_CREDENTIALS": str(service_account(fake, tmp_path))}  # fmt: skip
        base = fake.gemini_base if provider == "gemini" else fake.vertex_base
        code, out, err = await _salvo(
            "batch", "submit", str(path), "--provider", provider, "--wait",
            "--poll-interval", "0", "--api-base", base, env=env,
        )  # fmt: skip
        assert code == 0, err
        batch = json.loads(out)
        assert batch["status"] == "completed" and batch["provider"] == provider
        assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
        code, out, err = await _salvo(
            "batch", "results", batch["id"], "--provider", provider, "--api-base", base, env=env
        )
        assert code == 0, err
        ids = sorted(json.loads(line)["custom_id"] for line in out.splitlines())
        assert ids == ["req-0", "req-1", "req-2"]
