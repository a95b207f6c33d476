"""``benchmarks/bench_proxy.py`` end to end, tiny: the harness starts the fake, the raw relay and
the proxy, drives each with the aiohttp load generator and reports every request answered.

Figures are not checked (speed is measured by ``make bench``, not asserted); what is checked is
that the benchmark measures what it says: every request a 200, the proxy's overhead header
seen through the proxy only, and CPU accounted to each process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_proxy.py"


def test_bench_proxy_runs_every_target_without_errors() -> None:
    cmd = [sys.executable, str(BENCH), "--loadgen", "python", "--concurrency", "2",
           "--rounds", "1", "--seconds", "30", "--requests", "300", "--json"]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    report = json.loads(out.stdout)
    assert report["loadgen"] == "python"
    (level,) = report["results"]
    assert level["concurrency"] == 2
    for target in ("direct", "raw", "proxy"):
        row = level[target]
        assert row["errors"] == 0, (target, row)
        assert row["requests"] == 300, (target, row)
        assert row["cpu_us_per_request"] > 0, (target, row)
    assert level["direct"]["overhead_p50_ms"] is None
    assert level["raw"]["overhead_p50_ms"] is None
    assert level["proxy"]["overhead_p50_ms"] is not None
    assert level["raw"]["upstream_cpu_us_per_request"] > 0
    assert level["proxy"]["upstream_cpu_us_per_request"] > 0
