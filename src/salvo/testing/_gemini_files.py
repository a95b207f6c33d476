"""The Gemini Files API (protocols.md 14.1) for the fake, provider "gemini".

- Resumable upload: ``POST /upload/v1beta/files`` with ``X-Goog-Upload-Protocol: resumable``
  and ``X-Goog-Upload-Command: start`` (key required; body ``{"file": {...}}``) answers with an
  ``X-Goog-Upload-URL`` session URL (the same path with ``?upload_id=``). Chunks are POSTed there
  with ``X-Goog-Upload-Command: upload`` or ``upload, finalize`` and ``X-Goog-Upload-Offset``
  (the bytes received so far, else 400); no key (the session URL is the credential). The answer
  carries ``X-Goog-Upload-Status: active`` (more to come) or ``final`` with ``{"file": File}``.
  ``X-Goog-Upload-Command: query`` answers ``X-Goog-Upload-Size-Received``;
  ``drop_upload_after = n`` cuts the next byte upload's connection after n bytes (kept).
- ``GET /v1beta/files/{id}``, ``GET /v1beta/files?pageSize=&pageToken=``,
  ``DELETE /v1beta/files/{id}``, and the bytes at ``GET /v1beta/files/{id}:download?alt=media``
  (also under ``/download/v1beta/``).

Files live in `GeminiFiles` (``gemini_files_of(fake)``); batch results are added there as
``GENERATED`` files. Sizes are int64 strings, times RFC 3339, as on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from ._faults import encode, send_json
from ._gemini import error_payload
from ._state import STATE_KEY, Exchange, FakeState, route

__all__ = ["GeminiFile", "GeminiFiles", "gemini_files_of", "install", "rfc3339"]

_ids = itertools.count(1)
_DECODE = msgspec.json.Decoder()
_JSON = "application/json; charset=UTF-8"


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


@dataclass(slots=True)
class GeminiFile:
    name: str
    display_name: str
    mime_type: str
    data: bytes
    source: str = "UPLOADED"
    created: float = field(default_factory=time.time)

    def resource(self, base: str) -> dict[str, Any]:
        out = {
            "name": self.name,
            "displayName": self.display_name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.created),
            "expirationTime": rfc3339(self.created + 48 * 3600),
            "sha256Hash": base64.b64encode(hashlib.sha256(self.data).digest()).decode(),
            "uri": f"{base}/v1beta/{self.name}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.source == "GENERATED":
            out["downloadUri"] = f"{base}/download/v1beta/{self.name}:download?alt=media"
        return out


@dataclass(slots=True)
class _Session:
    meta: dict[str, Any]
    size: int | None
    mime: str
    data: bytearray = field(default_factory=bytearray)


class GeminiFiles:
    """The fake's Gemini files and the upload sessions in progress."""

    def __init__(self) -> None:
        self.files: dict[str, GeminiFile] = {}
        self.sessions: dict[str, _Session] = {}
        #: Cut the connection of the next byte upload after this many bytes (then None).
        self.drop_upload_after: int | None = None

    def add(
        self,
        data: bytes,
        *,
        name: str | None = None,
        display_name: str = "",
        mime_type: str = "application/jsonl",
        source: str = "UPLOADED",
    ) -> GeminiFile:
        name = name or f"files/fake{next(_ids):06d}{secrets.token_hex(3)}"
        f = GeminiFile(name, display_name, mime_type, data, source)
        self.files[name] = f
        return f

    def clear(self) -> None:
        self.files.clear()
        self.sessions.clear()
        self.drop_upload_after = None


def gemini_files_of(owner: Any) -> GeminiFiles:
    state: FakeState = getattr(owner, "state", owner)
    return state.ext_store("gemini_files", GeminiFiles, lambda _: GeminiFiles())


def base_of(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def fail(ex: Exchange, status: int, message: str) -> web.StreamResponse:
    return await send_json(ex, status, error_payload(status, None, message), {},
                           scripted=False, content_type=_JSON)  # fmt: skip


async def ok(
    ex: Exchange, payload: Any, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    return await send_json(ex, 200, encode(payload), headers or {}, scripted=False,
                           content_type=_JSON)  # fmt: skip


def has_key(request: web.Request) -> bool:
    return bool(request.headers.get("x-goog-api-key", "").strip() or request.query.get("key"))


_NO_KEY = "API key not valid. Please pass a valid API key."


@route
async def upload(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    store = gemini_files_of(state)
    ex = state.begin(request, provider="gemini", model="", stream=False, body=None)
    command = request.headers.get("X-Goog-Upload-Command", "").replace(" ", "").lower()
    upload_id = request.query.get("upload_id")
    drop = store.drop_upload_after if upload_id is not None and "upload" in command else None
    if drop is not None:  # keep what arrived before the cut, as the real service does
        store.drop_upload_after = None
        session = store.sessions.get(upload_id or "")
        offset = request.headers.get("X-Goog-Upload-Offset", "")
        if session is not None and offset == str(len(session.data)):
            session.data += await request.content.readexactly(drop)
        await ex.abort()
        return web.Response(status=499)
    raw = await request.read()
    if upload_id is None:
        if not has_key(request):
            return await fail(ex, 401, _NO_KEY)
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable":
            return await fail(ex, 400, "Only the resumable upload protocol is served here.")
        if command != "start":
            return await fail(ex, 400, "A new upload starts with X-Goog-Upload-Command: start.")
        try:
            body = _DECODE.decode(raw) if raw else {}
        except msgspec.DecodeError:
            return await fail(ex, 400, "The request body is not valid JSON.")
        meta = body.get("file") if isinstance(body, dict) else None
        length = request.headers.get("X-Goog-Upload-Header-Content-Length")
        mime = request.headers.get("X-Goog-Upload-Header-Content-Type", "")
        sid = secrets.token_hex(8)
        store.sessions[sid] = _Session(meta if isinstance(meta, dict) else {},
                                       int(length) if length and length.isdigit() else None,
                                       mime)  # fmt: skip
        url = f"{base_of(request)}/upload/v1beta/files?upload_id={sid}&upload_protocol=resumable"
        return await ok(ex, {}, {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})
    session = store.sessions.get(upload_id)
    if session is None:
        return await fail(ex, 404, "No such upload session.")
    if command == "query":
        received = {"X-Goog-Upload-Status": "active",
                    "X-Goog-Upload-Size-Received": str(len(session.data))}  # fmt: skip
        return await ok(ex, {}, received)
    if command not in ("upload", "upload,finalize", "finalize"):
        return await fail(ex, 400, f"Unknown X-Goog-Upload-Command {command!r}.")
    offset = request.headers.get("X-Goog-Upload-Offset", "")
    if not offset.isdigit() or int(offset) != len(session.data):
        return await fail(ex, 400, f"X-Goog-Upload-Offset must be {len(session.data)}.")
    session.data += raw
    if "finalize" not in command:
        return await ok(ex, {}, {"X-Goog-Upload-Status": "active"})
    del store.sessions[upload_id]
    if session.size is not None and session.size != len(session.data):
        return await fail(ex, 400, f"Upload size {len(session.data)} != declared {session.size}.")
    meta = session.meta
    mime = str(meta.get("mimeType") or session.mime or "application/octet-stream")
    name = meta.get("name")
    f = store.add(bytes(session.data), name=name if isinstance(name, str) else None,
                  display_name=str(meta.get("displayName") or ""), mime_type=mime)  # fmt: skip
    return await ok(ex, {"file": f.resource(base_of(request))}, {"X-Goog-Upload-Status": "final"})


@route
async def files(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    store = gemini_files_of(state)
    ex = state.begin(request, provider="gemini", model="", stream=False, body=None)
    if not has_key(request):
        return await fail(ex, 401, _NO_KEY)
    target = request.match_info.get("target")
    if target is None:
        items = sorted(store.files.values(), key=lambda f: f.created, reverse=True)
        try:
            size = max(1, min(int(request.query.get("pageSize", "10")), 100))
            start = int(request.query.get("pageToken") or 0)
        except ValueError:
            return await fail(ex, 400, "Invalid pageSize or pageToken.")
        out: dict[str, Any] = {"files": [f.resource(base_of(request))
                                         for f in items[start : start + size]]}  # fmt: skip
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return await ok(ex, out)
    file_id, _, action = target.partition(":")
    f = store.files.get(f"files/{file_id}")
    if f is None or action not in ("", "download"):
        return await fail(ex, 404, f"File files/{file_id} not found.")
    if action == "download" or request.path.startswith("/download/"):
        return await send_json(ex, 200, f.data, {}, scripted=False,
                               content_type="application/octet-stream")  # fmt: skip
    if request.method == "DELETE":
        del store.files[f.name]
        return await ok(ex, {})
    return await ok(ex, f.resource(base_of(request)))


def install(app: web.Application) -> None:
    gemini_files_of(app[STATE_KEY])
    app.router.add_post("/upload/v1beta/files", upload)
    app.router.add_get("/v1beta/files", files)
    app.router.add_route("GET", "/v1beta/files/{target}", files)
    app.router.add_route("DELETE", "/v1beta/files/{target}", files)
    app.router.add_get("/download/v1beta/files/{target}", files)
