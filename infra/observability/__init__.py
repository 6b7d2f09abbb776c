"""lintas.infra.observability: logs and traces, with no personal data.

* :mod:`.logging`: structlog setup, JSON lines off a terminal;
* :mod:`.telemetry`: a process's tracer provider and the local span file;
* :mod:`.tracing`: spans for publishing and consuming, and the W3C trace context.
"""

# Imported for its effect: structlog's unconfigured default (a rich traceback with every
# frame's local variables) replaced by a safe baseline in any process using lintas.
from lintas.infra.observability import logging as _logging  # noqa: F401

__all__: list[str] = []
