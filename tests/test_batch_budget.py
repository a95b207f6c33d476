"""``salvo batch run --max-cost-usd``: lines past the budget end as ``budget_exceeded`` error
lines, never sent; a rerun with a larger budget runs exactly those, and every custom_id stays
exactly once across the output and error files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from _batch_helpers import jsonl, salvo_cli
from salvo.testing import Behavior, FakeProvider

MODEL = "openai/gpt-4o-mini"  # priced in the built-in table: $0.15 / $0.60 per million
#: The worst case of one line: prompt bound (<= 11 bytes + 8) and max_tokens=100.
WORST = (19 * 0.15 + 100 * 0.6) / 1e6


pytestmark = pytest.mark.usefixtures("batch_dir")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


async def test_lines_past_the_budget_wait_for_a_larger_one(
    fake: FakeProvider, tmp_path: Path
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    errors = tmp_path / "out.errors.jsonl"
    src.write_bytes(jsonl(MODEL, 20, max_tokens=100))
    fake.script("gpt-4o-mini", Behavior(prompt_tokens=19, completion_tokens=100))  # = WORST
    base = ["run", str(src), "-o", str(out), "--api-base", fake.openai_base, "--api-key", "k",
            "--progress", "none", "--concurrency", "20"]  # fmt: skip
    # All 20 workers reserve at once: 5 worst cases fit, 15 lines are deferred, not sent.
    assert await salvo_cli(*base, "--max-cost-usd", str(5.5 * WORST)) == 0
    assert len(fake.records) == 5
    assert len(lines(out)) == 5
    deferred = lines(errors)
    assert len(deferred) == 15
    assert {e["error"]["code"] for e in deferred} == {"budget_exceeded"}  # type: ignore[index]
    sent = {r.body["messages"][0]["content"] for r in fake.records}
    answered = {x["custom_id"] for x in lines(out)}
    assert {f"question {c[4:]}" for c in answered} == sent  # type: ignore[index]
    # The same budget again: nothing new fits (what was spent counts), nothing sent.
    assert await salvo_cli(*base, "--max-cost-usd", str(5.5 * WORST)) == 0
    assert len(fake.records) == 5 and len(lines(errors)) == 15
    # A larger budget runs exactly the deferred lines.
    assert await salvo_cli(*base, "--max-cost-usd", "1.0") == 0
    assert len(fake.records) == 20
    assert lines(errors) == []
    ids = Counter(str(x["custom_id"]) for x in lines(out) + lines(errors))
    assert ids == Counter(f"req-{i}" for i in range(20))


async def test_no_budget_on_the_rerun_runs_everything(fake: FakeProvider, tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(jsonl(MODEL, 6, max_tokens=100))
    base = ["run", str(src), "-o", str(out), "--api-base", fake.openai_base, "--api-key", "k",
            "--progress", "none"]  # fmt: skip
    assert await salvo_cli(*base, "--max-cost-usd", "0") == 0
    assert fake.records == []
    assert len(lines(tmp_path / "out.errors.jsonl")) == 6
    assert await salvo_cli(*base) == 0
    assert len(fake.records) == 6 and len(lines(out)) == 6
    assert lines(tmp_path / "out.errors.jsonl") == []


async def test_unpriced_model_with_a_budget_stops_before_sending(
    fake: FakeProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(jsonl("openai/no-such-price", 4))
    code = await salvo_cli("run", str(src), "-o", str(out), "--api-base", fake.openai_base,
                           "--api-key", "k", "--progress", "none",
                           "--max-cost-usd", "1")  # fmt: skip
    assert code != 0
    assert "set_price" in capsys.readouterr().err
    assert fake.records == []
    assert lines(out) == [] and lines(tmp_path / "out.errors.jsonl") == []
