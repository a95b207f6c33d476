"""The local engine's totals: a job longer than one page of pending lines (the engine reads
them a thousand at a time) answers every line, and a job's cost is exactly the sum of its
answers' costs (mutation testing, issue 11: a job that stopped after the first page, or whose
cost started at 1.0, passed every other test)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import salvo
from _batch_helpers import jsonl
from salvo import batches
from salvo.testing import FakeProvider

MODEL = "openai/gpt-4o-mini"


pytestmark = pytest.mark.usefixtures("batch_dir")


async def test_a_job_longer_than_one_page_answers_every_line_and_costs_their_sum(
    fake: FakeProvider, tmp_path: Path
) -> None:
    n = 1200
    async with salvo.Client(retry_policy=salvo.RetryPolicy(wait=False)) as client:
        kw: dict[str, Any] = {"client": client, "api_key": "sk-test",
                              "api_base": fake.openai_base, "store_dir": tmp_path / "store",
                              "provider": "local"}  # fmt: skip
        fo = await batches.acreate_file(jsonl(MODEL, n), **kw)
        b = await batches.acreate_batch(input_file_id=fo.id, **kw)
        done = await batches.await_batch(b.id, poll_interval=0.05, **kw)
        assert done.status == "completed"
        assert done.request_counts.to_dict() == {"total": n, "completed": n, "failed": 0}
        out = await batches.afile_content(done.output_file_id or "", **kw)
    raw = out if isinstance(out, bytes) else out.content
    lines = [json.loads(x) for x in raw.splitlines()]
    ids = Counter(line["custom_id"] for line in lines)
    assert ids == Counter(f"req-{i}" for i in range(n))  # each exactly once
    assert len(fake.records_for("gpt-4o-mini")) == n
    expected = 0.0
    for line in lines:
        body = line["response"]["body"]
        cost = salvo.cost_usd("openai", body["model"], body["usage"])
        assert cost is not None and cost > 0
        expected += cost
    assert done.cost_usd == pytest.approx(expected, rel=1e-6, abs=1e-12)
