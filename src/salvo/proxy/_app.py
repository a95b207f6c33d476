"""The aiohttp application: state, the one middleware, health and model routes, the server.

The middleware does three things for every request, in this order: start the request's
:class:`~salvo.proxy._relay.Timer`, check the bearer key (``hmac.compare_digest``; the health
routes are open), and turn any exception into OpenAI's error JSON. It stamps
``x-salvo-overhead-ms`` on every response it returns; streaming handlers stamp it themselves
just before their headers go out.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from .._client import Client
from .._config import Config, load_config
from . import _metrics
from ._chat import ChatRoutes
from ._errors import (
    JSON_HEADERS,
    ProxyError,
    error_response,
    from_exception,
    model_not_found,
)
from ._relay import OVERHEAD_HEADER, TIMER, Timer
from ._settings import ProxySettings, check_config, load_settings
from ._state import STATE, ProxyState

__all__ = ["STATE", "ProxyServer", "ProxyState", "create_app"]

log = logging.getLogger("salvo.proxy")

_ENCODE = msgspec.json.Encoder().encode
#: Routes that stream their body to disk themselves, a piece at a time, each in time.
STREAMED_BODIES = frozenset({"/v1/files"})
OPEN_PATHS = frozenset({"/health", "/health/liveness", "/health/liveliness", "/health/readiness"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _unauthorized(message: str) -> ProxyError:
    return ProxyError(401, message, type="invalid_request_error", code="invalid_api_key")


def _middleware(state: ProxyState) -> Middleware:
    master = state.settings.master_key
    key = master.encode() if master is not None else None
    redact = state.redact
    body_timeout = state.settings.client_body_timeout
    max_body = state.settings.max_request_bytes

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
            if (
                request.body_exists
                and not request.content.is_eof()  # most bodies came with the headers
                and request.path not in STREAMED_BODIES
            ):
                await _read_in_time(request, body_timeout, max_body)
            resp = await handler(request)
        except ConnectionResetError:
            raise
        except Exception as exc:
            err = from_exception(exc, redact)
            if err.status >= 500:
                log.warning(
                    "%s %s answered %d (%s): %s",
                    request.method, request.path, err.status, err.code or err.type, err.message,
                )  # fmt: skip
            resp = error_response(err)
            if err.status == 408:
                resp.force_close()
        else:
            if resp.status >= 500:
                log.warning(
                    "%s %s answered %d: %s", request.method, request.path, resp.status, resp.reason
                )
        if not resp.prepared:
            resp.headers[OVERHEAD_HEADER] = timer.overhead_ms()
        return resp

    return middleware


async def _read_in_time(request: web.Request, seconds: float, limit: int) -> None:
    """Read the request body (the handler then finds it read) within ``seconds`` seconds: a
    client that sends its body slowly, or not at all, gets a 408 and the connection closes."""
    size = request.content_length
    if size is not None and size > limit:
        return  # the handler answers 413 without reading it
    try:
        async with asyncio.timeout(seconds):
            await request.read()
    except TimeoutError:
        raise ProxyError(
            408,
            f"The request body did not arrive within {seconds:g} seconds "
            "(setting client_body_timeout).",
            code="request_timeout",
        ) from None


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
    client_options.setdefault("hedge_budget", settings.hedge_budget)
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
        settings = self.state.settings
        runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            shutdown_timeout=settings.shutdown_timeout,
            # aiohttp closes a connection whose request headers are not all in after this long
            # (and a keep-alive connection idle this long): the client_header_timeout setting.
            keepalive_timeout=settings.client_header_timeout,
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
