"""`FakeProvider`: the aiohttp app, its runner, scripting, records and control endpoints.

Adding routes (the extension hook)
----------------------------------
Routes come from *installers*: functions ``install(app: web.Application) -> None`` that add
routes to the app. The built-in ones are listed in `INSTALLERS`; more can be passed per server
with ``FakeProvider(installers=[...])``. A handler gets the shared `FakeState` from
``request.app[STATE_KEY]`` and follows the pattern in `_state` (``@route``, ``state.begin(...)``,
then ``send_json`` / ``send_stream`` from `_faults`), so its requests are recorded and scripted
like every other. To add OpenAI files + batches or Anthropic message batches, write
``_files.py`` / ``_batches.py`` with an ``install(app)``, keep their stores in
``state.ext["files"]`` etc., register ``state.reset_hooks.append(...)`` to clear them on
`FakeProvider.reset`, and append the installer to `INSTALLERS`; no format module changes.

Control endpoints (for a fake running in another process, e.g. ``python -m salvo.testing``):

- ``POST /_fake/script`` ``{"model": "m", "behavior": {...} | [{...}, ...]}``; a ``model`` of
  ``null`` or ``"*"`` sets the default Behavior (one object only).
- ``GET /_fake/records`` (optional ``?model=``): the records as a JSON list.
- ``POST /_fake/reset``: like `FakeProvider.reset`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from aiohttp import web

from . import (
    _anthropic,
    _batches,
    _cohere,
    _files,
    _gcs,
    _gemini,
    _gemini_batches,
    _gemini_files,
    _google_control,
    _google_oauth,
    _jobs,
    _mistral,
    _openai,
    _together,
    _vertex,
)
from ._behavior import Behavior, ScriptSpec, decode_script_spec
from ._faults import encode
from ._records import Record
from ._state import STATE_KEY, FakeState

__all__ = ["INSTALLERS", "FakeProvider", "Installer", "build_app"]

Installer = Callable[[web.Application], None]


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encode(payload), content_type="application/json")


async def _control_script(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        data = await request.json()
        if not isinstance(data, dict) or "behavior" not in data:
            raise ValueError('send {"model": ..., "behavior": {...} or [{...}, ...]}')
        spec = decode_script_spec(data["behavior"])
        model = data.get("model")
        if model is None or model == "*":
            if not isinstance(spec, Behavior):
                raise ValueError("the default is one Behavior, not a list")
            state.default = spec
        elif isinstance(model, str):
            state.script(model, spec)
        else:
            raise ValueError("model must be a string, '*' or null")
    except ValueError as exc:  # includes json.JSONDecodeError
        return _json({"error": str(exc)}, 400)
    return _json({"ok": True})


async def _control_records(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    model = request.query.get("model")
    records = state.records if model is None else state.records_for(model)
    return _json([r.to_dict() for r in records])


async def _control_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return _json({"ok": True})


def _install_control(app: web.Application) -> None:
    app.router.add_post("/_fake/script", _control_script)
    app.router.add_get("/_fake/records", _control_records)
    app.router.add_post("/_fake/reset", _control_reset)


#: Route installers every fake gets, in order.
INSTALLERS: list[Installer] = [
    _install_control,
    _openai.install,
    _anthropic.install,
    _gemini_batches.install,  # before _gemini: its model:method route is more specific
    _gemini.install,
    _cohere.install,
    _files.install,
    _batches.install,
    _gemini_files.install,
    _google_oauth.install,
    _gcs.install,
    _vertex.install,
    _google_control.install,
    _jobs.install,
    _mistral.install,
    _together.install,
]


def build_app(state: FakeState, installers: Iterable[Installer] = ()) -> web.Application:
    """The aiohttp app of a fake: the state under STATE_KEY and every installer's routes."""
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[STATE_KEY] = state
    for install in (*INSTALLERS, *installers):
        install(app)
    return app


class FakeProvider:
    """An in-process fake LLM provider on ``host:port`` (port 0: a free port).

    ``async with FakeProvider() as fake:`` starts it and stops it; ``start()`` / ``stop()``
    do the same by hand. ``keep_records=False`` or ``max_records`` bound memory for long runs
    (with ``max_records`` the oldest records are dropped; up to twice that many are kept).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_records: bool = True,
        max_records: int | None = None,
        installers: Iterable[Installer] = (),
        shutdown_timeout: float = 1.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._shutdown_timeout = shutdown_timeout
        self.state = FakeState(keep_records=keep_records, max_records=max_records)
        self.app = build_app(self.state, installers)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("this FakeProvider is already running; stop() it first")
        runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving: handlers still answering are cancelled (their records show
        ``disconnected``), open connections are closed."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.cancel_live()
        await asyncio.sleep(0)
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> FakeProvider:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the FakeProvider is not running; use `async with` or start()")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    @property
    def gemini_base(self) -> str:
        return self.url

    @property
    def vertex_base(self) -> str:
        """Vertex AI's ``api_base`` (``VERTEXAI_API_BASE``) for this fake."""
        return self.url

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint (a service account's ``token_uri``)."""
        return self.url + "/token"

    @property
    def storage_base(self) -> str:
        """Cloud Storage's base (``STORAGE_EMULATOR_HOST``) for this fake."""
        return self.url

    @property
    def cohere_base(self) -> str:
        return self.url

    @property
    def azure_base(self) -> str:
        return self.url

    @property
    def mistral_base(self) -> str:
        """Mistral's files and batch jobs (salvo's ``api_base``: paths after ``/v1``)."""
        return self.url + _mistral.PREFIX

    @property
    def mistral_server(self) -> str:
        """The same for the official client (``Mistral(server_url=...)`` adds ``/v1``)."""
        return self.url + _mistral.PREFIX.removesuffix("/v1")

    @property
    def together_base(self) -> str:
        return self.url + _together.PREFIX

    @property
    def groq_base(self) -> str:
        return self.url + _together.GROQ_PREFIX

    # -- scripting and records ---------------------------------------------------------------

    def script(self, model: str, spec: ScriptSpec) -> None:
        """Script ``model``: one Behavior, a list played in order (the last repeats), or a
        callable of the 0-based request count (counted from this call)."""
        self.state.script(model, spec)

    @property
    def default(self) -> Behavior:
        """The Behavior for models without a script."""
        return self.state.default

    @default.setter
    def default(self, behavior: Behavior) -> None:
        if not isinstance(behavior, Behavior):
            raise TypeError(f"default must be a Behavior, got {behavior!r}")
        self.state.default = behavior

    @property
    def records(self) -> list[Record]:
        """Every request received, in arrival order (the live list)."""
        return self.state.records

    def records_for(self, model: str) -> list[Record]:
        return self.state.records_for(model)

    async def wait_until_closed(self, record: Record, timeout: float = 1.0) -> Record:  # noqa: ASYNC109
        """Wait until ``record``'s exchange ended (completed, client disconnected, or reset by
        a fault) and return it; TimeoutError after ``timeout`` seconds."""
        return await self.state.wait_until_closed(record, timeout)

    def reset(self) -> None:
        """Forget records, scripts and request counts, and restore the default Behavior."""
        self.state.reset()
