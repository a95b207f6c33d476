"""``salvo serve --config F [--host 127.0.0.1] [--port 4000] [--workers N]``.

With ``--workers N > 1`` the parent binds the address once (to check it and to learn the port
when ``--port 0``), then forks N workers; each one opens its own listening socket on that
port with ``SO_REUSEPORT``, so the kernel spreads connections across them (Linux). Each
worker has its own upstream session and limiters, so the config's ``rpm``, ``tpm`` and
``max_parallel_requests`` are divided among the workers (rounded up), unless a limits store is
set (``salvo_settings.limits_store`` or ``SALVO_LIMITS_STORE``): then the workers share every
limit whole through it. SIGINT/SIGTERM stop the
workers gracefully: in-flight requests get ``shutdown_timeout`` seconds to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import math
import os
import signal
import socket
import sys
from typing import Any

from .._config import Config, ModelEntry, load_config
from .._errors import ConfigError
from . import _log, _metrics
from ._app import ProxyServer
from ._settings import ProxySettings, check_config, load_settings

__all__ = ["register", "run"]

_LIMIT_KEYS = ("rpm", "tpm", "max_parallel_requests")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the OpenAI-compatible proxy server",
        description="Serve the config's models over an OpenAI-compatible HTTP API.",
    )
    parser.add_argument("--config", required=True, help="YAML config (salvo's or LiteLLM's)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="port to bind (4000; 0: any)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="log to stderr from this level (INFO)",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines (text)"
    )
    parser.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(message: str) -> int:
    print(f"salvo serve: {message}", file=sys.stderr)
    return 2


def split_limits(config: Config, workers: int) -> Config:
    """The config each of ``workers`` processes runs: every limit divided, rounded up; whole
    when the workers share a limits store (they pace against the whole limit in it)."""
    if workers == 1 or config.settings.get("limits_store") or os.environ.get("SALVO_LIMITS_STORE"):
        return config
    out = Config(settings=config.settings, source=config.source)
    for name, entries in config.models.items():
        out.models[name] = [
            ModelEntry(
                model_name=e.model_name,
                params={
                    k: (math.ceil(v / workers) if k in _LIMIT_KEYS and isinstance(v, int) else v)
                    for k, v in e.params.items()
                },
                line=e.line,
            )
            for e in entries
        ]
    return out


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        check_config(config)
        settings = load_settings(config)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.workers < 1:
        return _fail("--workers must be at least 1.")
    if settings.master_key is None and not _is_loopback(args.host):  # a blank key never gets here
        return _fail(
            f"refusing to serve on {args.host} without a master key: set general_settings."
            "master_key in the config (or SALVO_MASTER_KEY), or bind to 127.0.0.1."
        )
    # Once the config is known good, before serving: salvo's log lines on stderr, one access
    # line per request at INFO, every 5xx at WARNING.
    _log.configure(args.log_format, args.log_level)
    if args.workers == 1:
        try:
            asyncio.run(_serve(config, settings, args, args.port, announce=True))
        except OSError as exc:
            return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}.")
        return 0
    with _metrics.shared_across_workers():  # one /metrics summed over the workers
        return _prefork(config, settings, args)


def _announce(url: str, config: Config, settings: ProxySettings, workers: int) -> None:
    names = ", ".join(config.model_names) or "(none)"
    plural = "s" if workers > 1 else ""
    print(f"salvo proxy listening on {url} ({workers} worker{plural}); models: {names}", flush=True)
    if settings.master_key is None:
        print("salvo serve: warning: no master key set, so no auth.", file=sys.stderr, flush=True)


async def _serve(
    config: Config,
    settings: ProxySettings,
    args: argparse.Namespace,
    port: int,
    *,
    announce: bool,
    reuse_port: bool = False,
    ready_fd: int | None = None,
) -> None:
    server = ProxyServer(
        config,
        host=args.host,
        port=port,
        settings=settings,
        reuse_port=reuse_port,
        access_log=args.access_log,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        if announce:
            _announce(server.url, config, settings, 1)
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        await stop.wait()
    finally:
        await server.stop()


def _prefork(config: Config, settings: ProxySettings, args: argparse.Namespace) -> int:
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((args.host, args.port))
    except (OSError, AttributeError) as exc:
        probe.close()
        return _fail(f"cannot bind {args.host}:{args.port} with SO_REUSEPORT: {exc}.")
    port = probe.getsockname()[1]
    worker_config = split_limits(config, args.workers)
    ready_r, ready_w = os.pipe()
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # a worker: serve until signalled, then leave without running atexit
            code = 0
            try:
                probe.close()
                os.close(ready_r)
                asyncio.run(
                    _serve(
                        worker_config,
                        settings,
                        args,
                        port,
                        announce=False,
                        reuse_port=True,
                        ready_fd=ready_w,
                    )
                )
            except BaseException as exc:  # report it, then leave the worker
                print(f"salvo serve: worker {os.getpid()} failed: {exc!r}", file=sys.stderr)
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(ready_w)
    return _supervise(children, ready_r, probe, config, settings, args, port)


def _supervise(
    children: list[int],
    ready_r: int,
    probe: socket.socket,
    config: Config,
    settings: ProxySettings,
    args: argparse.Namespace,
    port: int,
) -> int:
    def forward(signum: int, frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    ready = 0
    with contextlib.suppress(OSError):
        while ready < len(children):
            got = os.read(ready_r, len(children))
            if not got:
                break
            ready += len(got)
    os.close(ready_r)
    probe.close()
    code = 0
    if ready == len(children):
        host = f"[{args.host}]" if ":" in args.host else args.host
        _announce(f"http://{host}:{port}", config, settings, len(children))
    else:
        code = 1
        forward(signal.SIGTERM, None)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            code = 1
        forward(signal.SIGTERM, None)  # one worker gone: stop the others too
    return code
