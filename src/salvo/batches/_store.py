"""The local store: a directory holding uploaded files, local batch state and a small index.

::

    <root>/files/file-<hex>          the bytes of a file
    <root>/files/file-<hex>.json     its FileObject (metadata beside the bytes)
    <root>/batches/batch_<hex>.sqlite3   a local batch's state (see ``_engine``)
    <root>/index.sqlite3             native batches' local facts (input file, metadata, cost),
                                     and an index of the files (listed from it, a page at a time)

The root is ``store_dir=``, else the config setting ``batch_dir``, else ``$SALVO_BATCH_DIR``,
else ``$XDG_CACHE_HOME/salvo/batches`` (``~/.cache/salvo/batches``). Copies into the store are
streamed in 1 MiB pieces (the loop gets a turn between pieces), never read whole.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from .._errors import NotFoundError, ProviderError
from ._source import (
    CHUNK,
    FileSource,
    paginate,
    read_source,
    source_name,
    source_size,
)
from ._types import FileDeleted, FileObject, Page

__all__ = [
    "CHUNK",
    "FileSource",
    "LocalStore",
    "api_error",
    "batch_info",
    "StoreFiles",
    "default_root",
    "new_hex",
    "not_found",
    "not_ready",
    "paginate",
    "read_source",
    "source_name",
    "source_size",
]

_FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
_DECODE_FILE = msgspec.json.Decoder(FileObject).decode
_ENCODE = msgspec.json.Encoder().encode


def new_hex() -> str:
    """24 hex digits: the creation time in nanoseconds, then randomness, so that ids sort in
    creation order (lists are newest first)."""
    return f"{time.time_ns():016x}{secrets.token_hex(4)}"


def default_root() -> Path:
    env = os.environ.get("SALVO_BATCH_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "salvo" / "batches"


def not_found(provider: str, what: str, ident: str) -> NotFoundError:
    return NotFoundError(
        f"{provider}: no {what} with id {ident!r} in this store; check the id and the provider "
        "(and store_dir, for local files and batches).",
        status_code=404,
        provider=provider,
        model="",
    )


def not_ready(provider: str, batch_id: str, status: str) -> NotFoundError:
    return NotFoundError(
        f"{provider}: the results of {batch_id} are not ready (its status is {status!r}); "
        "wait for the batch to end (await_batch).",
        status_code=404,
        provider=provider,
        model="",
    )


def batch_info(
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: Mapping[str, str] | None,
    **more: Any,
) -> dict[str, Any]:
    """What a provider backend keeps of a batch it created (``LocalStore.remember``)."""
    return {
        "input_file_id": input_file_id,
        "endpoint": endpoint,
        "completion_window": completion_window,
        "metadata": dict(metadata) if metadata else None,
        **more,
    }


def api_error(err: ProviderError, method: str, url: str) -> ProviderError:
    """``err`` (a files or batches API call's error, which the adapter named for a model)
    reworded for the object the call was about; a 404 says to check the id."""
    path = urlsplit(url).path
    said = _said(err.body).strip().rstrip(".")
    text = f"{err.provider} returned HTTP {err.status_code} for {method} {path}"
    text += f": {said}." if said else "."
    if err.status_code == 404:
        text += (
            f" Check the id, and that the provider ({err.provider}), key and api_base are the "
            "ones the object was created with."
        )
    err.message = text
    err.args = (text,)
    return err


def _said(body: Any) -> str:
    """The message in an error body as the adapter kept it (the inner error, or text)."""
    if isinstance(body, str):
        return body[:300]
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    return ""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class LocalStore:
    """Files and batch state on local disk (used by ``provider="local"`` and for Anthropic,
    which has no files API)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.files = self.root / "files"
        self.batches = self.root / "batches"

    def ensure(self) -> None:
        """Create the store's directories (on first write, not when the store is named)."""
        self.files.mkdir(parents=True, exist_ok=True)
        self.batches.mkdir(parents=True, exist_ok=True)

    # -- files -----------------------------------------------------------------------------

    def file_path(self, file_id: str, provider: str = "local") -> Path:
        if not _FILE_ID.match(file_id):
            raise not_found(provider, "file", file_id)
        return self.files / file_id

    @staticmethod
    def new_file_id() -> str:
        return f"file-{new_hex()}"

    async def add_file(
        self, source: FileSource, *, filename: str | None, purpose: str, provider: str
    ) -> FileObject:
        self.ensure()
        file_id = self.new_file_id()
        path = self.files / file_id
        tmp = path.with_name(path.name + ".part")
        size = 0
        try:
            with open(tmp, "wb") as out:  # noqa: ASYNC230 - small writes, see the docstring
                async for piece in read_source(source):
                    out.write(piece)
                    size += len(piece)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        name = filename or source_name(source) or "upload.jsonl"
        return self.register(file_id, name, purpose, provider, size)

    def register(
        self, file_id: str, filename: str, purpose: str, provider: str, size: int | None = None
    ) -> FileObject:
        """Write the metadata of a file whose bytes are already at ``file_path(file_id)``."""
        if size is None:
            size = self.file_path(file_id).stat().st_size
        fo = FileObject(
            id=file_id,
            bytes=size,
            created_at=int(time.time()),
            filename=filename,
            purpose=purpose,
            provider=provider,
        )
        meta = _ENCODE(fo)
        _atomic_write(self.files / f"{file_id}.json", meta)
        with closing(self._index()) as db, db:
            _index_file(db, fo, meta)
        return fo

    def get_file(self, file_id: str, provider: str = "local") -> FileObject:
        meta = self.file_path(file_id, provider).with_suffix(".json")
        try:
            fo = _DECODE_FILE(meta.read_bytes())
        except FileNotFoundError:
            raise not_found(provider, "file", file_id) from None
        fo.provider = provider
        return fo

    def list_files(
        self, *, provider: str, purpose: str | None, limit: int, after: str | None, order: str
    ) -> Page[FileObject]:
        """A page of files from the index (one query, however many files the store holds),
        newest first unless ``order="asc"``; ``after`` is the last id of the previous page."""
        if not self.files.is_dir():
            return Page(data=[], has_more=False, first_id=None, last_id=None)
        desc = order != "asc"
        query = "SELECT meta FROM files"
        where: list[str] = []
        args: list[Any] = []
        with closing(self._index()) as db:
            _index_existing(db, self.files)
            if purpose is not None:
                where.append("purpose=?")
                args.append(purpose)
            if after is not None:
                row = db.execute("SELECT created_at FROM files WHERE id=?", (after,)).fetchone()
                if row is not None:
                    where.append(f"(created_at, id) {'<' if desc else '>'} (?, ?)")
                    args += [row[0], after]
            if where:
                query += " WHERE " + " AND ".join(where)
            way = "DESC" if desc else "ASC"
            query += f" ORDER BY created_at {way}, id {way} LIMIT ?"
            args.append(limit + 1)
            rows = db.execute(query, args).fetchall()
        items = []
        for (meta,) in rows[:limit]:
            fo = _DECODE_FILE(meta)
            fo.provider = provider
            items.append(fo)
        return Page(
            data=items,
            has_more=len(rows) > limit,
            first_id=items[0].id if items else None,
            last_id=items[-1].id if items else None,
        )

    def delete_file(self, file_id: str, provider: str = "local") -> FileDeleted:
        path = self.file_path(file_id, provider)
        meta = path.with_suffix(".json")
        if not meta.exists():
            raise not_found(provider, "file", file_id)
        with closing(self._index()) as db, db:
            db.execute("DELETE FROM files WHERE id=?", (file_id,))
        meta.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return FileDeleted(id=file_id)

    async def iter_file(self, file_id: str, provider: str = "local") -> AsyncIterator[bytes]:
        path = self.file_path(file_id, provider)
        if not path.with_suffix(".json").exists():
            raise not_found(provider, "file", file_id)
        async for piece in read_source(path):
            yield piece

    # -- the index of native batches -------------------------------------------------------

    def _index(self) -> sqlite3.Connection:
        self.ensure()
        db = sqlite3.connect(self.root / "index.sqlite3", timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS native(provider TEXT, id TEXT, info BLOB,"
            " cost REAL, PRIMARY KEY(provider, id))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS files(id TEXT PRIMARY KEY, created_at INTEGER NOT NULL,"
            " purpose TEXT, meta BLOB NOT NULL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS files_by_time ON files(created_at, id)")
        db.execute("CREATE TABLE IF NOT EXISTS facts(key TEXT PRIMARY KEY, value)")
        return db

    def remember(self, provider: str, batch_id: str, info: dict[str, Any]) -> None:
        with closing(self._index()) as db, db:
            db.execute(
                "INSERT INTO native(provider, id, info) VALUES(?,?,?) ON CONFLICT DO UPDATE"
                " SET info=excluded.info",
                (provider, batch_id, _ENCODE(info)),
            )

    def ask_cancel(self, provider: str, batch_id: str) -> None:
        """Note (once) in the index when a cancel of ``batch_id`` was asked."""
        info, _ = self.recall(provider, batch_id)
        if info.get("cancelling_at") is None:
            self.remember(provider, batch_id, {**info, "cancelling_at": int(time.time())})

    def recall(self, provider: str, batch_id: str) -> tuple[dict[str, Any], float | None]:
        with closing(self._index()) as db:
            row = db.execute(
                "SELECT info, cost FROM native WHERE provider=? AND id=?", (provider, batch_id)
            ).fetchone()
        if row is None:
            return {}, None
        info = msgspec.json.decode(row[0]) if row[0] else {}
        return (info if isinstance(info, dict) else {}), row[1]

    def store_cost(self, provider: str, batch_id: str, cost: float) -> None:
        with closing(self._index()) as db, db:
            db.execute(
                "INSERT INTO native(provider, id, cost) VALUES(?,?,?) ON CONFLICT DO UPDATE"
                " SET cost=excluded.cost",
                (provider, batch_id, cost),
            )


def _index_file(db: sqlite3.Connection, fo: FileObject, meta: bytes) -> None:
    db.execute(
        "INSERT OR REPLACE INTO files(id, created_at, purpose, meta) VALUES(?,?,?,?)",
        (fo.id, fo.created_at, fo.purpose, meta),
    )


def _index_existing(db: sqlite3.Connection, files: Path) -> None:
    """Index the files of a store written before the index existed (once per store)."""
    if db.execute("SELECT 1 FROM facts WHERE key='files_indexed'").fetchone():
        return
    with db:
        for path in files.glob("file-*.json"):
            try:
                meta = path.read_bytes()
                fo = _DECODE_FILE(meta)
            except (OSError, msgspec.DecodeError):
                continue
            db.execute(
                "INSERT OR IGNORE INTO files(id, created_at, purpose, meta) VALUES(?,?,?,?)",
                (fo.id, fo.created_at, fo.purpose, meta),
            )
        db.execute("INSERT OR REPLACE INTO facts(key, value) VALUES('files_indexed', 1)")


class StoreFiles:
    """The files half of a backend whose files live in the local store."""

    store: LocalStore
    provider: str

    async def create_file(
        self, source: FileSource, *, purpose: str, filename: str | None
    ) -> FileObject:
        return await self.store.add_file(
            source, filename=filename, purpose=purpose, provider=self.provider
        )

    async def retrieve_file(self, file_id: str) -> FileObject:
        return self.store.get_file(file_id, self.provider)

    async def list_files(
        self, *, purpose: str | None, limit: int, after: str | None, order: str
    ) -> Page[FileObject]:
        return self.store.list_files(
            provider=self.provider, purpose=purpose, limit=limit, after=after, order=order
        )

    async def delete_file(self, file_id: str) -> FileDeleted:
        return self.store.delete_file(file_id, self.provider)

    def content(self, file_id: str) -> AsyncIterator[bytes]:
        return self.store.iter_file(file_id, self.provider)
