"""The aiohttp application: state, the one middleware, health and model routes, the server.

The middleware does three things for every request, in this order: start the request's
:class:`~salvo.proxy._relay.Timer`, check the bearer key (``hmac.compare_digest``; the health
routes are open), and turn any exception into OpenAI's error JSON. It stamps
``x-salvo-overhead-ms`` on every response it returns; streaming handlers stamp it themselves
just before their headers go out.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from .._client import Client
from .._config import Config, load_config
from .._models import resolve_deployment
from ..providers import PROVIDERS
from . import _metrics
from ._chat import ChatRoutes
from ._errors import (
    JSON_HEADERS,
    ProxyError,
    Redactor,
    error_response,
    from_exception,
    model_not_found,
)
from ._relay import OVERHEAD_HEADER, TIMER, Timer
from ._settings import ProxySettings, check_config, load_settings

__all__ = ["STATE", "ProxyServer", "ProxyState", "create_app"]

_ENCODE = msgspec.json.Encoder().encode
OPEN_PATHS = frozenset({"/health", "/health/liveness", "/health/liveliness", "/health/readiness"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProxyState:
    """One proxy's config, settings, Client and precomputed answers."""

    def __init__(self, config: Config, settings: ProxySettings, client: Client) -> None:
        self.config = config
        self.settings = settings
        self.client = client
        self.aliases = frozenset(config.model_names)
        self.started = int(time.time())
        self.ready = False
        self.deployments = {
            name: [resolve_deployment(name, config=config, entry_index=i) for i in range(len(es))]
            for name, es in config.models.items()
        }
        secrets: list[str | None] = [settings.master_key]
        secrets += [d.endpoint.api_key for ds in self.deployments.values() for d in ds]
        secrets += [os.environ.get(p.key_env) for p in PROVIDERS.values() if p.key_env]
        self.redact = Redactor(secrets)
        self.models_body = _ENCODE(
            {"object": "list", "data": [self.model_object(n) for n in config.model_names]}
        )

    def model_object(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": self.started,
            "owned_by": self.deployments[name][0].provider,
        }


STATE = web.AppKey("salvo_proxy_state", ProxyState)


def _unauthorized(message: str) -> ProxyError:
    return ProxyError(401, message, type="invalid_request_error", code="invalid_api_key")


def _middleware(state: ProxyState) -> Middleware:
    key = state.settings.master_key.encode() if state.settings.master_key else None
    redact = state.redact

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        timer = Timer()
        request[TIMER] = timer
        try:
            if key is not None and request.path not in OPEN_PATHS:
                auth = request.headers.get("Authorization", "")
                if auth[:7].lower() != "bearer ":
                    raise _unauthorized(
                        "Missing API key: send it as an 'Authorization: Bearer <key>' header."
                    )
                token = auth[7:].strip().encode("utf-8", "surrogateescape")
                if not hmac.compare_digest(token, key):
                    raise _unauthorized("Incorrect API key provided.")
            resp = await handler(request)
        except ConnectionResetError:
            raise
        except Exception as exc:
            resp = error_response(from_exception(exc, redact))
        if not resp.prepared:
            resp.headers[OVERHEAD_HEADER] = timer.overhead_ms()
        return resp

    return middleware


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_ENCODE(payload), headers=JSON_HEADERS)


class _BasicRoutes:
    def __init__(self, state: ProxyState) -> None:
        self.state = state

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "healthy"})

    async def readiness(self, request: web.Request) -> web.Response:
        state = self.state
        session_open = state.ready and not state.client.closed
        body = {
            "status": "ready" if session_open else "not_ready",
            "config": "loaded",
            "upstream_session": "open" if session_open else "closed",
        }
        return _json(body, 200 if session_open else 503)

    async def models(self, request: web.Request) -> web.Response:
        return web.Response(body=self.state.models_body, headers=JSON_HEADERS)

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self.state.aliases:
            raise model_not_found(name)
        return _json(self.state.model_object(name))


def create_app(
    config: str | os.PathLike[str] | Mapping[str, Any] | Config,
    *,
    settings: ProxySettings | None = None,
    **client_options: Any,
) -> web.Application:
    """The proxy as an aiohttp app. Every model entry is resolved now, so a bad config fails
    here; ``client_options`` go to the :class:`~salvo.Client` the app opens on start-up."""
    cfg = load_config(config)
    check_config(cfg)
    settings = settings or load_settings(cfg)
    client_options.setdefault("timeout", settings.request_timeout)
    client_options.setdefault("max_retries", settings.num_retries)
    client = Client(config=cfg, **client_options)
    state = ProxyState(cfg, settings, client)
    app = web.Application(
        client_max_size=settings.max_request_bytes, middlewares=[_middleware(state)]
    )
    app[STATE] = state

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with client:
            state.ready = True
            try:
                yield
            finally:
                state.ready = False

    app.cleanup_ctx.append(lifecycle)
    basic, chat = _BasicRoutes(state), ChatRoutes(state)
    for path in sorted(OPEN_PATHS - {"/health/readiness"}):
        app.router.add_get(path, basic.health)
    app.router.add_get("/health/readiness", basic.readiness)
    app.router.add_get("/v1/models", basic.models)
    app.router.add_get("/v1/models/{model}", basic.model)
    app.router.add_post("/v1/chat/completions", chat.chat)
    app.router.add_post("/chat/completions", chat.chat)
    app.router.add_post("/v1/embeddings", chat.embeddings)
    app.router.add_post("/embeddings", chat.embeddings)
    _install_batches(app, state)
    _metrics.install(app, state)  # /metrics, and each request's record (log line, series)
    return app


def _install_batches(app: web.Application, state: ProxyState) -> None:
    from . import _files

    _files.install(app, state)


class ProxyServer:
    """The proxy on ``host:port`` (port 0: a free one), in this event loop.

    ``async with ProxyServer(config) as proxy:`` serves until the block ends; ``stop()``
    finishes in-flight requests within ``settings.shutdown_timeout`` seconds, then cancels
    what is left, then closes the upstream session.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | Config,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: ProxySettings | None = None,
        reuse_port: bool = False,
        access_log: bool = False,
        **client_options: Any,
    ) -> None:
        self.app = create_app(config, settings=settings, **client_options)
        self.state = self.app[STATE]
        self.host = host
        self._requested_port = port
        self._reuse_port = reuse_port
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("this ProxyServer is already running")
        kwargs: dict[str, Any] = {} if self._access_log else {"access_log": None}
        runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            shutdown_timeout=self.state.settings.shutdown_timeout,
            **kwargs,
        )
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self.host, self._requested_port, reuse_port=self._reuse_port or None
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the ProxyServer is not running")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> ProxyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
