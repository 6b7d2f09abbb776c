"""structlog setup: JSON lines off a terminal, readable on one; no personal data.

Every line carries, where known, ``trace_id`` and ``span_id`` (of the current span),
``agency``, ``event_type`` and ``case_id`` (bound as context variables by the consumer
edge and the publisher), beside ``timestamp``, ``level``, ``logger`` and ``event``.
Libraries' standard-library logging (FastStream, nats-py, the OpenTelemetry SDK) goes
through the same processors, so it is rendered alike and filtered alike.

Log calls pass ids, types and counts only. As a second line of defence
:func:`strip_personal` replaces the value of any key named like an identifying field of a
child, wherever it is nested.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any, Final

import structlog
from opentelemetry import trace

__all__ = [
    "PERSONAL_KEYS",
    "add_trace_context",
    "configure_logging",
    "reset_logging",
    "strip_personal",
]

PERSONAL_KEYS: Final = frozenset(
    {
        "child",
        "full_name",
        "birth_date",
        "mother_name",
        "father_name",
        "address",
        "number",
        "notes",
        "summary",
        "recommendation",
        "data",
    }
)

REMOVED: Final = "[removed]"


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REMOVED if k in PERSONAL_KEYS else _strip(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    return value


def strip_personal(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in PERSONAL_KEYS:
            event_dict[key] = REMOVED
        else:
            event_dict[key] = _strip(event_dict[key])
    return event_dict


def add_trace_context(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``trace_id`` and ``span_id`` of the span current where the line was logged."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the given stream, else to whatever ``sys.stderr`` is when a line is
    written (a test's capture, a redirected stream), not what it was at configuration."""

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        if self._fixed is None:
            self.stream = sys.stderr
        super().emit(record)


_SHARED: Final[list[Any]] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_trace_context,
    strip_personal,
]


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, stream: IO[str] | None = None
) -> None:
    """Configure logging for this process (call once, from the composition root).

    ``json`` None: JSON lines unless ``stream`` (default: standard error) is a terminal.
    Calling it again replaces the earlier configuration.
    """
    target = stream if stream is not None else sys.stderr
    as_json = (not target.isatty()) if json is None else json
    # JSON gets the traceback as a string; the console renderer draws it itself.
    rendering: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if as_json
        else [structlog.dev.ConsoleRenderer(colors=target.isatty())]
    )
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    reset_logging()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.getLevelName(level))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo :func:`configure_logging` (for tests that configure it more than once)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()
