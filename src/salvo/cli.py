"""The ``salvo`` command: a thin dispatcher; each subcommand lives beside what it drives.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (``(argparse.Namespace) -> int``) as the parser default. Modules are imported only
when the command line names them, so ``salvo demo`` does not pay for the proxy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: subcommand -> (module that implements it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("salvo._cli_demo", "race, gather and batch against the built-in fake provider"),
    "serve": ("salvo.proxy._cli", "run the OpenAI-compatible proxy server"),
    "batch": ("salvo.batches._cli", "run a JSONL batch locally, or drive a provider's Batch API"),
    "bench": ("salvo._cli_bench", "benchmark models: TTFT, latency percentiles, tokens/s"),
}


def _parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salvo", description="Fire LLM calls in parallel and keep only what you need."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if name == selected:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                parser.error(f"'salvo {name}' is not available in this build.")
            mod.register(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args_list if not a.startswith("-")), None)
    parser = _parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
