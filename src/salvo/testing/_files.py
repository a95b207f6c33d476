"""OpenAI Files API (protocols.md 3) for the fake, also at Azure's paths (9), and the JSONL
lines that go into batch files (`read_requests`) and come out of them (`openai_line`).

Routes: ``POST /v1/files`` (multipart: ``file`` with a filename, ``purpose``), ``GET /v1/files``
(``purpose``, ``limit``, ``order``, ``after``), ``GET /v1/files/{id}``,
``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``; the same under ``/openai`` (classic:
``api-version`` required, ``api-key`` or Bearer) and ``/openai/v1``. Files live in memory in
the `FileStore` at ``state.ext["files"]`` (:func:`files_of`), cleared by ``reset``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol, cast

import msgspec
from aiohttp import BodyPartReader, web

from . import _openai
from ._content import answer_text, completion_tokens, count_words, embedding, prompt_tokens
from ._faults import encode, send_json
from ._state import STATE_KEY, Exchange, FakeState, route

__all__ = [
    "PREFIXES",
    "openai_line",
    "shim_exchange",
    "PURPOSES",
    "FakeFile",
    "FileStore",
    "begin_openai",
    "fail",
    "files_of",
    "install",
    "page_of",
    "read_requests",
    "reply",
]

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_ids = itertools.count(1)
_DECODE = msgspec.json.Decoder()


@dataclass(slots=True)
class FakeFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class FileStore:
    """The fake's files, in upload order."""

    def __init__(self) -> None:
        self.files: dict[str, FakeFile] = {}
        #: Uploads still to answer with a 500 (a hostile test's upstream failure).
        self.fail_uploads = 0

    def add(self, content: bytes, filename: str, purpose: str) -> FakeFile:
        f = FakeFile(f"file-fake{next(_ids):08d}", filename, purpose, content)
        self.files[f.id] = f
        return f

    def clear(self) -> None:
        self.files.clear()
        self.fail_uploads = 0


def files_of(state: FakeState) -> FileStore:
    return state.ext_store("files", FileStore, lambda _: FileStore())


async def fail(
    ex: Exchange, status: int, message: str, *, param: str | None = None, code: str | None = None
) -> web.StreamResponse:
    """An OpenAI-format error, sent at once."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = encode({"error": {"message": message, "type": kind, "param": param, "code": code}})
    return await send_json(ex, status, body, {"x-request-id": ex.request_id}, scripted=False)


async def reply(
    ex: Exchange, payload: Any, content_type: str = "application/json"
) -> web.StreamResponse:
    body = payload if isinstance(payload, bytes) else encode(payload)
    headers = {"x-request-id": ex.request_id}
    return await send_json(ex, 200, body, headers, scripted=False, content_type=content_type)


def _provider(request: web.Request) -> str:
    return "azure" if request.path.startswith("/openai/") else "openai"


async def begin_openai(request: web.Request) -> tuple[Exchange, web.StreamResponse | None]:
    """Record a files/batches request and check its auth; the second item is an error sent."""
    state = request.app[STATE_KEY]
    provider = _provider(request)
    ex = state.begin(request, provider=provider, model="", stream=False, body=None)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer" and bool(token.strip())
    if provider == "azure":
        if not request.path.startswith("/openai/v1/") and "api-version" not in request.query:
            return ex, await fail(ex, 404, "Resource not found", code="404")
        if not (bearer or request.headers.get("api-key", "").strip()):
            return ex, await fail(ex, 401, "Access denied due to a missing subscription key.")
    elif not bearer:
        return ex, await fail(ex, 401, "You didn't provide an API key.")
    return ex, None


def _page(items: list[Any], after: str | None, limit: int) -> dict[str, Any]:
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    data = items[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(items),
    }


def page_of(
    items: list[Any], request: web.Request, default: int, most: int
) -> dict[str, Any] | str:
    """The page a list request asks for (``after``, ``limit``), or what is wrong with it."""
    try:
        limit = int(request.query.get("limit", default))
    except ValueError:
        return "limit must be an integer."
    if not 1 <= limit <= most:
        return f"limit must be between 1 and {most}."
    return _page(items, request.query.get("after"), limit)


def read_requests(
    f: FakeFile | None, endpoint: str, requests: list[tuple[str, str, dict[str, Any]]]
) -> list[dict[str, Any]] | None:
    """Read a batch input file into ``requests`` (custom_id, url, body); the OpenAI-style
    validation errors (each naming its line), or None."""
    if f is None:
        return [{"code": "invalid_file", "message": "The input file was deleted.", "line": None}]
    errors, seen = [], set()
    for n, raw in enumerate(f.content.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = _DECODE.decode(raw)
        except msgspec.DecodeError:
            line = None
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            errors.append(
                {"code": "invalid_json_line", "message": "Not a request line.", "line": n}
            )
            continue
        cid, url = line.get("custom_id"), line.get("url")
        if not isinstance(cid, str) or cid in seen:
            problem = "duplicate_custom_id" if cid in seen else "missing_required_parameter"
            errors.append({"code": problem, "message": f"Bad custom_id {cid!r}.", "line": n})
        elif url != endpoint or line.get("method", "POST") != "POST":
            errors.append({"code": "mismatched_url", "message": f"The url must be {endpoint}.",
                           "line": n})  # fmt: skip
        else:
            seen.add(cid)
            requests.append((cid, url, line["body"]))
    if not errors and not requests:
        errors.append({"code": "empty_file", "message": "The input file is empty.", "line": None})
    return [{**e, "param": None} for e in errors] or None


def shim_exchange(behavior: Any, n: int, provider: str) -> Exchange:
    """What the chat answer builders read from an Exchange: ``behavior``, ``record.id`` and
    ``record.provider``."""
    return cast(
        Exchange,
        SimpleNamespace(behavior=behavior, record=SimpleNamespace(id=n, provider=provider)),
    )


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def openai_line(
    ex: Exchange, custom_id: str, url: str, model: str, body: dict[str, Any]
) -> tuple[bool, bytes, dict[str, int]]:
    """One output or error line of an OpenAI batch: the fake's own answer to ``body`` under
    the Behavior in ``ex``; also the tokens it used."""
    b = ex.behavior
    used: dict[str, int] = {}
    if b.is_error:
        status, payload = b.status, _openai.error_payload(b.status, b)
    elif url.endswith("/embeddings"):
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        vecs = [{"object": "embedding", "index": i, "embedding": embedding(model, x, 8)}
                for i, x in enumerate(items)]  # fmt: skip
        tokens = max(1, count_words(body))
        used = {"input_tokens": tokens}
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        payload = encode({"object": "list", "data": vecs, "model": model, "usage": usage})
        status = 200
    else:
        text = answer_text(b, model)
        prompt, completion = prompt_tokens(b, body), completion_tokens(b, text)
        used = {"input_tokens": prompt, "output_tokens": completion}
        status, payload = 200, _openai._completion(ex, model, text, _usage(prompt, completion))
    response = {"status_code": status, "request_id": f"req_fake{ex.record.id}",
                "body": msgspec.Raw(payload)}  # fmt: skip
    line = {"id": f"batch_req_fake{ex.record.id}", "custom_id": custom_id,
            "response": response, "error": None}  # fmt: skip
    return status == 200, encode(line), used


Handler = Callable[[web.Request, Exchange, FileStore], Awaitable[web.StreamResponse]]


def _files_route(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @route
    async def wrapped(request: web.Request) -> web.StreamResponse:
        ex, failed = await begin_openai(request)
        if failed is not None:
            return failed
        return await handler(request, ex, files_of(request.app[STATE_KEY]))

    return wrapped


async def read_upload(request: web.Request) -> tuple[str | None, bytes | None, str | None]:
    """(purpose, content, filename) of a multipart upload."""
    purpose, content, filename = None, None, None
    if not request.content_type.startswith("multipart/"):
        return None, None, None
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await part.read()).decode()
        elif part.name == "file":
            filename = part.filename
            content = bytes(await part.read())
    return purpose, content, filename


class _Failing(Protocol):
    fail_uploads: int


async def scripted_upload_failure(request: web.Request, store: _Failing) -> bool:
    """True, the upload's body read and dropped, while ``store.fail_uploads`` counts down (the
    caller answers 500)."""
    if store.fail_uploads <= 0:
        return False
    store.fail_uploads -= 1
    await request.read()
    return True


async def _find(ex: Exchange, files: FileStore, file_id: str) -> FakeFile | web.StreamResponse:
    f = files.files.get(file_id)
    if f is None:
        return await fail(ex, 404, f"No such File object: {file_id}", param="id")
    return f


@_files_route
async def upload(request: web.Request, ex: Exchange, files: FileStore) -> web.StreamResponse:
    if not request.content_type.startswith("multipart/"):
        return await fail(ex, 400, "Uploads must be multipart/form-data.")
    if await scripted_upload_failure(request, files):
        return await fail(ex, 500, "The server had an error (scripted by the fake).")
    purpose, content, filename = await read_upload(request)
    if content is None or not filename:
        return await fail(
            ex, 400, "Missing required parameter: 'file' (with a filename).", param="file"
        )
    if purpose not in PURPOSES:
        return await fail(ex, 400, f"Invalid purpose {purpose!r}.", param="purpose")
    return await reply(ex, files.add(content, filename, purpose).to_dict())


@_files_route
async def list_files(request: web.Request, ex: Exchange, files: FileStore) -> web.StreamResponse:
    purpose = request.query.get("purpose")
    items = [f.to_dict() for f in files.files.values() if purpose is None or f.purpose == purpose]
    if request.query.get("order", "desc") == "desc":
        items.reverse()
    page = page_of(items, request, 10_000, 10_000)
    return await (fail(ex, 400, page, param="limit") if isinstance(page, str) else reply(ex, page))


@_files_route
async def retrieve(request: web.Request, ex: Exchange, files: FileStore) -> web.StreamResponse:
    f = await _find(ex, files, request.match_info["file_id"])
    return f if not isinstance(f, FakeFile) else await reply(ex, f.to_dict())


@_files_route
async def content(request: web.Request, ex: Exchange, files: FileStore) -> web.StreamResponse:
    f = await _find(ex, files, request.match_info["file_id"])
    if not isinstance(f, FakeFile):
        return f
    return await reply(ex, f.content, "application/octet-stream")


@_files_route
async def delete(request: web.Request, ex: Exchange, files: FileStore) -> web.StreamResponse:
    f = await _find(ex, files, request.match_info["file_id"])
    if not isinstance(f, FakeFile):
        return f
    del files.files[f.id]
    return await reply(ex, {"id": f.id, "object": "file", "deleted": True})


PREFIXES = ("/v1", "/openai", "/openai/v1")


def install(app: web.Application) -> None:
    files_of(app[STATE_KEY])
    for prefix in PREFIXES:
        app.router.add_post(f"{prefix}/files", upload)
        app.router.add_get(f"{prefix}/files", list_files)
        app.router.add_get(f"{prefix}/files/{{file_id}}", retrieve)
        app.router.add_get(f"{prefix}/files/{{file_id}}/content", content)
        app.router.add_delete(f"{prefix}/files/{{file_id}}", delete)
