"""Spans captured in memory, for tests (the exporter OpenTelemetry's SDK ships for this)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class SpanCapture:
    """A tracer provider whose finished spans are kept in memory, exported one by one."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def by_id(self) -> dict[int, ReadableSpan]:
        spans = {}
        for span in self.spans():
            assert span.context is not None
            spans[span.context.span_id] = span
        return spans

    def of_case(self, case_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if (s.attributes or {}).get("lintas.case.id") == case_id]
