"""Every subject lintas publishes on or filters by, built and picked apart here only.

Events: ``lintas.<source>.<target>.<family>.<action>.<case_id>``, fixed arity, so ``*`` can
stand for any one token. Beside them, the platform's own streams and services, named after
the event stream (``LINTAS`` unless configured): its quarantine
(``lintas_quarantine.<consumer>``), its checkpoints (``lintas_checkpoints.<stream>``), the
read service (``lintas_read.<agency>.<operation>``), and JetStream KV keys
(``$KV.<bucket>.<key>``). Subjects carry only agency ids, event types, consumer names and
pseudonymous case ids: never anything that identifies a child.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lintas.contracts.agencies import BROADCAST, is_agency_id
from lintas.contracts.errors import SubjectError
from lintas.contracts.ids import is_case_id

__all__ = [
    "EVERY_EVENT",
    "INTAKE_ROOT",
    "READ_ROOT",
    "ROOT",
    "EventFilter",
    "Subject",
    "addressing",
    "broadcast_filter",
    "case_filter",
    "checkpoints_filter",
    "checkpoints_subject",
    "inbound_filters",
    "intake_filter",
    "intake_partition_filter",
    "intake_partitioning",
    "intake_subject",
    "is_broadcast_subject",
    "kv_subject",
    "matches",
    "outbound_filter",
    "parse_filter",
    "parse_intake_subject",
    "parse_read_subject",
    "parse_subject",
    "quarantine_filter",
    "quarantine_subject",
    "read_subject",
    "subject_for",
]

ROOT = "lintas"
EVERY_EVENT = f"{ROOT}.>"
"""The filter of every event: the stream's subjects, the record's and the watchdog's."""
INTAKE_ROOT = "lintas_intake"
"""What agencies send for admission: ``lintas_intake.<agency>.<case_id>``; the intake stream
puts a partition token in front (``lintas_intake.<p>.<agency>.<case_id>``)."""
READ_ROOT = "lintas_read"
"""Requests to the platform's read service: ``lintas_read.<agency>.<operation>``."""


@dataclass(frozen=True, slots=True)
class Subject:
    source: str
    target: str
    event_type: str
    case_id: str

    def __str__(self) -> str:
        return subject_for(self.source, self.target, self.event_type, self.case_id)


_TYPE_TOKEN = re.compile(r"[a-z][a-z0-9_]*")


def _check_event_type(event_type: str) -> tuple[str, str]:
    family, dot, action = event_type.partition(".")
    if not (dot and _TYPE_TOKEN.fullmatch(family) and _TYPE_TOKEN.fullmatch(action)):
        raise SubjectError(
            f"event type {event_type!r} is not '<family>.<action>' in lowercase letters, "
            "digits and underscores"
        )
    return family, action


def subject_for(source: str, target: str, event_type: str, case_id: str) -> str:
    if not is_agency_id(source):
        raise SubjectError(f"source {source!r} is not an agency id")
    if target != BROADCAST and not is_agency_id(target):
        raise SubjectError(f"target {target!r} is neither an agency id nor {BROADCAST!r}")
    if target == source:
        raise SubjectError(f"agency {source!r} cannot address an event to itself")
    if not is_case_id(case_id):
        raise SubjectError(f"case id {case_id!r} is not a lintas case id")
    family, action = _check_event_type(event_type)
    return f"{ROOT}.{source}.{target}.{family}.{action}.{case_id}"


def parse_subject(subject: str) -> Subject:
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != ROOT:
        raise SubjectError(
            f"subject {subject!r} is not lintas.<src>.<tgt>.<family>.<action>.<case>"
        )
    _, source, target, family, action, case_id = parts
    event_type = f"{family}.{action}"
    subject_for(source, target, event_type, case_id)  # validates every token
    return Subject(source, target, event_type, case_id)


def inbound_filters(agency: str) -> list[str]:
    """What an agency's own consumer reads: addressed to it, and broadcasts."""
    if not is_agency_id(agency):
        raise SubjectError(f"{agency!r} is not an agency id")
    return [f"{ROOT}.*.{agency}.>", f"{ROOT}.*.{BROADCAST}.>"]


def outbound_filter(agency: str) -> str:
    """What an agency itself published (for its worklist: its own answers)."""
    if not is_agency_id(agency):
        raise SubjectError(f"{agency!r} is not an agency id")
    return f"{ROOT}.{agency}.>"


def case_filter(case_id: str, *, source: str = "*", target: str = "*") -> str:
    """The case's events (only those from ``source``, or to ``target``, if given)."""
    if not is_case_id(case_id):
        raise SubjectError(f"case id {case_id!r} is not a lintas case id")
    for who in (source, target):
        if who not in ("*", BROADCAST) and not is_agency_id(who):
            raise SubjectError(f"{who!r} is not an agency id")
    return f"{ROOT}.{source}.{target}.*.*.{case_id}"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """An event subject filter whose every token is exact or ``*`` (no ``>``)."""

    source: str
    target: str
    family: str
    action: str
    case_id: str


def parse_filter(subject_filter: str) -> EventFilter | None:
    """The tokens of an event filter of full arity with only whole-token ``*`` wildcards,
    or None (a ``>``, a partial wildcard, another arity or root)."""
    tokens = subject_filter.split(".")
    if len(tokens) != 6 or tokens[0] != ROOT:
        return None
    if any(t in ("", ">") or ("*" in t and t != "*") for t in tokens):
        return None
    return EventFilter(*tokens[1:])


def addressing(subject: str) -> tuple[str, str] | None:
    """The source and target tokens of an event subject, or None if it is none (the rest
    is not validated: for deciding who may see it)."""
    tokens = subject.split(".")
    return (tokens[1], tokens[2]) if len(tokens) >= 3 and tokens[0] == ROOT else None


def matches(subject_filter: str, subject: str) -> bool:
    """Whether ``subject`` is one of ``subject_filter``'s (whole-token ``*`` only)."""
    want, have = subject_filter.split("."), subject.split(".")
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


def broadcast_filter(case_id: str, event_type: str | None = None) -> str:
    """The case's broadcasts (of ``event_type`` only, if given): what every agency's consent
    gate folds."""
    if not is_case_id(case_id):
        raise SubjectError(f"case id {case_id!r} is not a lintas case id")
    what = "*.*" if event_type is None else ".".join(_check_event_type(event_type))
    return f"{ROOT}.*.{BROADCAST}.{what}.{case_id}"


def is_broadcast_subject(subject: str) -> bool:
    """Whether an event subject is addressed to everyone (without validating the rest)."""
    return subject.split(".")[2:3] == [BROADCAST]


def quarantine_subject(stream: str, consumer: str) -> str:
    """Where ``consumer`` quarantines a message of ``stream`` it could not apply."""
    return f"{stream.lower()}_quarantine.{consumer}"


def quarantine_filter(stream: str) -> str:
    return f"{stream.lower()}_quarantine.>"


def checkpoints_subject(stream: str) -> str:
    """Where the checkpoints of ``stream`` are published, one after the other."""
    return f"{stream.lower()}_checkpoints.{stream}"


def checkpoints_filter(stream: str) -> str:
    return f"{stream.lower()}_checkpoints.>"


def read_subject(agency: str, operation: str) -> str:
    """An agency's request to the read service (only that agency may publish there)."""
    return f"{READ_ROOT}.{agency}.{operation}"


def parse_read_subject(subject: str) -> tuple[str, str]:
    """The agency and the operation of a read service request (empty when absent)."""
    _, agency, operation = [*subject.split("."), "", ""][:3]
    return agency, operation


def kv_subject(bucket: str, key: str) -> str:
    """A JetStream KV key's subject."""
    return f"$KV.{bucket}.{key}"


def intake_subject(agency: str, case_id: str) -> str:
    """Where ``agency`` sends an event of ``case_id`` for admission."""
    if not is_agency_id(agency) or not is_case_id(case_id):
        raise SubjectError(f"no intake subject for agency {agency!r} and case {case_id!r}")
    return f"{INTAKE_ROOT}.{agency}.{case_id}"


def parse_intake_subject(subject: str) -> tuple[str, str] | None:
    """(agency, case id) of an intake subject, whichever partition token the stream put
    in front of them; None if it is not one."""
    tokens = subject.split(".")
    if len(tokens) < 3 or tokens[0] != INTAKE_ROOT:
        return None
    agency, case_id = tokens[-2], tokens[-1]
    return (agency, case_id) if is_agency_id(agency) and is_case_id(case_id) else None


def intake_filter() -> str:
    """Every intake subject, as agencies send them."""
    return f"{INTAKE_ROOT}.*.*"


def intake_partitioning(partitions: int) -> str:
    """The intake stream's subject transform: a partition token, from the case id, in front."""
    return (
        f"{INTAKE_ROOT}.{{{{partition({partitions},2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
    )


def intake_partition_filter(partition: int) -> str:
    """One partition's intake subjects (after the stream's transform)."""
    return f"{INTAKE_ROOT}.{partition}.*.*"
