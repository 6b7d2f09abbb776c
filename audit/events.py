"""One event of the log as stored, and how a finding names it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["EventRef", "StoredEvent", "case_of_subject", "event_time", "parse_instant"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A message of the stream exactly as stored: its body is the whole envelope."""

    seq: int
    subject: str
    body: bytes
    stored: datetime | None = None
    """When the stream stored it (``Nats-Time-Stamp``): informational, not signed."""

    def document(self) -> dict[str, Any] | None:
        """The body parsed as a JSON object, or None if it is not one."""
        try:
            doc = json.loads(self.body)
        except (ValueError, RecursionError, TypeError):
            return None
        return doc if isinstance(doc, dict) else None

    def ref(self) -> EventRef:
        """Whatever can be said about which event this is, even when it does not decode."""
        doc = self.document() or {}
        event_id = doc.get("id") if isinstance(doc.get("id"), str) else None
        case_id = doc.get("subject") if isinstance(doc.get("subject"), str) else None
        if case_id is None and self.subject.count(".") == 5:
            case_id = self.subject.rsplit(".", 1)[1] or None
        return EventRef(self.seq, event_id, case_id)


@dataclass(frozen=True, slots=True)
class EventRef:
    seq: int | None
    event_id: str | None
    case_id: str | None

    def __str__(self) -> str:
        return ", ".join(
            [
                f"stream seq {self.seq if self.seq is not None else '?'}",
                f"event {self.event_id or '?'}",
                f"case {self.case_id or '?'}",
            ]
        )


def case_of_subject(subject: str) -> str | None:
    """The case a message's subject files it under (``lintas.*.*.*.*.<case>``): where a
    publisher's head read finds it, event or not."""
    tokens = subject.split(".")
    return (tokens[5] or None) if len(tokens) == 6 else None


def event_time(doc: dict[str, Any] | None) -> datetime | None:
    """The envelope's ``time`` (event time, as the agency signed it), if it can be read."""
    if doc is None or not isinstance(doc.get("time"), str):
        return None
    try:
        value = datetime.fromisoformat(doc["time"])
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time with its zone (``2025-03-01T08:00:00+07:00``, ``...Z``).

    A time without a zone is refused rather than guessed: auditors in Jakarta and Jeddah
    must mean the same instant.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +07:00")
    return value
