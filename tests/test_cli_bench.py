"""``salvo bench``: the numbers in its table add up, against the in-process fake provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import salvo
from salvo import cli
from salvo._cli_bench import bench_models, format_table, percentile
from salvo.testing import Behavior, FakeProvider


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0
    assert percentile(list(map(float, range(101))), 90) == 90.0


async def test_counts_and_scripted_errors(fake: FakeProvider) -> None:
    # Every 4th request to "flaky" fails with a 500 (no retries): 5 errors out of 20.
    fake.script("flaky", lambda i: Behavior(status=500) if i % 4 == 0 else Behavior())
    fake.script("steady", Behavior(latency=0.01, completion_tokens=7))
    params = {"api_base": fake.openai_base, "api_key": "k", "max_retries": 0}
    async with salvo.Client() as client:
        res = await bench_models(
            client, ["openai/flaky", "openai/steady"], n=20, concurrency=4, params=params
        )
    flaky, steady = res.models
    assert (flaky.n, flaky.ok, flaky.errors) == (20, 15, {"ServerError": 5})
    assert (steady.n, steady.ok, steady.errors) == (20, 20, {})
    assert len(fake.records_for("flaky")) == 20
    assert len(fake.records_for("steady")) == 20
    assert steady.completion_tokens == 20 * 7
    assert steady.latency_p50 is not None and steady.latency_p99 is not None
    assert 0.01 <= steady.latency_p50 <= steady.latency_p90 <= steady.latency_p99  # type: ignore[operator]
    assert steady.ttft_p50 == steady.latency_p50  # no stream: the first token is the answer
    table = format_table(res)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["model", "n", "ok", "errors"]
    assert lines[2].split()[:5] == ["openai/flaky", "20", "15", "ServerError", "5"]
    assert lines[3].split()[:4] == ["openai/steady", "20", "20", "0"]


async def test_stream_measures_first_token(fake: FakeProvider) -> None:
    fake.script(
        "s",
        Behavior(first_chunk_delay=0.02, chunks=5, chunk_interval=0.01, text="a b c d e f g h"),
    )
    params = {"api_base": fake.openai_base, "api_key": "k"}
    async with salvo.Client() as client:
        res = await bench_models(
            client, ["openai/s"], n=6, concurrency=3, stream=True, params=params
        )
    (s,) = res.models
    assert (s.ok, s.errors) == (6, {})
    assert s.completion_tokens == 6 * 5  # five content chunks each
    assert s.ttft_p50 is not None and s.latency_p50 is not None
    assert s.ttft_p50 >= 0.02
    assert s.latency_p50 - s.ttft_p50 >= 0.03  # four more chunks, 10 ms apart
    assert s.tokens_per_s is not None and s.tokens_per_s > 0
    assert all(r.stream for r in fake.records_for("s"))


def test_cli_with_fake_writes_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = cli.main(
        ["bench", "--fake", "--models", "a, b", "--n", "12", "--concurrency", "3",
         "--stream", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split()[:4] == ["model", "n", "ok", "errors"]
    assert lines[2].split()[:4] == ["openai/a", "12", "12", "0"]
    assert lines[3].split()[:4] == ["openai/b", "12", "12", "0"]
    data = json.loads(out.read_text())
    assert data["stream"] is True and data["concurrency"] == 3
    a, b = data["models"]
    assert (a["n"], a["ok"], a["errors"]) == (12, 12, {})
    # The fake answers "a" in 20 ms and "b" in 40 ms.
    assert a["ttft_p50"] >= 0.02 and b["ttft_p50"] >= 0.04
    assert a["latency_p50"] <= a["latency_p90"] <= a["latency_p99"]


def test_cli_rejects_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--fake", "--models", "a", "--n", "0"]) == 2
    assert "--n and --concurrency" in capsys.readouterr().err


def test_cli_chart_without_matplotlib_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    chart = tmp_path / "c.png"
    code = cli.main(
        [
            "bench",
            "--fake",
            "--models",
            "a",
            "--n",
            "3",
            "--concurrency",
            "1",
            "--chart",
            str(chart),
        ]
    )
    assert code == 0
    assert "chart skipped: matplotlib is not installed" in capsys.readouterr().out
    assert not chart.exists()
