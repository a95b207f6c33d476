"""``/v1/files``: multipart upload, list, retrieve, content, delete, on top of salvo.batches.

An upload is streamed to a spool file (never held in memory; ``max_file_size_mb`` enforced
while reading, a clear 413 past it), then handed to ``acreate_file(provider="local")``.
Files a provider holds (a native batch's input, output and error files) are reached through
the route table. Every id in a URL must match :data:`~salvo.proxy._store.FILE_ID`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec
from aiohttp import BodyPartReader, StreamReader, web

from .. import batches
from .._errors import ConfigError, NotFoundError
from ._errors import JSON_HEADERS, ProxyError
from ._relay import OVERHEAD_HEADER, TIMER, timed
from ._store import FILE_ID, RouteTable, check_id

if TYPE_CHECKING:
    from ._state import ProxyState

__all__ = ["Files", "encoded", "install", "not_found_as_404"]

log = logging.getLogger("salvo.proxy")
_ENCODE = msgspec.json.Encoder().encode
PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_PIECE = 1 << 16


def encoded(value: Any) -> web.Response:
    return web.Response(body=_ENCODE(value), headers=JSON_HEADERS)


def _open_spool(directory: Path) -> tuple[Path, IO[bytes]]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"upload-{secrets.token_hex(8)}.part"
    return path, open(path, "wb")  # the caller closes it


class Files:
    """The store, the route table and the calls into salvo.batches that every route shares."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.store_dir = state.settings.files_dir
        self._table: RouteTable | None = None
        self.root: Path | None = None
        self.db_path: Path | None = None
        self.local_ids: set[str] = set()

    @property
    def table(self) -> RouteTable:
        """The route table, created on first use (a proxy that never sees a file or a batch
        writes nothing to disk)."""
        if self._table is None:
            if self.db_path is None:  # pragma: no cover - routes run only after start-up
                raise ProxyError(503, "The proxy is starting up; try again.")
            self._table = RouteTable(self.db_path)
        return self._table

    def kw(self, provider: str = "local", alias: str | None = None, entry: int = 0) -> Any:
        """Keyword arguments for a salvo.batches call on ``provider``: the proxy's client and
        store, and for a provider the key and base of the alias's entry (from the config)."""
        kw: dict[str, Any] = {"provider": provider, "client": self.state.client}
        kw["store_dir"] = self.store_dir
        if provider != "local":
            deps = self.state.deployments.get(alias or "")
            if not deps and alias and self.state.settings.allow_any_model:
                try:  # a model any caller may name (allow_any_model), resolved as chat does
                    deps = [self.state.client.options(alias, {}).dep]
                except ConfigError:
                    deps = []
            if not deps:
                raise ProxyError(
                    410,
                    f"The model {alias!r} this object was created with is no longer in the "
                    "config, so the proxy has no key to reach it.",
                    code="model_removed",
                )
            ep = deps[min(entry, len(deps) - 1)].endpoint
            kw["api_key"], kw["api_base"] = ep.api_key, ep.api_base
        return kw

    async def start(self) -> None:
        """Open the route table and resume local batches a stopped proxy left unfinished."""
        from ..batches._backends import backend_for

        local = await backend_for("local", client=self.state.client, store_dir=self.store_dir)
        self.root = local.store.root
        db = self.state.settings.database_path
        self.db_path = Path(db) if db else self.root / "proxy.sqlite3"
        log.info(
            "state directory %s (files, batches; route table %s): another proxy or salvo "
            "process using this directory shares its files and batches",
            self.root,
            self.db_path,
        )
        if not self.db_path.exists():
            return
        resume: Callable[[str], Any] | None = getattr(local, "resume", None)
        for batch_id in self.table.local_batches():
            if resume is None:
                break
            try:
                if resume(batch_id) is not None:
                    self.local_ids.add(batch_id)
            except Exception as exc:  # one broken job must not stop the proxy
                log.warning("could not resume local batch %s: %s", batch_id, exc)

    async def stop(self) -> None:
        """Stop this process's local batch jobs; their state lets the next start resume them."""
        names = {f"salvo batch {i}" for i in self.local_ids}
        tasks = [t for t in asyncio.all_tasks() if t.get_name() in names and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def file_kw(self, file_id: str) -> Any:
        check_id(file_id, FILE_ID, "file")
        route = self.table.get("files", file_id)
        if route is None:
            return self.kw()
        return self.kw(route.provider, route.alias, route.entry)

    # -- routes ------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        limit = self.state.settings.max_file_bytes
        if (request.content_length or 0) > limit + _PIECE:
            raise _too_big(limit)
        if request.content_type != "multipart/form-data":
            raise ProxyError(400, "Upload files as multipart/form-data with 'file' and 'purpose'.")
        purpose: str | None = None
        filename: str | None = None
        spool: Path | None = None
        try:
            async with no_stall(request.content, self.state.settings.client_body_timeout):
                async for part in await request.multipart():
                    if not isinstance(part, BodyPartReader):
                        raise ProxyError(400, "Nested multipart bodies are not accepted.")
                    if part.name == "purpose":
                        purpose = (await part.text()).strip()
                    elif part.name == "file" and spool is None:
                        filename = part.filename
                        spool = await self._spool(part, limit)
                    else:
                        await part.release()
            if spool is None:
                raise ProxyError(400, "Missing required parameter: 'file'.", param="file")
            if purpose not in PURPOSES:
                raise ProxyError(
                    400,
                    f"'purpose' must be one of {', '.join(sorted(PURPOSES))}, not {purpose!r}.",
                    param="purpose",
                )
            fo = await batches.acreate_file(
                spool, purpose=purpose, filename=os.path.basename(filename or "upload.jsonl"),
                **self.kw(),
            )  # fmt: skip
        finally:
            if spool is not None:
                spool.unlink(missing_ok=True)
        return encoded(fo)

    async def _spool(self, part: BodyPartReader, limit: int) -> Path:
        assert self.root is not None
        path, out = _open_spool(self.root / "proxy-uploads")
        size = 0
        try:
            with out:
                while chunk := await part.read_chunk(_PIECE):
                    size += len(chunk)
                    if size > limit:
                        raise _too_big(limit)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def list(self, request: web.Request) -> web.Response:
        q = request.query
        after = q.get("after")
        if after is not None:
            check_id(after, FILE_ID, "file")
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ProxyError(400, "'order' must be 'asc' or 'desc'.", param="order")
        page = await batches.alist_files(
            purpose=q.get("purpose"), limit=_limit(q.get("limit"), 10_000, 10_000), after=after,
            order=order, **self.kw(),
        )  # fmt: skip
        return encoded(page)

    async def retrieve(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        with not_found_as_404("file", file_id):
            return encoded(await batches.aretrieve_file(file_id, **self.file_kw(file_id)))

    async def delete(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        with not_found_as_404("file", file_id):
            return encoded(await batches.adelete_file(file_id, **self.file_kw(file_id)))

    async def content(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        kw = self.file_kw(file_id)
        timer = request[TIMER]
        async with batches.aiter_file_content(file_id, **kw) as pieces:
            with not_found_as_404("file", file_id):
                first = await timed(timer, anext(aiter(pieces), b""))
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            resp.headers[OVERHEAD_HEADER] = timer.overhead_ms()
            await resp.prepare(request)
            await resp.write(first)
            async for piece in pieces:
                await resp.write(piece)
        await resp.write_eof()
        return resp


@asynccontextmanager
async def no_stall(content: StreamReader, seconds: float) -> AsyncIterator[None]:
    """Inside this block, reading ``content`` (a request body) may not stall: when no byte
    arrives for ``seconds`` before the body's end, the block fails with a 408."""
    loop = asyncio.get_running_loop()
    last = content.total_bytes
    handle: asyncio.TimerHandle | None = None
    try:
        async with asyncio.timeout(seconds) as scope:

            def check() -> None:
                nonlocal last, handle
                if content.total_bytes != last or content.at_eof():
                    last = content.total_bytes
                    scope.reschedule(loop.time() + seconds)
                handle = loop.call_later(seconds / 4, check)

            handle = loop.call_later(seconds / 4, check)
            yield
    except TimeoutError:
        raise ProxyError(
            408,
            f"The upload stalled: no data for {seconds:g} seconds (setting client_body_timeout).",
            code="request_timeout",
        ) from None
    finally:
        if handle is not None:
            handle.cancel()


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise ProxyError(400, f"'limit' must be a whole number from 1 to {maximum}.", param="limit")
    return value


def _too_big(limit: int) -> ProxyError:
    return ProxyError(
        413,
        f"The file is larger than this proxy accepts ({limit} bytes; setting max_file_size_mb).",
        code="file_too_large",
    )


@contextmanager
def not_found_as_404(what: str, ident: str) -> Iterator[None]:
    """Turn salvo.batches' NotFoundError for ``ident`` into the proxy's 404."""
    try:
        yield
    except NotFoundError:
        raise ProxyError(
            404,
            f"No {what} with id {ident!r}.",
            param=f"{what}_id",
            code=f"{what}_not_found",
        ) from None


def install(app: web.Application, state: ProxyState) -> Files:
    from ._batches import BatchRoutes

    files = Files(state)
    batch_routes = BatchRoutes(files)
    app.router.add_post("/v1/files", files.upload)
    app.router.add_get("/v1/files", files.list)
    app.router.add_get("/v1/files/{file_id}", files.retrieve)
    app.router.add_delete("/v1/files/{file_id}", files.delete)
    app.router.add_get("/v1/files/{file_id}/content", files.content)
    app.router.add_post("/v1/batches", batch_routes.create)
    app.router.add_get("/v1/batches", batch_routes.list)
    app.router.add_get("/v1/batches/{batch_id}", batch_routes.retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", batch_routes.cancel)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await files.start()
        try:
            yield
        finally:
            await files.stop()

    app.cleanup_ctx.append(lifecycle)
    return files
