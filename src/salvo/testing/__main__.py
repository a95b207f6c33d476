"""``python -m salvo.testing --port N [--host 127.0.0.1]``: serve the fake until SIGINT/SIGTERM.

Prints one line, ``salvo fake provider listening on http://HOST:PORT``, once it accepts
connections. Script it from another process with the ``/_fake/*`` control endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ._server import FakeProvider


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m salvo.testing",
        description="Serve salvo's fake LLM provider (OpenAI, Azure, Anthropic, Gemini, Cohere).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free)")
    parser.add_argument(
        "--no-records", action="store_true", help="keep no request records (cheapest)"
    )
    parser.add_argument(
        "--max-records",
        type=int,
        default=10_000,
        help="keep about this many most recent records (default 10000)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeProvider(
        args.host, args.port, keep_records=not args.no_records, max_records=args.max_records
    )
    await fake.start()
    try:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # pragma: no cover - Windows
                loop.add_signal_handler(sig, done.set)
        print(f"salvo fake provider listening on {fake.url}", flush=True)
        await done.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.max_records is not None and args.max_records < 1:
        print("--max-records must be at least 1", file=sys.stderr)
        return 2
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
