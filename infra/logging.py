"""structlog setup: JSON lines off a terminal, readable on one; no personal data.

Log calls pass ids, types and counts only. As a second line of defence a processor
drops any key named like an identifying field of a child, wherever it is nested.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog

__all__ = ["PERSONAL_KEYS", "configure_logging", "strip_personal"]

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
        "data",
    }
)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[removed]" if k in PERSONAL_KEYS else _strip(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    return value


def strip_personal(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in PERSONAL_KEYS:
            event_dict[key] = "[removed]"
        else:
            event_dict[key] = _strip(event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog for this process (call once, from the composition root)."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            strip_personal,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
