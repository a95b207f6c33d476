"""Where an upload's bytes come from (a path, bytes, a binary file object), read in pieces so
the loop gets a turn between them; and the one pagination rule for lists held in memory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

from .._errors import ConfigError
from ._types import Page

__all__ = ["CHUNK", "FileSource", "paginate", "read_source", "source_name", "source_size"]

CHUNK = 1 << 20
FileSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


def paginate(items: list[Any], limit: int, after: str | None) -> Page[Any]:
    """The page of ``items`` (already sorted) that follows the item whose id is ``after``."""
    start = 0
    if after is not None:
        for i, item in enumerate(items):
            if item.id == after:
                start = i + 1
                break
    page = items[start : start + limit]
    return Page(
        data=page,
        has_more=start + limit < len(items),
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )


def source_name(source: FileSource) -> str | None:
    if isinstance(source, str | os.PathLike):
        return os.path.basename(os.fspath(source))
    name = getattr(source, "name", None)
    return os.path.basename(name) if isinstance(name, str) else None


def source_size(source: FileSource) -> int | None:
    """The number of bytes ``read_source`` will yield, when it can be known up front."""
    if isinstance(source, bytes | bytearray | memoryview):
        return len(source)
    if isinstance(source, str | os.PathLike):
        try:
            return os.stat(source).st_size
        except FileNotFoundError:
            raise ConfigError(f"The file {os.fspath(source)!r} does not exist.") from None
    try:
        pos = source.tell()
        end = os.fstat(source.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return None
    return max(end - pos, 0)


async def read_source(source: FileSource, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    """The bytes of a path, a bytes-like object or a binary file object, piece by piece; the
    loop gets a turn between pieces. A path is opened and closed here; a file object is read
    from its current position and left open (it is the caller's)."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for i in range(0, len(view), chunk):
            yield bytes(view[i : i + chunk])
        return
    if isinstance(source, str | os.PathLike):
        if not os.path.exists(source):  # noqa: ASYNC240
            raise ConfigError(f"The file {os.fspath(source)!r} does not exist.")
        with open(source, "rb") as f:  # noqa: ASYNC230 - read in pieces, the loop gets turns
            async for piece in _read_fileobj(f.read, chunk):
                yield piece
        return
    read = getattr(source, "read", None)
    if read is None:
        raise ConfigError(
            f"A file must be a path, bytes or a binary file object, not {type(source).__name__}."
        )
    async for piece in _read_fileobj(read, chunk):
        yield piece


async def _read_fileobj(read: Callable[[int], Any], chunk: int) -> AsyncIterator[bytes]:
    while True:
        piece = read(chunk)
        if isinstance(piece, str):
            raise ConfigError("Open the file in binary mode ('rb'): salvo uploads bytes.")
        if not piece:
            return
        yield piece
        await asyncio.sleep(0)
