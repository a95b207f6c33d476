"""Where the proxy's files and batches live, and which provider owns each id.

Files uploaded to the proxy go to salvo.batches' local store (``files_dir``; default: the
store salvo.batches picks). A batch runs on the local engine or on its provider's Batch API;
either way the proxy writes one row in a small SQLite table (``database_path``; default
``<store>/proxy.sqlite3``) saying who owns the id, so later calls go to the right place.
Provider-side output and error files get a row when a retrieve first reports them. No keys
are stored: a row names the alias and entry whose config supplies them. A batch's row also
keeps the batch as the proxy last saw it, which the list shows when the batch can no longer
be asked about (its alias was removed from the config).
"""

from __future__ import annotations

import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple

from .._models import Deployment
from ._errors import ProxyError

__all__ = ["BATCH_ID", "FILE_ID", "Route", "RouteTable", "batch_mode", "check_id"]

#: Ids the proxy accepts in URLs: no dots, no slashes, nothing a path could be built from
#: (msgbatch_: Anthropic's results; a bare UUID: Mistral's and Together's batches and files;
#: <uuid>-unrun: salvo's error lines for their requests that never ran).
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # Mistral, Together
FILE_ID = re.compile(rf"^(?:(?:file-|msgbatch_)[A-Za-z0-9_-]{{1,128}}|{_UUID}(?:-unrun)?)$")
BATCH_ID = re.compile(rf"^(?:(?:msg)?batch_[A-Za-z0-9_-]{{1,128}}|{_UUID})$")


def check_id(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise ProxyError(
            404,
            f"No {what} with id {value[:80]!r}: {what} ids look like "
            f"{'file-abc123' if what == 'file' else 'batch_abc123'}.",
            param=f"{what}_id",
            code=f"{what}_not_found",
        )
    return value


def batch_mode(dep: Deployment) -> str:
    """``native`` or ``local`` for a batch on ``dep``: the entry's ``batch`` key, else native
    when the provider has a batch API and the entry keeps the provider's own base URL."""
    info = dep.info
    if not info.capabilities.batch_api or dep.batch == "local":
        return "local"
    if dep.batch == "native":
        return "native"
    custom_base = dep.endpoint.api_base != (info.base_url or "").rstrip("/")
    return "local" if custom_base else "native"


class Route(NamedTuple):
    id: str
    provider: str
    alias: str | None
    entry: int
    created_at: int


class RouteTable:
    """id -> (provider, alias, entry); one short transaction per call (sqlite3, on the loop)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            for table in ("batches", "files"):
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {table}(id TEXT PRIMARY KEY, provider TEXT NOT"
                    " NULL, alias TEXT, entry INTEGER NOT NULL DEFAULT 0, created_at INTEGER)"
                )
            columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
            if "last" not in columns:  # a table an older proxy made
                db.execute("ALTER TABLE batches ADD COLUMN last BLOB")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, table: str, route: Route) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                f"INSERT OR IGNORE INTO {_table(table)}(id, provider, alias, entry, created_at)"
                " VALUES(?,?,?,?,?)",
                (route.id, route.provider, route.alias, route.entry, route.created_at),
            )

    def get(self, table: str, ident: str) -> Route | None:
        with closing(self._connect()) as db:
            row = db.execute(
                f"SELECT id, provider, alias, entry, created_at FROM {_table(table)} WHERE id=?",
                (ident,),
            ).fetchone()
        return Route(*row) if row else None

    def remember(self, batch_id: str, snapshot: bytes) -> None:
        """Keep ``snapshot`` (a batch's JSON) as what the proxy last knew of it."""
        with closing(self._connect()) as db, db:
            db.execute("UPDATE batches SET last=? WHERE id=?", (snapshot, batch_id))

    def last(self, batch_id: str) -> bytes | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT last FROM batches WHERE id=?", (batch_id,)).fetchone()
        return row[0] if row else None

    def page(self, limit: int, after: str | None) -> tuple[list[Route], bool]:
        """Batches newest first, after the one with id ``after``; and whether more follow."""
        query = "SELECT id, provider, alias, entry, created_at FROM batches"
        args: list[Any] = []
        if after is not None:
            query += " WHERE rowid < (SELECT rowid FROM batches WHERE id=?)"
            args.append(after)
        query += " ORDER BY rowid DESC LIMIT ?"
        args.append(limit + 1)
        with closing(self._connect()) as db:
            rows = [Route(*r) for r in db.execute(query, args).fetchall()]
        return rows[:limit], len(rows) > limit

    def local_batches(self) -> list[str]:
        with closing(self._connect()) as db:
            return [r[0] for r in db.execute("SELECT id FROM batches WHERE provider='local'")]


def _table(name: str) -> str:
    if name not in ("batches", "files"):  # pragma: no cover - internal misuse
        raise ValueError(name)
    return name


def new_route(ident: str, provider: str, alias: str | None, entry: int = 0) -> Route:
    return Route(ident, provider, alias, entry, int(time.time()))
