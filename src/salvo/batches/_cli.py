"""``salvo batch``: run a JSONL batch locally, or drive a provider's Batch API.

::

    salvo batch run requests.jsonl -o results.jsonl [--model M] [--api-base URL]
        [--api-key K] [--config F] [--rpm N] [--concurrency N]
    salvo batch submit requests.jsonl --provider P [--wait] [--endpoint URL]
        [--completion-window 24h]   (P: openai, azure, anthropic, gemini, vertex_ai, mistral,
                                     groq, together, local, or any provider: its local engine)
    salvo batch status|cancel BATCH_ID --provider P
    salvo batch results BATCH_ID --provider P [-o FILE]
    salvo batch list --provider P [--limit N] [--after ID]

``run`` keeps its state beside the output (``results.jsonl.salvo-state.sqlite3``) and writes
failed requests to ``results.errors.jsonl``: run the same command again after an interruption
and it resumes where it stopped; each custom_id appears exactly once in the two files. It
shows done, failed, rate and ETA: a one-line bar on a terminal, a plain line every few seconds
otherwise (``--progress``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .._errors import ConfigError, SalvoError
from ._types import Batch

__all__ = ["Progress", "register"]


class Progress:
    """Done, failed, rate and ETA of a running job, written to ``stream``."""

    def __init__(self, stream: TextIO, mode: str = "auto", interval: float | None = None) -> None:
        if mode == "auto":
            mode = "bar" if stream.isatty() else "lines"
        self.stream = stream
        self.mode = mode
        self.interval = interval if interval is not None else (0.1 if mode == "bar" else 5.0)
        self.started = time.monotonic()
        self._last = float("-inf")
        self._first: int | None = None

    def line(self, batch: Batch) -> str:
        c = batch.request_counts
        done = c.completed + c.failed
        if self._first is None:
            self._first = done
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (done - self._first) / elapsed
        left = max(c.total - done, 0)
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "--:--:--"
        pct = 100.0 * done / c.total if c.total else 100.0
        text = f"{done}/{c.total} done ({pct:.1f}%)  failed {c.failed}  {rate:.1f} req/s  ETA {eta}"
        if self.mode == "bar":
            filled = int(pct / 5)
            text = f"[{'#' * filled}{'.' * (20 - filled)}] {text}"
        return text

    def update(self, batch: Batch) -> None:
        if self.mode == "none":
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        text = self.line(batch)
        if self.mode == "bar":
            self.stream.write(f"\r{text}\x1b[K")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()

    def finish(self, batch: Batch) -> None:
        if self.mode == "none":
            return
        end = "\n" if self.mode == "bar" else ""
        c = batch.request_counts
        cost = f", cost ${batch.cost_usd:.6f}" if batch.cost_usd else ""
        self.stream.write(
            f"{end}batch {batch.status}: {c.completed} succeeded, {c.failed} failed of "
            f"{c.total}{cost}\n"
        )
        self.stream.flush()


def _error_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}.errors{output.suffix or '.jsonl'}")


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (symlinks and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def check_run_paths(source: Path, output: Path, errors: Path) -> None:
    """Refuse, before anything is written, an output or errors path that is the input, a
    directory, or in a directory that does not exist."""
    if not source.is_file():
        what = "is a directory" if source.is_dir() else "does not exist"
        raise ConfigError(f"The input file {source} {what}.")
    state = Path(f"{output}.salvo-state.sqlite3")
    for flag, path in (("-o/--output", output), ("--errors", errors), ("state file", state)):
        if path.is_dir():
            raise ConfigError(f"{flag} {path} is a directory; give a file path.")
        if not path.parent.is_dir():
            raise ConfigError(
                f"{flag} {path}: the directory {path.parent} does not exist; create it first."
            )
        if _same_file(path, source):
            raise ConfigError(
                f"{flag} {path} is the input file {source}; writing there would destroy the "
                "requests. Choose another path."
            )
    if _same_file(output, errors):
        raise ConfigError(
            f"-o/--output and --errors name the same file ({output}); results and failed "
            "requests need a file each."
        )


def _create_job(state: Path, args: argparse.Namespace, output: Path, errors: Path) -> None:
    from ._engine import Job

    Job.create(
        state,
        Batch(
            id=f"batch_{secrets.token_hex(12)}",
            input_file_id=str(args.input),
            status="validating",
            created_at=int(time.time()),
            output_file_id=str(output),
            error_file_id=str(errors),
            model=args.model,
            provider="local",
        ),
    )


async def _run_local(args: argparse.Namespace) -> int:
    from .._client import Client
    from ._engine import Job

    output = Path(args.output)
    errors = Path(args.errors) if args.errors else _error_path(output)
    state = Path(f"{output}.salvo-state.sqlite3")
    check_run_paths(Path(args.input), output, errors)
    try:
        _create_job(state, args, output, errors)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot create the job's state file {state}: {exc}.") from None
    over = {"api_key": args.api_key, "api_base": args.api_base, "rpm": args.rpm,
            "tpm": args.tpm, "max_retries": args.max_retries, "timeout": args.timeout}  # fmt: skip
    progress = Progress(sys.stderr, args.progress, args.progress_interval)
    async with Client(config=args.config) as client:
        job = Job(
            client,
            state_path=state,
            input_path=args.input,
            output_path=output,
            error_path=errors,
            model=args.model,
            provider_hint=args.provider,
            overrides={k: v for k, v in over.items() if v is not None},
            concurrency=args.concurrency,
            on_progress=progress.update,
            max_cost_usd=args.max_cost_usd,
        )
        batch = await job.run()
    progress.finish(batch)
    return 0 if batch.status == "completed" else 1


def _kw(args: argparse.Namespace) -> dict[str, Any]:
    kw = {"api_key": args.api_key, "api_base": args.api_base, "store_dir": args.store_dir}
    return {k: v for k, v in kw.items() if v is not None}


def _print(obj: Any) -> None:
    print(json.dumps(obj.to_dict(), indent=2))


async def _remote(args: argparse.Namespace) -> int:
    from .._client import Client
    from . import _api, _results

    async with Client(config=args.config) as client:
        kw = {"provider": args.provider, "client": client, **_kw(args)}
        action = args.batch_command
        if action == "submit":
            fo = await _api.acreate_file(args.input, **kw)
            meta = dict(item.split("=", 1) for item in args.metadata or ())
            batch = await _api.acreate_batch(
                input_file_id=fo.id, endpoint=args.endpoint, metadata=meta or None,
                completion_window=args.completion_window, **kw,
            )  # fmt: skip
            if args.wait:
                batch = await _results.await_batch(batch.id, poll_interval=args.poll_interval, **kw)
            _print(batch)
        elif action == "status":
            if args.wait:
                batch = await _results.await_batch(
                    args.batch_id, poll_interval=args.poll_interval, **kw
                )
            else:
                batch = await _api.aretrieve_batch(args.batch_id, **kw)
            _print(batch)
        elif action == "cancel":
            _print(await _api.acancel_batch(args.batch_id, **kw))
        elif action == "list":
            _print(await _api.alist_batches(limit=args.limit, after=args.after, **kw))
        else:  # results
            batch = await _api.aretrieve_batch(args.batch_id, **kw)
            out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: ASYNC230
            try:
                for file_id in (batch.output_file_id, batch.error_file_id):
                    if file_id is not None:
                        async with _api.aiter_file_content(file_id, **kw) as pieces:
                            async for piece in pieces:
                                out.write(piece)
            finally:
                if args.output:
                    out.close()
                else:
                    out.flush()
    return 0


def _main(args: argparse.Namespace) -> int:
    runner = _run_local if args.batch_command == "run" else _remote
    try:
        return asyncio.run(runner(args))
    except SalvoError as exc:
        print(f"salvo batch {args.batch_command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file it cannot read or write: say which, without a traceback
        print(f"salvo batch {args.batch_command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _common(p: argparse.ArgumentParser, *, provider: bool) -> None:
    """Connection options; the provider actions also take --provider and --store-dir."""
    if provider:
        p.add_argument("--provider", default="openai",
                       help="openai, azure, anthropic, gemini, vertex_ai, mistral, groq, "
                            "together, local, ... (default openai)")  # fmt: skip
    p.add_argument("--api-base", help="the provider's base URL")
    p.add_argument("--api-key", help="the provider's key (default: its usual variable)")
    p.add_argument("--config", help="a salvo/LiteLLM config YAML (model aliases, keys)")
    if provider:
        p.add_argument("--store-dir", help="where local files and batches live")
    p.set_defaults(func=_main)


def register(subparsers: Any) -> None:
    """Add ``salvo batch`` and its actions to the ``salvo`` command."""
    parser = subparsers.add_parser(
        "batch",
        help="run a JSONL batch locally, or drive a provider's Batch API",
        description="Run a JSONL batch locally (resumable), or drive a provider's Batch API.",
    )
    sub = parser.add_subparsers(dest="batch_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run an OpenAI-format JSONL file locally (resumable)")
    run.add_argument("input", help="requests, one OpenAI batch line each")
    run.add_argument("-o", "--output", required=True, help="successful results (JSONL)")
    run.add_argument("--errors", help="failed requests (default: <output>.errors.jsonl)")
    run.add_argument("--model", help="run every line on this model (else each body.model)")
    run.add_argument("--provider", help="provider for bare model names (e.g. groq)")
    run.add_argument("--rpm", type=int, help="requests per minute")
    run.add_argument("--tpm", type=int, help="tokens per minute")
    run.add_argument("--concurrency", type=int, help="requests in flight (default 100)")
    run.add_argument("--max-retries", type=int, help="retries per request (default 2)")
    run.add_argument("--timeout", type=float, help="seconds per request, retries included")
    run.add_argument("--max-cost-usd", type=float, metavar="USD",
                     help="the job's budget: lines past it end as budget_exceeded error lines "
                          "that a rerun with a larger budget runs")  # fmt: skip
    run.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto")
    run.add_argument("--progress-interval", type=float, help="seconds between progress lines")
    _common(run, provider=False)
    for name, text in (("submit", "upload a JSONL file and create a batch"),
                       ("status", "show a batch"), ("cancel", "cancel a batch"),
                       ("results", "write a batch's output and error lines"),
                       ("list", "list batches, newest first")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        if name == "submit":
            p.add_argument("input", help="requests, one OpenAI batch line each")
            p.add_argument("--endpoint", default="/v1/chat/completions")
            p.add_argument("--completion-window", default="24h", help="e.g. 24h, 7d (Groq)")
            p.add_argument("--metadata", action="append", metavar="KEY=VALUE")
        elif name == "list":
            p.add_argument("--limit", type=int, default=20)
            p.add_argument("--after", help="the last id of the previous page")
        else:
            p.add_argument("batch_id")
        if name in ("submit", "status"):
            p.add_argument("--wait", action="store_true", help="wait until the batch has ended")
            p.add_argument("--poll-interval", type=float, help="seconds between polls")
        if name == "results":
            p.add_argument("-o", "--output", help="file to write (default: standard output)")
        _common(p, provider=True)
