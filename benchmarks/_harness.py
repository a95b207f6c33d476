"""The benchmark harness: ``python -m benchmarks [--compare] [--quick]``.

One fake OpenAI server runs in its own process (``python -m salvo.testing``). Each system is
measured in fresh processes of its own (one for imports, one for the core scenarios, one for
the big batch), so no system pays for another's imports, caches or garbage. Results go to
``benchmarks/results/latest.json`` and a table on stdout; ``--chart`` draws ``docs/bench.png``
when matplotlib is installed. The figures that matter are the ratios to raw aiohttp measured
in the same run, on the same machine, against the same server.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._fake import FakeProcess, proc_cpu_s, script, wait_idle
from ._report import print_tables, write_chart
from ._worker import RACE_LATENCY, STREAM_CHUNKS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BASE_SYSTEMS = ["raw", "salvo", "salvo-client"]
COMPARE_SYSTEMS = ["openai", "litellm"]
IMPORTS = {
    "python": "",
    "raw": "import aiohttp, msgspec",
    "salvo": "import salvo",
    "salvo-client": "",  # same import as salvo
    "openai": "import openai",
    "litellm": "import litellm",
}
_IMPORT_CODE = """
import time
t0 = time.perf_counter()
{stmt}
dt = time.perf_counter() - t0
rss = hwm = 0.0
try:
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'): rss = int(line.split()[1]) / 1024
        if line.startswith('VmHWM:'): hwm = int(line.split()[1]) / 1024
except OSError:
    import resource, sys
    rss = hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (
        1024 * 1024 if sys.platform == 'darwin' else 1024)
print(dt, rss, hwm)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(k, None)
    return env


def measure_import(stmt: str, repeats: int) -> dict[str, Any]:
    """Median wall time of ``stmt`` in fresh interpreters, and the RSS after it."""
    times, rss, hwm = [], [], []
    code = _IMPORT_CODE.format(stmt=stmt or "pass")
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
        ).stdout.split()
        times.append(float(out[0]))
        rss.append(float(out[1]))
        hwm.append(float(out[2]))
    return {
        "stmt": stmt,
        "import_s": statistics.median(times),
        "rss_mb": statistics.median(rss),
        "peak_rss_mb": statistics.median(hwm),
    }


class Worker:
    """One system's fresh ``serve`` process: set up once, then measured runs on command."""

    def __init__(self, system: str, fake: FakeProcess, extra: list[str]) -> None:
        self.system = system
        cmd = [sys.executable, "-m", "benchmarks._worker", "--system", system, "--group", "serve"]
        cmd += ["--fake-url", fake.url, "--fake-pid", str(fake.pid), *extra]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.error: str | None = None
        self._answer()  # {"ready": true} once the system is set up

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("@@bench "):
                return json.loads(line[8:])  # type: ignore[no-any-return]
        self.error = f"{self.system}: the worker exited with {self.proc.wait()}"
        raise RuntimeError(self.error)

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(op="quit")
            except (RuntimeError, BrokenPipeError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


#: scenario -> (kind of call, concurrency, units per call)
SCENARIOS = {
    "c1": ("complete", 1, 1),
    "c64": ("complete", 64, 1),
    # One 200-chunk stream at a time, chunks 1 ms apart: each arrives in its own read, as from
    # a real model.
    "stream": ("stream-spaced", 1, STREAM_CHUNKS + 2),
    # 16 streams at once, each written in one piece: parsing throughput.
    "stream_burst": ("stream-burst", 16, STREAM_CHUNKS + 2),
}


def measure_interleaved(
    workers: dict[str, Worker], scenario: str, *, target_s: float, repeats: int
) -> dict[str, dict[str, Any]]:
    """Warm every system up, size each one's run to about ``target_s``, then take ``repeats``
    rounds in which every system runs once (in a rotating order); medians per system."""
    kind, conc, units = SCENARIOS[scenario]
    sizes: dict[str, int] = {}
    failed: dict[str, dict[str, Any]] = {}
    for name, w in workers.items():
        warm = max(2 * conc, 4 if kind != "complete" else 50)
        got = w.ask(op="warm", kind=kind, n=warm, concurrency=conc, per_call=units)
        if "error" in got:
            failed[name] = got
            continue
        per_call = got["wall_s"] / warm
        n = int(min(20_000, max(conc, target_s / max(per_call, 1e-6))))
        sizes[name] = max(n, 3)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in sizes}
    order = list(sizes)
    for r in range(repeats if order else 0):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            if name in failed:
                continue
            got = workers[name].ask(
                op="calls", kind=kind, n=sizes[name], concurrency=conc, per_call=units
            )
            if "error" in got:
                failed[name] = got
            else:
                samples[name].append(got)
    out: dict[str, dict[str, Any]] = dict(failed)
    for name, ss in samples.items():
        if name in failed:
            continue
        out[name] = {
            "n": sizes[name],
            "concurrency": conc,
            "units_per_call": units,
            **{
                k: statistics.median(x[k] for x in ss)
                for k in ("cpu_us", "per_s", "fake_cpu_us", "fake_util")
            },
            "samples": ss,
        }
    return out


def run_batch(system: str, fake: FakeProcess, extra: list[str], timeout: float) -> dict[str, Any]:
    """The big batch, alone in a fresh process."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    cmd = [sys.executable, "-m", "benchmarks._worker", "--system", system, "--group", "batch"]
    cmd += ["--fake-url", fake.url, "--fake-pid", str(fake.pid), "--out", out, *extra]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), timeout=timeout, stdout=sys.stderr)
        if proc.returncode != 0:
            return {"error": f"the batch worker exited with {proc.returncode}"}
        return json.loads(Path(out).read_text())  # type: ignore[no-any-return]
    except subprocess.TimeoutExpired:
        return {"error": f"the batch took longer than {timeout:.0f} s"}
    finally:
        Path(out).unlink(missing_ok=True)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median CPU time (of two: the lower), its siblings kept as samples."""
    good = sorted((r for r in runs if "error" not in r), key=lambda r: r["cpu_s"])
    if not good:
        return runs[0] if runs else {"error": "no batch run"}
    return {**good[(len(good) - 1) // 2], "samples": runs}


def script_fake(url: str) -> None:
    text = "word " * 160  # 800 characters, 200 pieces of 4
    script(url, "stream-spaced", {"text": text, "chunks": STREAM_CHUNKS, "chunk_interval": 0.001})
    script(url, "stream-burst", {"text": text, "chunks": STREAM_CHUNKS})
    for model, latency in RACE_LATENCY.items():
        script(url, model, {"latency": latency})


def available(system: str) -> bool:
    mod = {"openai": "openai", "litellm": "litellm"}.get(system)
    return mod is None or importlib.util.find_spec(mod) is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="salvo vs raw aiohttp (and, with --compare, the openai SDK and LiteLLM) "
        "against a local fake OpenAI server in its own process.",
    )
    p.add_argument("--compare", action="store_true", help="also the openai SDK and LiteLLM")
    p.add_argument("--quick", action="store_true", help="shorter runs (rougher figures)")
    p.add_argument("--systems", default="", help="comma-separated subset: " + ", ".join(IMPORTS))
    p.add_argument("--only", default="", help="scenarios: c1,c64,stream,stream_burst,race,gather")
    p.add_argument("--no-batch", action="store_true", help="skip the big batch")
    p.add_argument("--batch-n", type=int, default=10_000)
    p.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write results")
    p.add_argument("--chart", default="", help="write a chart PNG here (needs matplotlib)")
    p.add_argument(
        "--replot", action="store_true", help="only redraw --chart from the --json results"
    )
    args = p.parse_args(argv)
    if args.replot:
        if not args.chart:
            p.error("--replot needs --chart PATH")
        old = json.loads(Path(args.json).read_text())
        print_tables(old)
        print(write_chart(old, Path(args.chart)))
        return 0

    systems = BASE_SYSTEMS + (COMPARE_SYSTEMS if args.compare else [])
    if args.systems:
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in IMPORTS or s == "python"]
    if unknown:
        p.error(f"unknown systems: {', '.join(unknown)}")
    missing = [s for s in systems if not available(s)]
    for s in missing:
        print(
            f"note: {s} is not installed, so it is left out; "
            "`pip install -e '.[bench]'` (or `make bench-compare`) installs it.",
            file=sys.stderr,
        )
    systems = [s for s in systems if s not in missing]
    if not systems:
        print("nothing to measure.", file=sys.stderr)
        return 2

    target_s, repeats = (0.3, 3) if args.quick else (0.6, 5)
    race_iters, gather_iters = (5, 3) if args.quick else (10, 5)
    extra = [
        f"--race-iters={race_iters}",
        f"--gather-iters={gather_iters}",
        f"--batch-n={args.batch_n}",
    ]
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()] or [
        *SCENARIOS,
        "race",
        "gather",
    ]

    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "quick": args.quick,
            "command": "python -m benchmarks "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "stream_chunks": STREAM_CHUNKS + 2,
            "race_latencies_ms": {k: v * 1e3 for k, v in RACE_LATENCY.items()},
            "repeats": repeats,
        },
        "imports": {},
        "systems": {s: {"core": {}} for s in systems},
    }
    import_repeats = 3 if args.quick else 5
    for s in ["python", *systems]:
        if s == "salvo-client":
            continue
        print(f"[import] {s} ...", file=sys.stderr, flush=True)
        results["imports"][s] = measure_import(IMPORTS[s], import_repeats)
    if "salvo" in systems:
        results["imports"]["salvo+aiohttp"] = measure_import(
            "import salvo, aiohttp", import_repeats
        )

    with FakeProcess(records=True) as fake:
        script_fake(fake.url)
        fake_start_cpu = proc_cpu_s(fake.pid)
        workers: dict[str, Worker] = {}
        try:
            for s in systems:
                print(f"[setup] {s} ...", file=sys.stderr, flush=True)
                try:
                    workers[s] = Worker(s, fake, extra)
                except RuntimeError as exc:
                    results["systems"][s]["core"]["error"] = str(exc)
            for sc in scenarios:
                print(f"[{sc}] {', '.join(workers)} ...", file=sys.stderr, flush=True)
                wait_idle(fake.pid)
                if sc in SCENARIOS:
                    got = measure_interleaved(workers, sc, target_s=target_s, repeats=repeats)
                    for s, res in got.items():
                        results["systems"][s]["core"][sc] = res
                else:
                    for s, w in workers.items():
                        results["systems"][s]["core"][sc] = w.ask(op=sc)
        finally:
            for w in workers.values():
                w.close()
        if not args.no_batch and not args.only:
            # Each batch in a fresh process; the fast systems twice (in reversed order the
            # second time) and the median kept, the slow ones once (they take minutes).
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
            rounds = [systems, [s for s in reversed(systems) if s not in COMPARE_SYSTEMS]]
            for s in (s for r in rounds for s in r):
                print(f"[batch] {s} ...", file=sys.stderr, flush=True)
                wait_idle(fake.pid)
                runs[s].append(run_batch(s, fake, extra, timeout=900))
            for s, rs in runs.items():
                results["systems"][s]["batch"] = _median_run(rs)
        results["meta"]["fake_cpu_s_total"] = proc_cpu_s(fake.pid) - fake_start_cpu
    results["meta"]["elapsed_s"] = time.perf_counter() - started

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print_tables(results)
    print(f"\nresults: {out}  ({results['meta']['elapsed_s']:.0f} s)")
    if args.chart:
        print(write_chart(results, Path(args.chart)))
    return 0
