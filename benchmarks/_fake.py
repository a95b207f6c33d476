"""The fake OpenAI server in its own process (``python -m salvo.testing``), driven from outside.

The harness starts it; workers script it and read its records through the ``/_fake/*`` control
endpoints, and read its CPU time from ``/proc/<pid>/stat`` so every figure can say how much of
the machine the server itself used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

__all__ = ["FakeProcess", "fake_records", "proc_cpu_s", "script"]

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (from /proc; 0.0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _post(url: str, payload: Any) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def script(base: str, model: str, behavior: dict[str, Any]) -> None:
    """Script ``model`` on the fake at ``base`` (``http://host:port``) with one Behavior."""
    _post(f"{base}/_fake/script", {"model": model, "behavior": behavior})


def fake_records(base: str, model: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/_fake/records?model={model}", timeout=10) as resp:
        out: list[dict[str, Any]] = json.loads(resp.read())
    return out


class FakeProcess:
    """``with FakeProcess(records=False) as fake:`` -> ``fake.url``, ``fake.pid``."""

    def __init__(self, *, records: bool = True, python: str = sys.executable) -> None:
        self.records = records
        self.python = python
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> FakeProcess:
        cmd = [self.python, "-m", "salvo.testing", "--port", "0"]
        cmd += ["--no-records"] if not self.records else ["--max-records", "2000"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[-1].strip()
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> FakeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_idle(pid: int, *, quiet_s: float = 0.2, timeout: float = 3.0) -> None:
    """Wait until process ``pid`` used no CPU for ``quiet_s`` (the fake finished its work)."""
    end = time.monotonic() + timeout
    last = proc_cpu_s(pid)
    while time.monotonic() < end:
        time.sleep(quiet_s)
        now = proc_cpu_s(pid)
        if now == last:
            return
        last = now
