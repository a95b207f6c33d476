"""``/v1/batches``: create, retrieve, list, cancel, on top of salvo.batches.

A batch's model comes from its input file: every line's ``body.model`` must name the same
served alias. The alias's first entry decides where it runs (``batch: native | local``; see
:func:`~salvo.proxy._store.batch_mode`). Local: the proxy's own file goes to the local engine,
which resolves the alias through the proxy's Client. Native: the file is rewritten with the
provider's model name, uploaded to the provider, and the batch created there. Lines may not
set call settings (``api_key``, ``api_base``, ...): they would redirect the configured key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .. import batches
from .._errors import ConfigError, SalvoError
from .._messages import CALL_KEYS
from ..batches._lines import BOM
from ..providers._base import DECODE_ERRORS, decode_problem
from ._errors import ProxyError, model_not_found
from ._files import _limit, _open_spool, encoded, not_found_as_404
from ._store import BATCH_ID, FILE_ID, Route, batch_mode, check_id, new_route

if TYPE_CHECKING:
    from .._models import Deployment
    from ._files import Files

__all__ = ["BatchRoutes"]

log = logging.getLogger("salvo.proxy")

_ENCODE = msgspec.json.Encoder().encode
_DECODE_STR = msgspec.json.Decoder(str).decode
_DECODE_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_BAD_LINE: tuple[type[Exception], ...] = (*DECODE_ERRORS, KeyError)
_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")


class _Create(msgspec.Struct, forbid_unknown_fields=False):
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None


class _LineView(msgspec.Struct):
    body: dict[str, msgspec.Raw] | None = None


_DECODE_CREATE = msgspec.json.Decoder(_Create).decode
_DECODE_BATCH = msgspec.json.Decoder(batches.Batch).decode
_DECODE_LINE = msgspec.json.Decoder(_LineView).decode


async def _lines(files: Files, file_id: str) -> Any:
    """(line number, bytes) of each line of a local file, streamed."""
    buf = b""
    n = 0
    async with batches.aiter_file_content(file_id, **files.kw()) as pieces:
        async for piece in pieces:
            buf += piece
            if n == 0 and buf.startswith(BOM):  # line 1 may open with a byte order mark
                buf = buf[len(BOM) :]
            *whole, buf = buf.split(b"\n")
            for line in whole:
                n += 1
                yield n, line
    if buf:
        yield n + 1, buf


class BatchRoutes:
    def __init__(self, files: Files) -> None:
        self.files = files
        self.state = files.state

    async def _model_of(self, file_id: str) -> str:
        """The one model the file's lines name; 400 for mixed models or blocked keys."""
        models: set[str] = set()
        async for n, line in _lines(self.files, file_id):
            try:
                body = _DECODE_LINE(line).body if line.strip() else None
            except DECODE_ERRORS:
                continue  # the engine (or the provider) reports the line itself
            if not body:
                continue
            blocked = sorted(CALL_KEYS.intersection(body))
            if blocked:
                raise ProxyError(
                    400,
                    f"Line {n} of the input file sets {blocked[0]!r}; the proxy takes call "
                    "settings from its config, not from batch lines.",
                    param="input_file_id",
                )
            raw = body.get("model")
            if raw is None:
                continue
            try:
                models.add(_DECODE_STR(raw).strip())
            except DECODE_ERRORS:
                continue
            if len(models) > 1:
                raise ProxyError(
                    400,
                    f"The input file names more than one model ({', '.join(sorted(models))}, "
                    f"by line {n}); a batch runs one model.",
                    param="input_file_id",
                )
        if not models:
            raise ProxyError(
                400, "No line of the input file names a model (body.model).", param="input_file_id"
            )
        model = models.pop()
        if model not in self.state.aliases:
            if not self.state.settings.allow_any_model:
                raise model_not_found(model)
            self._deployment(model)  # a model the proxy can reach, or 404 now
        return model

    def _deployment(self, model: str) -> Deployment:
        """The alias's first deployment, or with ``allow_any_model`` any model salvo resolves
        (as chat does); 404 ``model_not_found`` for a model it cannot reach."""
        deps = self.state.deployments.get(model)
        if deps:
            return deps[0]
        try:
            return self.state.client.options(model, {}).dep
        except ConfigError as exc:
            err = model_not_found(model)
            err.message += f" ({self.state.redact(str(exc))})"
            raise err from None

    async def _rewrite(self, file_id: str, upstream_model: str) -> Path:
        """A copy of the file with every line's model set to the provider's model name."""
        assert self.files.root is not None
        path, out = _open_spool(self.files.root / "proxy-uploads")
        name = msgspec.Raw(_ENCODE(upstream_model))
        try:
            with out:
                async for _, line in _lines(self.files, file_id):
                    if not line.strip():
                        continue
                    try:
                        top = _DECODE_TOP(line)
                        body = _DECODE_TOP(top["body"])
                        body["model"] = name
                        top["body"] = msgspec.Raw(_ENCODE(body))
                        line = _ENCODE(top)
                    except _BAD_LINE:
                        pass  # passed on as it is; the provider reports it
                    out.write(line + b"\n")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    async def create(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            req = _DECODE_CREATE(raw)
        except DECODE_ERRORS as exc:
            raise ProxyError(400, f"Invalid batch request: {decode_problem(exc)}.") from None
        if req.endpoint not in _ENDPOINTS:
            raise ProxyError(
                400, f"'endpoint' must be one of {', '.join(_ENDPOINTS)}.", param="endpoint"
            )
        if req.completion_window != "24h":
            raise ProxyError(400, "'completion_window' must be '24h'.", param="completion_window")
        if req.metadata is not None and len(req.metadata) > 16:
            raise ProxyError(400, "'metadata' holds at most 16 pairs.", param="metadata")
        file_id = check_id(req.input_file_id, FILE_ID, "file")
        files, table = self.files, self.files.table
        with not_found_as_404("file", file_id):
            fo = await batches.aretrieve_file(file_id, **files.kw())
            alias = await self._model_of(file_id)
        dep = self._deployment(alias)
        args: dict[str, Any] = {
            "endpoint": req.endpoint,
            "completion_window": "24h",
            "metadata": req.metadata,
        }
        if batch_mode(dep) == "local":
            batch = await batches.acreate_batch(input_file_id=file_id, **args, **files.kw())
            table.add("batches", new_route(batch.id, "local", alias))
            files.local_ids.add(batch.id)
            batch.model = batch.model or alias
            return encoded(batch)
        kw = files.kw(dep.provider, alias)
        spool = await self._rewrite(file_id, dep.endpoint.model)
        try:
            native = await batches.acreate_file(
                spool, purpose="batch", filename=fo.filename or "batch.jsonl", **kw
            )
        finally:
            spool.unlink(missing_ok=True)
        table.add("files", new_route(native.id, dep.provider, alias))
        batch = await batches.acreate_batch(input_file_id=native.id, **args, **kw)
        table.add("batches", new_route(batch.id, dep.provider, alias))
        table.remember(batch.id, _ENCODE(batch))
        return encoded(batch)

    def _kw(self, batch_id: str) -> tuple[Any, str | None, str]:
        check_id(batch_id, BATCH_ID, "batch")
        route = self.files.table.get("batches", batch_id)
        if route is None:
            raise ProxyError(
                404, f"No batch with id {batch_id!r}.", param="batch_id", code="batch_not_found"
            )
        return self.files.kw(route.provider, route.alias, route.entry), route.alias, route.provider

    async def _one(self, batch_id: str, cancel: bool = False) -> batches.Batch:
        kw, alias, provider = self._kw(batch_id)
        call = batches.acancel_batch if cancel else batches.aretrieve_batch
        with not_found_as_404("batch", batch_id):
            batch = await call(batch_id, **kw)
        if provider == "local":
            batch.model = batch.model or alias
        else:
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id is not None:
                    self.files.table.add("files", new_route(file_id, provider, alias))
            self.files.table.remember(batch_id, _ENCODE(batch))
        return batch

    async def _listed(self, route: Route) -> batches.Batch:
        """A batch for the list: asked for afresh, or, when it cannot be (its alias is gone
        from the config, its provider fails or no longer knows it), as the proxy last knew
        it, so one stale or unreachable batch hides no other."""
        try:
            return await self._one(route.id)
        except (ProxyError, SalvoError) as exc:
            log.warning("batch %s listed as last seen: %s", route.id, self.state.redact(str(exc)))
        last = self.files.table.last(route.id)
        if last is not None:
            try:
                return _DECODE_BATCH(last)
            except DECODE_ERRORS:
                pass
        return batches.Batch(
            id=route.id, status="unknown", created_at=route.created_at or 0,
            model=route.alias, provider=route.provider,
        )  # fmt: skip

    async def retrieve(self, request: web.Request) -> web.Response:
        return encoded(await self._one(request.match_info["batch_id"]))

    async def cancel(self, request: web.Request) -> web.Response:
        return encoded(await self._one(request.match_info["batch_id"], cancel=True))

    async def list(self, request: web.Request) -> web.Response:
        after = request.query.get("after")
        if after is not None:
            check_id(after, BATCH_ID, "batch")
        routes, more = self.files.table.page(_limit(request.query.get("limit"), 20, 100), after)
        data = [await self._listed(r) for r in routes]
        return encoded(
            {
                "object": "list",
                "data": data,
                "first_id": data[0].id if data else None,
                "last_id": data[-1].id if data else None,
                "has_more": more,
            }
        )
