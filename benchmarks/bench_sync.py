"""The blocking API's cost per call and its pacing, against the fake in another process:

    .venv/bin/python benchmarks/bench_sync.py

(Run it with ``PYTHONPATH=<another checkout>/src`` to compare with an older salvo.)
"""

from __future__ import annotations

import subprocess
import sys
import time

import salvo

MSGS = [{"role": "user", "content": "hi"}]


def main() -> None:
    fake = subprocess.Popen(
        [sys.executable, "-m", "salvo.testing", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout is not None
        base = fake.stdout.readline().strip().split()[-1]
        kw = {"api_base": base + "/v1", "api_key": "k"}
        salvo.completion("openai/m", MSGS, **kw)
        n = 50
        started = time.perf_counter()
        for _ in range(n):
            salvo.completion("openai/m", MSGS, **kw)
        per_call = (time.perf_counter() - started) / n
        print(f"sync completion: {per_call * 1e3:.2f} ms per call ({n} calls)")
        started = time.perf_counter()
        for _ in range(4):
            salvo.completion("openai/m", MSGS, rpm=600, **kw)
        print(f"4 calls at rpm=600: {(time.perf_counter() - started) * 1e3:.0f} ms (paced: >= 300)")
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
