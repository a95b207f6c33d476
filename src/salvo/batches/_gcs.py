"""The Cloud Storage JSON API calls the Vertex batch backend needs (protocols.md 16.2).

Upload (``uploadType=media``, streamed, its length known), list by prefix (following
``nextPageToken``) and download (``alt=media``, in pieces). Calls go through the Vertex
deployment's :class:`~salvo.batches._rest.Rest`, so they carry its access token
and share its retries. The base is ``STORAGE_EMULATOR_HOST`` when set (Cloud Storage's own
emulator convention; a value without a scheme gets ``http://``), else
``https://storage.googleapis.com``. Object names go in the path as one URL-encoded segment.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import msgspec

from .._errors import ConfigError
from ._rest import Rest, StreamedPayload

__all__ = ["Gcs", "split_uri"]


class _Item(msgspec.Struct):
    name: str


class _Objects(msgspec.Struct, rename="camel"):
    items: list[_Item] = msgspec.field(default_factory=list)
    next_page_token: str | None = None


_DECODE_OBJECTS = msgspec.json.Decoder(_Objects).decode


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/name`` -> (bucket, name)."""
    if not uri.startswith("gs://"):
        raise ConfigError(f"{uri!r} is not a gs://bucket/path URI.")
    bucket, _, name = uri[5:].partition("/")
    return bucket, name


class Gcs:
    """A few Cloud Storage calls through a Google deployment's REST path."""

    def __init__(self, rest: Rest) -> None:
        self.rest = rest
        host = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
        if host and "://" not in host:
            host = f"http://{host}"
        self.base = (host or "https://storage.googleapis.com").rstrip("/")

    async def upload(
        self,
        bucket: str,
        name: str,
        pieces: Callable[[], AsyncIterator[bytes]],
        size: int,
        content_type: str = "application/jsonl",
    ) -> None:
        def body() -> StreamedPayload:
            return StreamedPayload(pieces, size, content_type=content_type)

        await self.rest.call(
            "POST",
            f"{self.base}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
            body=body,
            params={"uploadType": "media", "name": name},
            headers={"content-type": content_type},
        )

    async def list(self, bucket: str, prefix: str) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            params = {"prefix": prefix, "fields": "items(name),nextPageToken"}
            if token:
                params["pageToken"] = token
            raw = await self.rest.call(
                "GET", f"{self.base}/storage/v1/b/{quote(bucket, safe='')}/o", params=params
            )
            page = _DECODE_OBJECTS(raw)
            names.extend(item.name for item in page.items)
            token = page.next_page_token
            if not token:
                return names

    def download(self, bucket: str, name: str) -> AsyncIterator[bytes]:
        url = f"{self.base}/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        return self.rest.stream(url, params={"alt": "media"})
