"""The tracer provider of a lintas process, and the local span file.

Built once, in a composition root (the CLI, the demo, an app factory), and passed down as
``tracer_provider``; nothing here runs at import time. Spans go to an OpenTelemetry
collector over OTLP/HTTP when ``LINTAS_OTLP_ENDPOINT`` is set (Jaeger, Tempo, any
collector), else to the span file ``<data_dir>/traces/spans.jsonl``, which ``lintas trace``
reads. Call :meth:`TracerProvider.shutdown` before the process ends: spans are exported
in batches, in the background, and the last batch is written then.

The span file holds one JSON object per line and span (format in docs/OBSERVABILITY.md).
Several processes on one data directory append to it under an ``flock``, one export at a
time; past :data:`SPAN_FILE_MAX_BYTES` it is renamed to ``spans.jsonl.1`` (replacing an
older one) and a new file begun.

Errors: none of its own. A span file that cannot be written fails the export, which the
SDK logs; the code being traced never sees it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import NoOpTracerProvider, format_span_id, format_trace_id

from lintas.infra.settings import Settings

__all__ = [
    "SPAN_FILE_MAX_BYTES",
    "SpanFileExporter",
    "TracingOff",
    "configure_tracing",
    "otlp_endpoint",
    "otlp_traces_url",
    "read_span_file",
    "span_record",
    "traces_exporters",
]

SPAN_FILE_MAX_BYTES: Final = 64 * 1024 * 1024


def _lintas_version() -> str:
    try:
        return version("lintas")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as a line of the span file: flat, with OTLP's names where it has one."""
    context = span.get_span_context()
    assert context is not None
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
        "parent_span_id": format_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status_code": span.status.status_code.name,
        "status_message": span.status.description,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": format_trace_id(link.context.trace_id),
                "span_id": format_span_id(link.context.span_id),
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "service": span.resource.attributes.get("service.name"),
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
    }


def _jsonable(value: Any) -> Any:
    # Attribute values are str, bool, int, float or sequences of them.
    return list(value) if isinstance(value, tuple) else value


class SpanFileExporter(SpanExporter):
    """Appends finished spans to a JSON lines file, safe for several processes at once."""

    def __init__(self, path: Path, *, max_bytes: int = SPAN_FILE_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        lines = "".join(
            json.dumps(span_record(span), default=_jsonable, separators=(",", ":")) + "\n"
            for span in spans
        ).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size + len(lines) > self.max_bytes:
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            try:
                os.write(fd, lines)
            finally:
                os.close(fd)
        finally:
            os.close(lock)  # releases the flock
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing held open between exports."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def read_span_file(path: Path, *, containing: str | None = None) -> Iterator[dict[str, Any]]:
    """Every span in ``path`` and its rotated predecessor, older first; bad lines skipped
    (a line cut short by a crash, say). With ``containing``, only lines that contain it
    are parsed (a quick filter: check the fields you mean)."""
    needle = containing.encode() if containing else None
    for part in (path.with_name(path.name + ".1"), path):
        try:
            handle = part.open("rb")
        except FileNotFoundError:
            continue
        with handle:
            for line in handle:
                if needle is not None and needle not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record


def otlp_traces_url(endpoint: str) -> str:
    """The collector's traces URL: a bare ``http://host:4318`` gets OTLP's ``/v1/traces``
    (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` would); a URL with a path is used as it is."""
    if urlsplit(endpoint).path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


def otlp_endpoint(settings: Settings) -> str | None:
    """The collector's traces URL, if one is configured: ``LINTAS_OTLP_ENDPOINT`` (lintas's
    own, first), ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as it is), or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (with ``/v1/traces`` added, as OpenTelemetry says)."""
    if settings.otlp_endpoint:
        return otlp_traces_url(settings.otlp_endpoint)
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return None


def traces_exporters(settings: Settings) -> list[str]:
    """Where this process's spans go: ``otlp``, ``console``, ``file`` (the span file);
    empty: tracing is off (``OTEL_TRACES_EXPORTER=none``, ``OTEL_SDK_DISABLED=true``)."""
    if settings.otel_sdk_disabled:
        return []
    if settings.otel_traces_exporter is not None:
        return [name for name in settings.otel_traces_exporter.split(",") if name != "none"]
    return ["otlp"] if otlp_endpoint(settings) else ["file"]


class TracingOff(NoOpTracerProvider):
    """The provider of a process whose tracing is off: its tracers make no span, and the
    consumer edge skips even a span's attributes (:func:`~.tracing.process_span`)."""

    def shutdown(self) -> None:
        """Nothing to write."""


def _exporter(name: str, settings: Settings) -> SpanExporter:
    if name == "otlp":
        # Imported here: an agency system that embeds lintas and exports elsewhere never
        # loads the OTLP stack. OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, ... it reads itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # No endpoint at all (OTEL_TRACES_EXPORTER=otlp alone): OpenTelemetry's default.
        return OTLPSpanExporter(endpoint=otlp_endpoint(settings) or _OTLP_DEFAULT)
    if name == "console":
        return ConsoleSpanExporter()
    return SpanFileExporter(settings.span_file)


_OTLP_DEFAULT: Final = "http://localhost:4318/v1/traces"


def configure_tracing(
    settings: Settings, service: str, *, exporter: SpanExporter | None = None
) -> TracerProvider | TracingOff:
    """A tracer provider for this process (``service`` names it, e.g. ``lintas-up``, unless
    ``OTEL_SERVICE_NAME`` does), exporting to ``exporter``, else as configured
    (:func:`traces_exporters`); :class:`TracingOff` when tracing is off."""
    exporters = [exporter] if exporter is not None else []
    if exporter is None:
        names = traces_exporters(settings)
        if not names:
            return TracingOff()
        exporters = [_exporter(name, settings) for name in names]
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.otel_service_name or service,
                "service.namespace": "lintas",
                "service.version": _lintas_version(),
            }
        )
    )
    for each in exporters:
        provider.add_span_processor(BatchSpanProcessor(each))
    return provider
