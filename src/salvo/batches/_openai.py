"""OpenAI's Files and Batch APIs (protocols.md 3, 4), and Azure OpenAI's copy of them (9).

Azure URLs come from the Azure adapter's ``resource_url`` (``{base}/openai/files
?api-version=...`` classic, ``{base}/openai/v1/files`` v1); every other OpenAI-format
provider with a batch API uses ``{api_base}/files`` and ``{api_base}/batches``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from .._errors import ConfigError
from ._backends import limits_for
from ._check import checked_upload
from ._rest import Rest, StreamedPayload, decoded
from ._store import FileSource, LocalStore, read_source, source_name, source_size
from ._types import Batch, FileDeleted, FileObject, Page

__all__ = ["OpenAIBatches"]

T = TypeVar("T")
_DECODE_FILE = msgspec.json.Decoder(FileObject).decode
_DECODE_FILES = msgspec.json.Decoder(Page[FileObject]).decode
_DECODE_DELETED = msgspec.json.Decoder(FileDeleted).decode
_DECODE_BATCH = msgspec.json.Decoder(Batch).decode
_DECODE_BATCHES = msgspec.json.Decoder(Page[Batch]).decode


class OpenAIBatches:
    """Files and batches on an OpenAI-format provider (``openai``, ``azure``, ``groq``). A
    file uploaded with purpose ``batch`` is checked against the provider's limits first."""

    def __init__(
        self,
        client: Any,
        provider: str,
        store: LocalStore,
        *,
        api_key: str | None,
        api_base: str | None,
    ) -> None:
        self.provider = provider
        self.store = store  # where the batch costs are kept
        self.rest = Rest(client, provider, api_key=api_key, api_base=api_base, what="batches")
        self._resource_url: Callable[..., str] | None = getattr(
            self.rest.dep.adapter, "resource_url", None
        )

    def url(self, path: str) -> str:
        if self._resource_url is not None:
            return self._resource_url(self.rest.ep, path)
        return f"{self.rest.ep.api_base}/{path}"

    def _decode(self, decode: Callable[[bytes], T], raw: bytes, what: str) -> T:
        return decoded(decode, raw, self.provider, what)

    # -- files -------------------------------------------------------------------------------

    async def create_file(
        self, source: FileSource, *, purpose: str, filename: str | None
    ) -> FileObject:
        name = filename or source_name(source) or "batch.jsonl"
        limits = limits_for(self.provider)
        if purpose == "batch" and limits is not None:
            async with checked_upload(self.provider, limits, source) as upload:
                return await self._upload(upload, purpose, name)
        return await self._upload(source, purpose, name)

    async def _upload(self, source: FileSource, purpose: str, name: str) -> FileObject:
        size = source_size(source)
        start: int | None = None
        if not isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
            try:
                start = source.tell() if source.seekable() else None
            except (AttributeError, OSError, ValueError):
                start = None

        def pieces() -> AsyncIterator[bytes]:
            if start is not None:  # a retried upload starts again where the caller left it
                source.seek(start)  # type: ignore[union-attr]
            return read_source(source)

        def body() -> aiohttp.MultipartWriter:
            form = aiohttp.MultipartWriter("form-data")
            form.append(purpose).set_content_disposition("form-data", name="purpose")
            part = StreamedPayload(pieces, size, content_type="application/jsonl", filename=name)
            part.set_content_disposition("form-data", name="file", filename=name)
            form.append_payload(part)
            return form

        raw = await self.rest.call("POST", self.url("files"), body=body)
        return self._file(self._decode(_DECODE_FILE, raw, "file object"))

    def _file(self, fo: FileObject) -> FileObject:
        fo.provider = self.provider
        return fo

    async def retrieve_file(self, file_id: str) -> FileObject:
        raw = await self.rest.call("GET", self.url(f"files/{file_id}"))
        return self._file(self._decode(_DECODE_FILE, raw, "file object"))

    async def list_files(
        self, *, purpose: str | None, limit: int, after: str | None, order: str
    ) -> Page[FileObject]:
        params = _params(purpose=purpose, limit=str(limit), after=after, order=order)
        raw = await self.rest.call("GET", self.url("files"), params=params)
        page = self._decode(_DECODE_FILES, raw, "file list")
        for fo in page.data:
            fo.provider = self.provider
        return page

    async def delete_file(self, file_id: str) -> FileDeleted:
        raw = await self.rest.call("DELETE", self.url(f"files/{file_id}"))
        return self._decode(_DECODE_DELETED, raw, "file deletion")

    def content(self, file_id: str) -> AsyncIterator[bytes]:
        return self.rest.stream(self.url(f"files/{file_id}/content"))

    # -- batches -----------------------------------------------------------------------------

    def _batch(self, raw: bytes) -> Batch:
        batch = self._decode(_DECODE_BATCH, raw, "batch object")
        batch.provider = self.provider
        return batch

    async def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str] | None,
    ) -> Batch:
        limits = limits_for(self.provider)
        if limits is not None and endpoint not in limits.urls:
            known = ", ".join(sorted(limits.urls))
            raise ConfigError(
                f"{self.provider} has no batch for endpoint {endpoint!r}; it takes {known}. "
                "Nothing was sent."
            )
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
        }
        if metadata:
            body["metadata"] = dict(metadata)
        return self._batch(await self.rest.call("POST", self.url("batches"), json=body))

    async def retrieve_batch(self, batch_id: str) -> Batch:
        return self._batch(await self.rest.call("GET", self.url(f"batches/{batch_id}")))

    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]:
        params = _params(limit=str(limit), after=after)
        raw = await self.rest.call("GET", self.url("batches"), params=params)
        page = self._decode(_DECODE_BATCHES, raw, "batch list")
        for batch in page.data:
            batch.provider = self.provider
        return page

    async def cancel_batch(self, batch_id: str) -> Batch:
        return self._batch(await self.rest.call("POST", self.url(f"batches/{batch_id}/cancel")))


def _params(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}
