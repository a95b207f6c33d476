"""The proxy's record of each request it serves, and the one log line it becomes.

A :class:`RequestRecord` is filled while a request is served: the proxy sets it as
``salvo._observe.RECORD`` for the request's task (and the race or gather tasks it starts), so
each upstream call reports its tokens, cost, retries, limiter waits and time to first chunk
into it. When the response is done it becomes one INFO line on the ``salvo.proxy.access``
logger (method, route, model, provider, status, upstream and total ms, tokens, cost) and, when
``/metrics`` is on, Prometheus samples. Never a key, never message content: the record has no
field for either.

``salvo serve --log-format json`` writes every ``salvo`` log line as one JSON object, with the
record's fields as top-level keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._observe import CallTrace

__all__ = ["ACCESS_LOG", "JSONFormatter", "RequestRecord", "configure", "emit"]

ACCESS_LOG = logging.getLogger("salvo.proxy.access")
_perf = time.perf_counter


class RequestRecord:
    """What one proxied request did. ``model`` is the alias the client asked for (``other``
    for a model outside the config; a race is labelled by its winner, a gather ``gather``)."""

    __slots__ = (
        "aliases",
        "cost",
        "hedges",
        "input_tokens",
        "limiter_wait",
        "method",
        "model",
        "output_tokens",
        "overhead",
        "provider",
        "race_wins",
        "retries",
        "route",
        "started",
        "status",
        "total",
        "ttft",
        "upstream",
    )

    def __init__(self, method: str, route: str, aliases: frozenset[str]) -> None:
        self.method = method
        self.route = route
        self.aliases = aliases
        self.started = _perf()
        self.model = "none"
        self.provider = "none"
        self.status = 0
        self.total = 0.0
        self.upstream = 0.0
        self.overhead: float | None = None
        self.ttft: float | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.retries = 0
        self.limiter_wait = 0.0
        self.race_wins: list[str] = []
        self.hedges: list[str] = []

    def label(self, name: str) -> str:
        return name if name in self.aliases else "other"

    # -- the Recorder protocol (salvo._observe) -------------------------------------------

    def call_ended(self, trace: CallTrace) -> None:
        if trace.input_tokens:
            self.input_tokens += trace.input_tokens
        if trace.output_tokens:
            self.output_tokens += trace.output_tokens
        if trace.cost:
            self.cost += trace.cost
        if trace.fan is None or trace.fan.kind == "batch":
            self.model = self.label(trace.dep.name)
            self.provider = trace.dep.provider
            if trace.ttfc is not None:
                self.ttft = trace.ttfc
        elif trace.fan.kind == "gather":
            self.model = self.provider = "gather"
        elif not self.race_wins:  # a race (or first_k) that no one has won yet
            self.model = "race"

    def retried(self) -> None:
        self.retries += 1

    def waited(self, seconds: float) -> None:
        self.limiter_wait += seconds

    def race_won(self, trace: CallTrace) -> None:
        """A race's winner labels the request (its first winner, for first_k)."""
        label = self.label(trace.dep.name)
        self.race_wins.append(label)
        if len(self.race_wins) == 1:
            self.model, self.provider = label, trace.dep.provider
            self.ttft = trace.ttfc

    def hedged(self, model: str) -> None:
        self.hedges.append(self.label(model))

    # -- the end -------------------------------------------------------------------------------

    def finish(self, status: int, upstream: float, overhead: float | None) -> None:
        self.status = status
        self.total = _perf() - self.started
        self.upstream = upstream
        self.overhead = overhead

    def fields(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "route": self.route,
            "model": self.model,
            "provider": self.provider,
            "status": self.status,
            "upstream_ms": round(self.upstream * 1000.0, 3),
            "total_ms": round(self.total * 1000.0, 3),
            "ttft_ms": None if self.ttft is None else round(self.ttft * 1000.0, 3),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost, 8),
            "retries": self.retries,
            "limiter_wait_ms": round(self.limiter_wait * 1000.0, 3),
        }


def emit(record: RequestRecord) -> None:
    """The request's access line, at INFO."""
    if not ACCESS_LOG.isEnabledFor(logging.INFO):
        return
    f = record.fields()
    ACCESS_LOG.info(
        "%s %s model=%s provider=%s status=%d upstream_ms=%.1f total_ms=%.1f "
        "tokens_in=%d tokens_out=%d cost_usd=%.6f",
        f["method"],
        f["route"],
        f["model"],
        f["provider"],
        f["status"],
        f["upstream_ms"],
        f["total_ms"],
        f["input_tokens"],
        f["output_tokens"],
        f["cost_usd"],
        extra={"salvo_request": f},
    )


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and a request's fields (or a
    retry's ``provider``/``model``/``status_code``/``attempt``) as keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "salvo_request", None)
        if isinstance(request, dict):
            out.update(request)
        for key in ("provider", "model", "status_code", "attempt"):
            value = getattr(record, key, None)
            if value is not None and key not in out:
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


JSONFormatter.converter = time.gmtime


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(fmt: str = "text", level: int | str = logging.INFO) -> None:
    """``salvo serve``'s one logging set-up: the ``salvo`` and ``aiohttp`` loggers to stderr
    from ``level``, one line a record, in ``fmt`` (``text`` or ``json``). Called again, it
    replaces its handler rather than adding one (the root logger is left alone)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    # salvo serve is the application, and an access line per request is on its hot path: the
    # records skip what no line shows (the caller's frame, thread and process names), as the
    # logging docs' "Optimization" section suggests. About a fifth of a request's CPU, measured.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in ("salvo", "aiohttp"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
            logger.removeHandler(old)
        handler = _StderrHandler()
        if fmt == "json":
            handler.setFormatter(JSONFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
        logger.addHandler(handler)
        logger.setLevel(level)
