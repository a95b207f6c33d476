"""Control endpoints for the Google parts of a fake running in another process
(``python -m salvo.testing``):

- ``POST /_fake/gemini/batches/advance`` ``{"steps"?, "name"?}`` and ``.../auto``
  ``{"steps"}``: move Gemini batches (`_gemini_batches`);
- ``POST /_fake/vertex/jobs/advance`` ``{"steps"?, "name"?}`` and ``.../auto`` ``{"steps"}``:
  move Vertex batch prediction jobs (`_vertex`);
- ``POST /_fake/google/service_accounts`` ``{"key_id", "email", "n", "e"?}`` (``n`` a decimal
  string or an integer): register a service account's public key with the token endpoint;
- ``POST /_fake/google/expire_tokens``: make every issued access token stale.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._faults import encode
from ._gemini_batches import gemini_batches_of
from ._google_oauth import google_auth_of
from ._state import STATE_KEY
from ._vertex import vertex_jobs_of

__all__ = ["install"]


def _answer(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encode(payload), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    data = await request.json() if request.can_read_body else {}
    if not isinstance(data, dict):
        raise ValueError("send a JSON object")
    return data


async def _clock(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        data = await _body(request)
        steps = int(data.get("steps", 1))
    except ValueError as exc:
        return _answer({"error": str(exc)}, 400)
    store: Any = gemini_batches_of(state) if "/gemini/" in request.path else vertex_jobs_of(state)
    if request.path.endswith("/auto"):
        store.auto_advance = steps
    else:
        try:
            store.advance(steps, data.get("name"))
        except KeyError:
            return _answer({"error": f"no batch named {data.get('name')!r}"}, 404)
    return _answer({"ok": True})


async def _accounts(request: web.Request) -> web.Response:
    auth = google_auth_of(request.app[STATE_KEY])
    try:
        data = await _body(request)
        auth.add_service_account(str(data["key_id"]), str(data["email"]), int(data["n"]),
                                 int(data.get("e", 65537)))  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        return _answer({"error": f"send key_id, email, n (and e): {exc}"}, 400)
    return _answer({"ok": True})


async def _expire(request: web.Request) -> web.Response:
    google_auth_of(request.app[STATE_KEY]).expire_tokens()
    return _answer({"ok": True})


def install(app: web.Application) -> None:
    for kind in ("gemini/batches", "vertex/jobs"):
        app.router.add_post(f"/_fake/{kind}/advance", _clock)
        app.router.add_post(f"/_fake/{kind}/auto", _clock)
    app.router.add_post("/_fake/google/service_accounts", _accounts)
    app.router.add_post("/_fake/google/expire_tokens", _expire)
