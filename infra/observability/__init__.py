"""lintas.infra.observability: logs and traces, with no personal data.

* :mod:`.logging`: structlog setup, JSON lines off a terminal;
* :mod:`.telemetry`: a process's tracer provider and the local span file;
* :mod:`.tracing`: spans for publishing and consuming, and the W3C trace context.
"""

__all__: list[str] = []
