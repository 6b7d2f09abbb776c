"""structlog setup: JSON lines off a terminal, readable on one; no personal data.

Every line carries, where known, ``trace_id`` and ``span_id`` (of the current span),
``agency``, ``event_type`` and ``case_id`` (bound as context variables by the consumer
edge and the publisher), beside ``timestamp``, ``level``, ``logger`` and ``event``.
Libraries' standard-library logging (FastStream, nats-py, the OpenTelemetry SDK) goes
through the same processors, so it is rendered alike and filtered alike.

Log calls pass ids, types and counts only. As a second line of defence
:func:`strip_personal` replaces the value of any key named like an identifying field of a
child, wherever it is nested, and :func:`safe_exceptions` renders a logged exception as
its frames and types, keeping the message only of lintas' own errors (written to name
fields, never to quote values): another library's message may quote its input (pydantic's
does), and a child's name with it. No renderer prints local variables: not even before
:func:`configure_logging` is called (a spawned worker, a test, lintas used as a library),
where structlog's own default would draw a rich traceback with every frame's locals.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import IO, Any, Final

import structlog
from opentelemetry import trace

from lintas.contracts.errors import LintasError

__all__ = [
    "PERSONAL_KEYS",
    "add_trace_context",
    "configure_logging",
    "reset_logging",
    "safe_exceptions",
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


WITHHELD: Final = "[message withheld: it may quote data]"


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    return sys.exc_info()[1] if exc_info else None


def _render(exc: BaseException, seen: set[int]) -> list[str]:
    seen.add(id(exc))
    lines: list[str] = []
    if exc.__cause__ is not None and id(exc.__cause__) not in seen:
        lines += _render(exc.__cause__, seen)
        lines.append("\nThe above exception was the direct cause of the following:\n")
    elif (
        exc.__context__ is not None
        and not exc.__suppress_context__
        and id(exc.__context__) not in seen
    ):
        lines += _render(exc.__context__, seen)
        lines.append("\nDuring handling of the above exception, another one occurred:\n")
    lines.append("Traceback (most recent call last):\n")
    lines += traceback.format_list(traceback.extract_tb(exc.__traceback__))
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    lines.append(f"{kind}: {exc if isinstance(exc, LintasError) else WITHHELD}\n")
    return lines


def safe_exceptions(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace ``exc_info`` with ``exception``: the traceback's frames (code, not values)
    and each exception's type, with its message only if it is a :class:`LintasError`."""
    exc = _exception(event_dict.pop("exc_info", None))
    if exc is not None:
        event_dict["exception"] = "".join(_render(exc, set())).rstrip("\n")
        message = event_dict.get("event")
        if isinstance(message, str):
            # A library's own line may quote the exception too (asyncio's "Task exception
            # was never retrieved" holds the task's repr, and with it the exception's).
            event_dict["event"] = _without(message, exc)
    return event_dict


def _without(message: str, exc: BaseException) -> str:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not isinstance(current, LintasError):
            for quoted in (repr(current), str(current)):
                if len(quoted) >= 4:  # shorter, it would garble the line more than hide
                    message = message.replace(quoted, WITHHELD)
        current = current.__cause__ or current.__context__
    return message


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
    safe_exceptions,
    strip_personal,
]


def _console(*, colors: bool) -> structlog.dev.ConsoleRenderer:
    # safe_exceptions has made any traceback a string already; were one to reach the
    # renderer, its formatter must not print local variables (structlog's default does).
    return structlog.dev.ConsoleRenderer(
        colors=colors,
        exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
    )


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, stream: IO[str] | None = None
) -> None:
    """Configure logging for this process (call once, from the composition root).

    ``json`` None: JSON lines unless ``stream`` (default: standard error) is a terminal.
    Calling it again replaces the earlier configuration.
    """
    target = stream if stream is not None else sys.stderr
    as_json = (not target.isatty()) if json is None else json
    rendering: list[Any] = (
        [structlog.processors.JSONRenderer()] if as_json else [_console(colors=target.isatty())]
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
    """Undo :func:`configure_logging` (for tests that configure it more than once): back to
    the unconfigured baseline, not structlog's defaults."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)
    _baseline()


def _baseline() -> None:
    """Console lines on standard error, through the same exception and personal-data
    processors, for a process that has not called :func:`configure_logging`."""
    structlog.reset_defaults()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_trace_context,
            safe_exceptions,
            strip_personal,
            _console(colors=False),
        ],
        # sys.stderr as it is when a logger is made (a test's capture, a redirection).
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )


if not structlog.is_configured():
    _baseline()
