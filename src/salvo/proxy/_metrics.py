"""Prometheus ``/metrics`` for ``salvo serve`` (``prometheus-client``, extra ``metrics``), and
the middleware that keeps each request's record.

Every series is labelled by ``model`` (the alias the client asked for; ``other`` for a model
outside the config under ``allow_any_model``, so clients cannot grow the label set; a race is
counted under its winner, a gather under ``gather``) and ``provider`` where there is one.
``/metrics`` needs the master key unless the config says ``metrics_public: true``.

With ``--workers N`` the parent points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before
forking (:func:`shared_across_workers`), every worker writes its samples there, and whichever
worker answers ``/metrics`` sums them all (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .._errors import ConfigError
from .._observe import RECORD
from ._errors import ProxyError, error_response
from ._log import RequestRecord, emit
from ._relay import OVERHEAD_HEADER, TIMER

if TYPE_CHECKING:
    from ._state import ProxyState

__all__ = ["METRIC_NAMES", "Metrics", "install", "shared_across_workers"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Paths that are neither counted nor logged (probes and the scrape itself).
_QUIET = frozenset(
    {"/metrics", "/health", "/health/liveness", "/health/liveliness", "/health/readiness"}
)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
METRIC_NAMES = (
    "salvo_requests_total",
    "salvo_request_duration_seconds",
    "salvo_upstream_duration_seconds",
    "salvo_time_to_first_token_seconds",
    "salvo_input_tokens_total",
    "salvo_output_tokens_total",
    "salvo_cost_usd_total",
    "salvo_race_wins_total",
    "salvo_hedges_total",
    "salvo_limiter_wait_seconds",
    "salvo_retries_total",
    "salvo_requests_in_flight",
    "salvo_proxy_overhead_seconds",
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def available() -> bool:
    return importlib.util.find_spec("prometheus_client") is not None


class Metrics:
    """The proxy's Prometheus series, in a registry of their own (one per app), or in the
    multiprocess directory when ``PROMETHEUS_MULTIPROC_DIR`` is set."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self._prom = prom
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        own = None if self.multiprocess else prom.CollectorRegistry(auto_describe=True)
        ml = ("model", "provider")
        self.requests = prom.Counter(
            "salvo_requests", "Proxied requests", [*ml, "status"], registry=own
        )
        self.duration = prom.Histogram(
            "salvo_request_duration_seconds",
            "Whole request, as the client saw it",
            ml,
            buckets=_LATENCY,
            registry=own,
        )
        self.upstream = prom.Histogram(
            "salvo_upstream_duration_seconds",
            "Time awaiting the upstream (limiter, provider, retries) until the response started",
            ml,
            buckets=_LATENCY,
            registry=own,
        )
        self.ttft = prom.Histogram(
            "salvo_time_to_first_token_seconds",
            "Streams: time to the first chunk from the upstream",
            ml,
            buckets=_LATENCY,
            registry=own,
        )
        self.input_tokens = prom.Counter(
            "salvo_input_tokens", "Prompt tokens the upstreams reported", ml, registry=own
        )
        self.output_tokens = prom.Counter(
            "salvo_output_tokens", "Completion tokens the upstreams reported", ml, registry=own
        )
        self.cost = prom.Counter(
            "salvo_cost_usd", "Cost of the calls with a known price", ml, registry=own
        )
        self.race_wins = prom.Counter(
            "salvo_race_wins", "Races won, by model", ["model"], registry=own
        )
        self.hedges = prom.Counter(
            "salvo_hedges", "Hedged requests started, by model", ["model"], registry=own
        )
        self.limiter_wait = prom.Histogram(
            "salvo_limiter_wait_seconds",
            "Time waiting for a key's rate limits, per request",
            ml,
            buckets=(0.0, *_LATENCY),
            registry=own,
        )
        self.retries = prom.Counter("salvo_retries", "Retried attempts", ml, registry=own)
        self.in_flight = prom.Gauge(
            "salvo_requests_in_flight",
            "Requests being served",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.overhead = prom.Histogram(
            "salvo_proxy_overhead_seconds",
            "The proxy's own time per request (x-salvo-overhead-ms)",
            buckets=_OVERHEAD,
            registry=own,
        )
        self._own = own
        # Labelled children, looked up once per (model, provider): the set is bounded (the
        # config's aliases, "other", "race", "gather", "none").
        self._series: dict[tuple[str, str], _Series] = {}

    def observe(self, rec: RequestRecord) -> None:
        key = (rec.model, rec.provider)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self, *key)
        status = rec.status
        count = series.requests.get(status)
        if count is None:
            count = series.requests[status] = self.requests.labels(*key, str(status))
        count.inc()
        series.duration.observe(rec.total)
        series.upstream.observe(rec.upstream)
        series.limiter_wait.observe(rec.limiter_wait)
        if rec.ttft is not None:
            series.ttft.observe(rec.ttft)
        if rec.input_tokens:
            series.input_tokens.inc(rec.input_tokens)
        if rec.output_tokens:
            series.output_tokens.inc(rec.output_tokens)
        if rec.cost:
            series.cost.inc(rec.cost)
        if rec.retries:
            series.retries.inc(rec.retries)
        for model in rec.race_wins:
            self.race_wins.labels(model).inc()
        for model in rec.hedges:
            self.hedges.labels(model).inc()
        if rec.overhead is not None:
            self.overhead.observe(rec.overhead)

    def exposition(self) -> tuple[bytes, str]:
        prom = self._prom
        registry = self._own
        if registry is None:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST

    def close(self) -> None:
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class _Series:
    """One (model, provider)'s labelled children."""

    __slots__ = (
        "cost",
        "duration",
        "input_tokens",
        "limiter_wait",
        "output_tokens",
        "requests",
        "retries",
        "ttft",
        "upstream",
    )

    def __init__(self, m: Metrics, model: str, provider: str) -> None:
        self.requests: dict[int, Any] = {}
        self.duration = m.duration.labels(model, provider)
        self.upstream = m.upstream.labels(model, provider)
        self.ttft = m.ttft.labels(model, provider)
        self.input_tokens = m.input_tokens.labels(model, provider)
        self.output_tokens = m.output_tokens.labels(model, provider)
        self.cost = m.cost.labels(model, provider)
        self.limiter_wait = m.limiter_wait.labels(model, provider)
        self.retries = m.retries.labels(model, provider)


def _flag(state: ProxyState, key: str) -> bool:
    value = state.config.setting(key, False)
    if not isinstance(value, bool):
        raise ConfigError(
            f"{state.config.source}: setting {key!r} must be true or false, not {value!r}."
        )
    return value


_ASK_USAGE: weakref.WeakKeyDictionary[ProxyState, bool] = weakref.WeakKeyDictionary()
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')


def ask_usage(top: dict[str, msgspec.Raw], state: ProxyState) -> None:
    """For a pass-through stream: ask the upstream for a final usage chunk (so that tokens
    and cost are known) when the config sets ``stream_include_usage: true`` and the client
    did not set ``stream_options`` itself. The client receives that chunk too."""
    if "stream_options" not in top and _ASK_USAGE.get(state):
        top["stream_options"] = _INCLUDE_USAGE


def install(app: web.Application, state: ProxyState) -> None:
    """Add ``GET /metrics`` and the record-keeping middleware (outermost) to the app."""
    import logging

    from ._log import ACCESS_LOG

    public = _flag(state, "metrics_public")
    _ASK_USAGE[state] = _flag(state, "stream_include_usage")
    metrics = Metrics() if available() else None
    aliases = state.aliases

    async def scrape(request: web.Request) -> web.StreamResponse:
        if metrics is None:
            return error_response(
                ProxyError(
                    501,
                    "This proxy has no /metrics: install the extra: pip install "
                    "'salvo-llm[metrics]'.",
                    code="metrics_unavailable",
                )
            )
        body, ctype = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": ctype})

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in _QUIET:
            if path == "/metrics" and public:
                return await scrape(request)
            return await handler(request)
        if metrics is None and not ACCESS_LOG.isEnabledFor(logging.INFO):
            return await handler(request)
        rec = RequestRecord(request.method, path, aliases)
        token = RECORD.set(rec)
        if metrics is not None:
            metrics.in_flight.inc()
        status = 499  # cancelled: the client went away before a response
        resp: web.StreamResponse | None = None
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            RECORD.reset(token)
            timer = request.get(TIMER)
            rec.finish(status, timer.upstream if timer else 0.0, _overhead(resp))
            if metrics is not None:
                metrics.in_flight.dec()
                metrics.observe(rec)
            emit(rec)

    app.middlewares.insert(0, observe)
    app.router.add_get("/metrics", scrape)

    async def cleanup(app: web.Application) -> None:
        if metrics is not None:
            metrics.close()

    app.on_cleanup.append(cleanup)


def _overhead(resp: web.StreamResponse | None) -> float | None:
    if resp is None:
        return None
    value = resp.headers.get(OVERHEAD_HEADER)
    try:
        return float(value) / 1000.0 if value else None
    except ValueError:
        return None


@contextlib.contextmanager
def shared_across_workers() -> Iterator[None]:
    """Around forking ``--workers N``: a fresh multiprocess directory for prometheus-client
    (unless one is already set, or the package is missing), removed afterwards."""
    if os.environ.get(MULTIPROC_ENV) or not available():
        yield
        return
    path = tempfile.mkdtemp(prefix="salvo-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
