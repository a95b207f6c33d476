"""Refuse what a provider's batch cannot take before anything is uploaded.

:func:`check_pieces` reads an OpenAI-format JSONL input once, piece by piece (memory holds
one line and the set of custom_ids), and raises :class:`~salvo.ConfigError` at the first line
that breaks a rule, naming the line and the limit:

- each line is a JSON object with a non-empty string ``custom_id`` (unique, and no longer
  than the provider allows), ``method`` POST, a ``url`` the provider has a batch for, and an
  object ``body``;
- every line names the same url (a batch runs one endpoint), the batch's ``endpoint`` when
  one is given, and the same ``body.model`` where the provider takes one model per batch;
- the file holds no more lines or bytes than the provider's limits.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from .._errors import ConfigError
from ._backends import Limits
from ._lines import decode_input
from ._store import FileSource, read_source, source_size

__all__ = ["Checked", "check_pieces", "check_source", "checked_upload", "same_url"]


class Checked(NamedTuple):
    lines: int
    bytes: int
    url: str | None
    model: str | None


def same_url(a: str, b: str) -> bool:
    """``/v1/chat/completions`` and ``/chat/completions`` name the same endpoint."""
    return a.removeprefix("/v1") == b.removeprefix("/v1")


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n} bytes"


class _Checker:
    def __init__(self, provider: str, limits: Limits, endpoint: str | None) -> None:
        self.provider = provider
        self.limits = limits
        self.endpoint = endpoint
        self.seen: dict[str, int] = {}
        self.lines = 0
        self.url: str | None = None
        self.model: str | None = None
        self.model_line = 0
        where = f" ({limits.source})" if limits.source else ""
        self.where = f"{provider}'s batch limit{where}"

    def fail(self, line: int, what: str) -> ConfigError:
        return ConfigError(f"Line {line}: {what}. Nothing was uploaded.")

    def line(self, raw: bytes, n: int) -> None:
        lim = self.limits
        self.lines += 1
        if lim.max_lines is not None and self.lines > lim.max_lines:
            raise self.fail(n, f"the file holds more than {lim.max_lines:,} requests, {self.where}")
        try:
            req = decode_input(raw)
        except ConfigError as exc:
            raise self.fail(n, str(exc)) from None
        cid = req.custom_id
        if not isinstance(cid, str) or not cid:
            raise self.fail(n, f"custom_id must be a non-empty string, not {cid!r}")
        if lim.max_custom_id is not None and len(cid) > lim.max_custom_id:
            raise self.fail(
                n,
                f"custom_id {cid[:80]!r} has {len(cid)} characters; {self.where} is "
                f"{lim.max_custom_id}",
            )
        if cid in self.seen:
            raise self.fail(n, f"custom_id {cid!r} repeats line {self.seen[cid]}")
        self.seen[cid] = n
        if req.method != "POST":
            raise self.fail(n, f"method must be POST, not {req.method!r}")
        url = req.url
        if not isinstance(url, str) or url not in lim.urls:
            known = ", ".join(sorted(lim.urls))
            raise self.fail(n, f"{self.provider} has no batch for url {url!r}; it takes {known}")
        if self.endpoint is not None and not same_url(url, self.endpoint):
            raise self.fail(n, f"url {url!r} is not the batch's endpoint {self.endpoint!r}")
        if self.url is None:
            self.url = url
        elif not same_url(url, self.url):
            raise self.fail(
                n, f"url {url!r} differs from {self.url!r} of line 1; a batch runs one endpoint"
            )
        if not isinstance(req.body, dict):
            raise self.fail(n, "body must be a JSON object")
        if lim.one_model:
            model = req.body.get("model")
            if not isinstance(model, str) or not model:
                raise self.fail(n, f"body.model is required: a {self.provider} batch runs one "
                                "model, named in every line")  # fmt: skip
            if self.model is None:
                self.model, self.model_line = model, n
            elif model != self.model:
                raise self.fail(
                    n,
                    f"model {model!r} differs from {self.model!r} of line {self.model_line}; a "
                    f"{self.provider} batch runs one model",
                )


async def check_pieces(
    provider: str, limits: Limits, pieces: AsyncIterator[bytes], *, endpoint: str | None = None
) -> Checked:
    """Check a JSONL input given as byte pieces (see the module docstring)."""
    check = _Checker(provider, limits, endpoint)
    size, n, tail = 0, 0, b""
    async for piece in pieces:
        size += len(piece)
        if limits.max_bytes is not None and size > limits.max_bytes:
            within = limits.max_bytes - (size - len(piece))  # bytes of piece still allowed
            raise check.fail(
                n + 1 + (tail + piece[:within]).count(b"\n"),
                f"the file passes {_size(limits.max_bytes)}, {check.where}",
            )
        lines = (tail + piece).split(b"\n")
        tail = lines.pop()
        for raw in lines:
            n += 1
            if raw.strip():
                check.line(raw, n)
    if tail.strip():
        check.line(tail, n + 1)
    if check.lines == 0:
        raise ConfigError("The input file holds no requests. Nothing was uploaded.")
    return Checked(check.lines, size, check.url, check.model)


async def check_source(
    provider: str, limits: Limits, source: FileSource, *, endpoint: str | None = None
) -> Checked:
    """Check a path, bytes or a seekable file object (put back where it was, for the upload);
    a file object that cannot seek is refused."""
    size = source_size(source)
    if size is not None and limits.max_bytes is not None and size > limits.max_bytes:
        raise ConfigError(
            f"The file has {size:,} bytes, over {_size(limits.max_bytes)}, "
            f"{provider}'s batch limit ({limits.source}). Nothing was uploaded."
        )
    if isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
        return await check_pieces(provider, limits, read_source(source), endpoint=endpoint)
    start = _tell(source)
    if start is None:
        raise ConfigError(
            "A batch input must be a path, bytes or a seekable file object here (salvo reads "
            "it twice: once to check it, once to upload it); use checked_upload."
        )
    try:
        return await check_pieces(provider, limits, read_source(source), endpoint=endpoint)
    finally:
        source.seek(start)


@asynccontextmanager
async def checked_upload(
    provider: str, limits: Limits, source: FileSource, *, endpoint: str | None = None
) -> AsyncIterator[FileSource]:
    """Check ``source`` and give what to upload: the source itself (rewound), or for a file
    object that cannot seek, a temporary copy on disk (deleted on exit; memory stays flat)."""
    if (
        isinstance(source, str | os.PathLike | bytes | bytearray | memoryview)
        or _tell(source) is not None
    ):
        await check_source(provider, limits, source, endpoint=endpoint)
        yield source
        return
    with tempfile.TemporaryFile() as spool:
        async for piece in read_source(source):
            spool.write(piece)
        spool.seek(0)
        await check_source(provider, limits, spool, endpoint=endpoint)
        yield spool


def _tell(source: Any) -> int | None:
    try:
        return int(source.tell()) if source.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None
