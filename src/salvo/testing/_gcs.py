"""A Cloud Storage JSON API subset (protocols.md 16.1-16.2) for the fake, provider "gcs".

Routes (``{name}`` is one URL-encoded path segment, ``/`` as ``%2F``):

- ``POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=N`` (body = the bytes),
  ``?uploadType=multipart`` (``multipart/related``: JSON metadata, then the media) and
  ``?uploadType=resumable`` (JSON metadata; 200 with a ``Location`` session URI, then ``PUT``
  chunks with ``Content-Range: bytes a-b/total`` (``*`` while the total is unknown): 308 with
  ``Range: bytes=0-N`` until the last one, which answers the object).
- ``GET /storage/v1/b/{bucket}/o?prefix=&delimiter=&maxResults=&pageToken=`` (list, keys
  absent when empty), ``GET /storage/v1/b/{bucket}/o/{name}`` (the object resource; with
  ``alt=media`` the bytes), ``GET /download/storage/v1/b/{bucket}/o/{name}?alt=media``,
  ``DELETE /storage/v1/b/{bucket}/o/{name}`` (204).

Downloads carry ``x-goog-hash: crc32c=...,md5=...`` (python-storage checks crc32c) and honour
``Range: bytes=a-b`` (206). Auth follows the emulator convention: a request without
``Authorization`` is served (python-storage sends none when ``STORAGE_EMULATOR_HOST`` is set);
one with a bearer token must carry a live token from the fake's token endpoint; with
``require_auth = True`` every request must. Buckets exist when first written to. Objects live in
memory in `GcsStore` (``gcs_of(fake)``), which Vertex batch jobs read and write too.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from ._faults import encode, send_json
from ._google_oauth import check_bearer
from ._state import STATE_KEY, Exchange, FakeState, route

__all__ = ["GcsObject", "GcsStore", "crc32c", "gcs_of", "install"]

_DECODE = msgspec.json.Decoder()


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as Cloud Storage reports it."""
    c = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        c = table[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


@dataclass(slots=True)
class GcsObject:
    bucket: str
    name: str
    data: bytes
    content_type: str
    generation: int
    created: float = field(default_factory=time.time)
    metadata: dict[str, str] | None = None
    crc: str = ""
    md5: str = ""

    def __post_init__(self) -> None:
        self.crc = base64.b64encode(crc32c(self.data).to_bytes(4, "big")).decode()
        self.md5 = base64.b64encode(hashlib.md5(self.data).digest()).decode()

    def resource(self, base: str) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.created))
        quoted = quote(self.name, safe="")
        out: dict[str, Any] = {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "selfLink": f"{base}/storage/v1/b/{self.bucket}/o/{quoted}",
            "mediaLink": f"{base}/download/storage/v1/b/{self.bucket}/o/{quoted}"
            f"?generation={self.generation}&alt=media",
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": "1",
            "contentType": self.content_type,
            "storageClass": "STANDARD",
            "size": str(len(self.data)),
            "md5Hash": self.md5,
            "crc32c": self.crc,
            "etag": f"CK{self.generation}EAE=",
            "timeCreated": stamp,
            "updated": stamp,
        }
        if self.metadata:
            out["metadata"] = self.metadata
        return out


class GcsStore:
    """The fake's buckets: ``objects[(bucket, name)]``."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], GcsObject] = {}
        self.sessions: dict[str, tuple[str, dict[str, Any], bytearray]] = {}
        self.require_auth = False
        self._generation = 1_700_000_000_000_000

    def put(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> GcsObject:
        self._generation += 1
        obj = GcsObject(bucket, name, data, content_type, self._generation, metadata=metadata)
        self.objects[(bucket, name)] = obj
        return obj

    def get(self, bucket: str, name: str) -> GcsObject | None:
        return self.objects.get((bucket, name))

    def names(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(n for b, n in self.objects if b == bucket and n.startswith(prefix))

    def clear(self) -> None:
        self.objects.clear()
        self.sessions.clear()
        self.require_auth = False


def gcs_of(owner: Any) -> GcsStore:
    """The GcsStore of a FakeProvider (or of its FakeState)."""
    state: FakeState = getattr(owner, "state", owner)
    return state.ext_store("gcs", GcsStore, lambda _: GcsStore())


_REASONS = {400: "invalid", 401: "authError", 404: "notFound", 412: "conditionNotMet"}


async def _fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    reason = _REASONS.get(status, "backendError")
    err = {"code": status, "message": message,
           "errors": [{"message": message, "domain": "global", "reason": reason}]}  # fmt: skip
    return await send_json(ex, status, encode({"error": err}), {}, scripted=False)


async def _begin(request: web.Request) -> tuple[Exchange, GcsStore, web.StreamResponse | None]:
    state = request.app[STATE_KEY]
    store = gcs_of(state)
    bucket = request.match_info.get("bucket", "")
    ex = state.begin(request, provider="gcs", model=bucket, stream=False, body=None)
    if store.require_auth or "Authorization" in request.headers:
        problem = check_bearer(request)
        if problem is not None:
            return ex, store, await _fail(ex, 401, "Invalid Credentials")
    return ex, store, None


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _split_related(raw: bytes, content_type: str) -> tuple[bytes, bytes, str] | None:
    """(metadata JSON, media, media type) of a ``multipart/related`` body."""
    boundary = ""
    for item in content_type.split(";")[1:]:
        key, _, value = item.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return None
    parts = raw.split(b"--" + boundary.encode())
    bodies = []
    for part in parts[1:]:
        if part.startswith(b"--"):
            break
        head, sep, body = part.partition(b"\r\n\r\n")
        if not sep:
            return None
        mime = ""
        for line in head.decode("latin-1").split("\r\n"):
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-type":
                mime = v.strip()
        bodies.append((body.removesuffix(b"\r\n"), mime))
    if len(bodies) != 2:
        return None
    return bodies[0][0], bodies[1][0], bodies[1][1]


@route
async def upload(request: web.Request) -> web.StreamResponse:
    ex, store, failed = await _begin(request)
    if failed is not None:
        return failed
    bucket, kind = request.match_info["bucket"], request.query.get("uploadType", "")
    raw = await request.read()
    metadata: dict[str, Any] = {}
    if kind == "media":
        media, mime = raw, request.headers.get("Content-Type", "application/octet-stream")
    elif kind == "multipart":
        split = _split_related(raw, request.headers.get("Content-Type", ""))
        if split is None:
            return await _fail(ex, 400, "Invalid multipart request: expected metadata and media.")
        try:
            meta = _DECODE.decode(split[0])
        except msgspec.DecodeError:
            return await _fail(ex, 400, "Invalid multipart request: the metadata is not JSON.")
        metadata = meta if isinstance(meta, dict) else {}
        media, mime = split[1], str(metadata.get("contentType") or split[2] or "")
    elif kind == "resumable":
        return await _start_resumable(request, ex, store, raw)
    else:
        return await _fail(ex, 400, f"uploadType {kind!r} is not served by this fake "
                           "(media, multipart and resumable are).")  # fmt: skip
    name = request.query.get("name") or metadata.get("name")
    if not name or not isinstance(name, str):
        return await _fail(ex, 400, "Required parameter: name.")
    user_meta = metadata.get("metadata")
    obj = store.put(bucket, name, media, mime or "application/octet-stream",
                    user_meta if isinstance(user_meta, dict) else None)  # fmt: skip
    return await send_json(ex, 200, encode(obj.resource(_base(request))), {}, scripted=False)


async def _start_resumable(
    request: web.Request, ex: Exchange, store: GcsStore, raw: bytes
) -> web.StreamResponse:
    try:
        meta = _DECODE.decode(raw) if raw else {}
    except msgspec.DecodeError:
        return await _fail(ex, 400, "The resumable upload's metadata is not JSON.")
    meta = meta if isinstance(meta, dict) else {}
    name = request.query.get("name") or meta.get("name")
    if not name or not isinstance(name, str):
        return await _fail(ex, 400, "Required parameter: name.")
    meta["name"] = name
    sid = secrets.token_hex(8)
    store.sessions[sid] = (request.match_info["bucket"], meta, bytearray())
    location = (f"{_base(request)}/upload/storage/v1/b/{request.match_info['bucket']}/o"
                f"?uploadType=resumable&upload_id={sid}")  # fmt: skip
    return await send_json(ex, 200, b"", {"Location": location}, scripted=False)


@route
async def resumable_chunk(request: web.Request) -> web.StreamResponse:
    ex, store, failed = await _begin(request)
    if failed is not None:
        return failed
    session = store.sessions.get(request.query.get("upload_id", ""))
    if session is None:
        return await _fail(ex, 404, "No such upload session.")
    bucket, meta, data = session
    raw = await request.read()
    rng = request.headers.get("Content-Range", "").removeprefix("bytes ")
    span, _, total = rng.partition("/")
    if span != "*":
        first, _, _last = span.partition("-")
        if not first.isdigit() or int(first) != len(data):
            return await _fail(ex, 400, f"Content-Range must start at byte {len(data)}.")
        data += raw
    if total == "*" or (total.isdigit() and len(data) < int(total)):
        headers = {"Range": f"bytes=0-{len(data) - 1}"} if data else {}
        return await send_json(ex, 308, b"", headers, scripted=False)
    if not total.isdigit() or int(total) != len(data):
        return await _fail(ex, 400, f"Upload size {len(data)} != declared {total}.")
    del store.sessions[request.query["upload_id"]]
    user_meta = meta.get("metadata")
    obj = store.put(bucket, meta["name"], bytes(data),
                    str(meta.get("contentType") or "application/octet-stream"),
                    user_meta if isinstance(user_meta, dict) else None)  # fmt: skip
    return await send_json(ex, 200, encode(obj.resource(_base(request))), {}, scripted=False)


@route
async def list_objects(request: web.Request) -> web.StreamResponse:
    ex, store, failed = await _begin(request)
    if failed is not None:
        return failed
    q = request.query
    bucket, prefix, delimiter = (
        request.match_info["bucket"],
        q.get("prefix", ""),
        q.get("delimiter"),
    )
    try:
        limit = max(1, min(int(q.get("maxResults", "1000")), 1000))
        start = int(q.get("pageToken") or 0)
    except ValueError:
        return await _fail(ex, 400, "Invalid maxResults or pageToken.")
    items: list[str] = []
    prefixes: set[str] = set()
    for name in store.names(bucket, prefix):
        rest = name[len(prefix) :]
        if delimiter and delimiter in rest:
            prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
        else:
            items.append(name)
    page = items[start : start + limit]
    out: dict[str, Any] = {"kind": "storage#objects"}
    if page:
        base = _base(request)
        out["items"] = [store.objects[(bucket, n)].resource(base) for n in page]
    if prefixes:
        out["prefixes"] = sorted(prefixes)
    if start + limit < len(items):
        out["nextPageToken"] = str(start + limit)
    return await send_json(ex, 200, encode(out), {}, scripted=False)


@route
async def one_object(request: web.Request) -> web.StreamResponse:
    ex, store, failed = await _begin(request)
    if failed is not None:
        return failed
    bucket, name = request.match_info["bucket"], request.match_info["name"]
    obj = store.get(bucket, name)
    if obj is None:
        return await _fail(ex, 404, f"No such object: {bucket}/{name}")
    if request.method == "DELETE":
        del store.objects[(bucket, name)]
        return await send_json(ex, 204, b"", {}, scripted=False)
    media = request.path.startswith("/download/") or request.query.get("alt") == "media"
    if not media:
        return await send_json(ex, 200, encode(obj.resource(_base(request))), {}, scripted=False)
    headers = {"x-goog-hash": f"crc32c={obj.crc},md5={obj.md5}",
               "x-goog-generation": str(obj.generation)}  # fmt: skip
    data, status = obj.data, 200
    rng = request.headers.get("Range", "")
    if rng.startswith("bytes="):
        first, _, last = rng[6:].partition("-")
        try:
            a = int(first)
            b = int(last) if last else len(obj.data) - 1
        except ValueError:
            return await _fail(ex, 400, f"Invalid Range header {rng!r}.")
        data, status = obj.data[a : b + 1], 206
        headers["Content-Range"] = f"bytes {a}-{a + len(data) - 1}/{len(obj.data)}"
    return await send_json(ex, status, data, headers, scripted=False, content_type=obj.content_type)


def install(app: web.Application) -> None:
    gcs_of(app[STATE_KEY])
    app.router.add_post("/upload/storage/v1/b/{bucket}/o", upload)
    app.router.add_put("/upload/storage/v1/b/{bucket}/o", resumable_chunk)
    app.router.add_get("/storage/v1/b/{bucket}/o", list_objects)
    app.router.add_route("GET", "/storage/v1/b/{bucket}/o/{name:.+}", one_object)
    app.router.add_route("DELETE", "/storage/v1/b/{bucket}/o/{name:.+}", one_object)
    app.router.add_get("/download/storage/v1/b/{bucket}/o/{name:.+}", one_object)
