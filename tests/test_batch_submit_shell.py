"""``salvo batch submit requests.jsonl --provider P --wait`` from the shell (the installed
``salvo`` command in a child process) for the providers whose batch APIs run through a
translation: Mistral, Groq, Together; the fake runs on the test's loop."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from _batch_helpers import jsonl
from salvo.testing import Behavior, FakeProvider
from salvo.testing._batches import batches_of
from salvo.testing._jobs import jobs_of
from test_batch_jobs import MODELS, base

SALVO = Path(sys.executable).with_name("salvo")


async def shell(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SALVO), *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.skipif(not SALVO.exists(), reason="the salvo command is not installed")
@pytest.mark.parametrize("provider", ["mistral", "groq", "together"])
async def test_submit_wait_from_the_shell(
    fake: FakeProvider, tmp_path: Path, provider: str
) -> None:
    model = MODELS[provider]
    fake.script(model, lambda n: Behavior(status=500) if n == 0 else Behavior(text="ok"))
    if provider == "groq":
        batches_of(fake).auto_advance = 1
    else:
        jobs_of(fake, provider).auto_advance = 1
    src = tmp_path / "requests.jsonl"
    src.write_bytes(jsonl(model, 4))
    env = {f"{provider.upper()}_API_KEY": "sk-test", "SALVO_BATCH_DIR": str(tmp_path / "store")}
    common = ["--provider", provider, "--api-base", base(fake, provider)]
    code, out, err = await shell(
        "batch", "submit", str(src), "--wait", "--poll-interval", "0.05", *common, env=env
    )
    assert code == 0, err
    batch = json.loads(out)
    assert (batch["status"], batch["provider"]) == ("completed", provider)
    assert batch["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    results = tmp_path / "results.jsonl"
    code, _, err = await shell("batch", "results", batch["id"], "-o", str(results), *common,
                               env=env)  # fmt: skip
    assert code == 0, err
    ids = sorted(json.loads(line)["custom_id"] for line in results.read_bytes().splitlines())
    assert ids == ["req-0", "req-1", "req-2", "req-3"]
    bad = tmp_path / "embed.jsonl"
    bad.write_bytes(jsonl(model, 2, url="/v1/completions"))
    seen = len(fake.records)
    code, _, err = await shell("batch", "submit", str(bad), *common, env=env)
    assert code == 2 and "Line 1:" in err and "no batch for url" in err
    assert len(fake.records) == seen
