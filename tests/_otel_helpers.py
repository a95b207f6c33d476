"""OpenTelemetry SDK providers with in-memory exporters, for the tests that check salvo's spans
and metrics (the ``otel`` fixture in conftest.py installs one for salvo)."""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Started(SpanProcessor):
    """Counts the spans started, so that a test can prove each one also ended."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.ids.append(span.context.span_id)


class Otel:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.started = Started()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(self.started)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out
