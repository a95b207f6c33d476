"""`salvo demo` runs end to end against the built-in fake and shows what it claims."""

from __future__ import annotations

import io
import subprocess
import sys

from salvo._cli_demo import run_demo


async def test_demo_shows_race_gather_and_batch() -> None:
    out = io.StringIO()
    shown = await run_demo(n_batch=120, concurrency=16, out=out)
    assert shown["race"]["winner"] == "hare"
    assert set(shown["race"]["losers_closed"]) == {"tortoise", "snail"}
    assert all(t is not None for t in shown["race"]["losers_closed"].values())
    assert shown["stream_winner"] == "hare"
    assert shown["gather"] == ["ModelResponse", "ServerError", "ModelResponse"]
    assert shown["batch"]["n"] == 120 and len(shown["batch"]["failed"]) == 2
    # A fast first model: the backup is never sent. A slow one: the backup is, and wins.
    fast_first, slow_first = shown["hedge"]
    assert fast_first == {"winner": "steady", "sent": {"steady": 1, "laggy": 0}}
    assert slow_first == {"winner": "steady", "sent": {"steady": 1, "laggy": 1}}
    text = out.getvalue()
    assert "winner: hare" in text and "never answered" in text


def test_cli_help_lists_commands() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "salvo.cli", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("demo", "serve", "batch", "bench"):
        assert cmd in proc.stdout
