"""OpenTelemetry through ``opentelemetry-api`` alone: is an SDK configured, and the instruments.

salvo never configures OpenTelemetry: the application installs an SDK (a ``TracerProvider``
and/or a ``MeterProvider``) and its exporters. :func:`current` answers, per call, whether one
is installed; without the ``opentelemetry-api`` package, or with the API's default (proxy or
no-op) providers, it returns None and salvo records nothing. The API is imported on the first
call that asks, never at ``import salvo``.

Names follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``, ``server.*``,
``error.type``); salvo's own are under ``salvo.*``.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.trace import Status, Tracer, TracerProvider

__all__ = ["PROVIDER_NAMES", "Otel", "current", "provider_name", "server_of", "use_providers"]

#: salvo's provider names -> ``gen_ai.provider.name`` values of the semantic conventions.
PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "cohere": "cohere",
    "groq": "groq",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "bedrock": "aws.bedrock",
}

# Bucket boundaries the GenAI conventions advise for these two histograms.
_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


_SERVERS: dict[str, tuple[str, int]] = {}


def server_of(api_base: str) -> tuple[str, int]:
    """``(server.address, server.port)`` of a base URL (cached: one per deployment)."""
    got = _SERVERS.get(api_base)
    if got is None:
        parts = urlsplit(api_base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        got = (parts.hostname or "", port)
        if len(_SERVERS) < 1024:
            _SERVERS[api_base] = got
    return got


class Otel:
    """The tracer and the instruments of one (tracer provider, meter provider) pair; either
    half may be missing (traces without metrics, or the reverse)."""

    __slots__ = (
        "client_kind",
        "cost",
        "duration",
        "hedges",
        "limiter_wait",
        "races_won",
        "retries",
        "tokens",
        "tracer",
    )

    def __init__(self, tracer: Tracer | None, meter_provider: MeterProvider | None) -> None:
        from opentelemetry.trace import SpanKind

        self.tracer = tracer
        self.client_kind = SpanKind.CLIENT
        self.duration: Histogram | None = None
        self.tokens: Histogram | None = None
        self.limiter_wait: Histogram | None = None
        self.races_won: Counter | None = None
        self.hedges: Counter | None = None
        self.retries: Counter | None = None
        self.cost: Counter | None = None
        if meter_provider is None:
            return
        meter = meter_provider.get_meter("salvo", _version())
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.limiter_wait = meter.create_histogram(
            "salvo.limiter.wait.duration",
            unit="s",
            description="Time a call waited for its key's rate limits",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.races_won = meter.create_counter(
            "salvo.race.wins", unit="{race}", description="Races won, by model"
        )
        self.hedges = meter.create_counter(
            "salvo.hedges", unit="{request}", description="Hedged requests started"
        )
        self.retries = meter.create_counter(
            "salvo.retries", unit="{retry}", description="Retried attempts"
        )
        self.cost = meter.create_counter(
            "salvo.cost", unit="USD", description="Cost of the calls that reported usage"
        )

    @staticmethod
    def error_status(description: str) -> Status:
        from opentelemetry.trace import Status, StatusCode

        return Status(StatusCode.ERROR, description)


def _version() -> str:
    from . import __version__

    return __version__


class _Probe:
    """What the API looked like last time; rebuilt only when a global provider changes."""

    __slots__ = (
        "last",
        "meter_provider",
        "metrics_mod",
        "override",
        "trace_mod",
        "tracer_provider",
    )

    def __init__(self) -> None:
        # Readers of the global tracer and meter providers, once the API is imported; False:
        # the API is not installed.
        self.trace_mod: Any = None
        self.metrics_mod: Any = None
        self.tracer_provider: Any = None
        self.meter_provider: Any = None
        self.last: Otel | None = None
        self.override: Otel | None = None


_PROBE = _Probe()


def _import() -> bool:
    p = _PROBE
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        p.trace_mod = False
        return False
    # A provider named by environment variable is only loaded by the getters: load it now.
    from opentelemetry.environment_variables import (
        OTEL_PYTHON_METER_PROVIDER,
        OTEL_PYTHON_TRACER_PROVIDER,
    )

    if OTEL_PYTHON_TRACER_PROVIDER in os.environ:
        trace.get_tracer_provider()
    if OTEL_PYTHON_METER_PROVIDER in os.environ:
        metrics.get_meter_provider()
    p.trace_mod = _reader(
        trace, "_TRACER_PROVIDER", trace.get_tracer_provider, "ProxyTracerProvider"
    )
    metrics_internal: Any = None
    try:
        import opentelemetry.metrics._internal as metrics_internal
    except ImportError:  # pragma: no cover - a future API without it
        pass
    p.metrics_mod = _reader(
        metrics_internal, "_METER_PROVIDER", metrics.get_meter_provider, "_ProxyMeterProvider"
    )
    return True


def _reader(module: Any, attr: str, getter: Any, proxy_name: str) -> Any:
    """How to read the global provider (None until one is set): the API module's global
    itself, two attribute reads a call; should a future API move it, the public getter, with
    its default proxy provider counted as none."""
    if module is not None and hasattr(module, attr):
        return functools.partial(getattr, module, attr)

    def public() -> Any:
        provider = getter()
        return None if type(provider).__name__ == proxy_name else provider

    return public


def current() -> Otel | None:
    """The live instrumentation, or None when there is nothing to report to (the common,
    cheap case: two reads of the API's globals once it is imported)."""
    p = _PROBE
    if p.override is not None:
        return p.override
    read_tp = p.trace_mod
    if not read_tp:
        if read_tp is False or not _import():
            return None
        read_tp = p.trace_mod
    tp = read_tp()
    mp = p.metrics_mod()
    if tp is p.tracer_provider and mp is p.meter_provider:
        return p.last
    p.tracer_provider, p.meter_provider = tp, mp
    p.last = _build(tp, mp)
    return p.last


def _build(tp: Any, mp: Any) -> Otel | None:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    if tp is not None and isinstance(tp, NoOpTracerProvider):
        tp = None
    if mp is not None and isinstance(mp, NoOpMeterProvider):
        mp = None
    if tp is None and mp is None:
        return None
    tracer = tp.get_tracer("salvo", _version()) if tp is not None else None
    return Otel(tracer, mp)


def use_providers(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Report to these providers instead of the global ones (both None: back to the global
    ones). For tests and for applications that keep their providers out of the globals."""
    if tracer_provider is None and meter_provider is None:
        _PROBE.override = None
        return
    tracer = tracer_provider.get_tracer("salvo", _version()) if tracer_provider else None
    _PROBE.override = Otel(tracer, meter_provider)
