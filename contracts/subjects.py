"""The subject scheme: ``lintas.<source>.<target>.<family>.<action>.<case_id>``.

Fixed arity, so ``*`` can stand for any one token. Subjects carry only agency ids, the
event type and the pseudonymous case id: never anything that identifies a child.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lintas.contracts.agencies import BROADCAST, is_agency_id
from lintas.contracts.errors import SubjectError
from lintas.contracts.ids import is_case_id

__all__ = [
    "ROOT",
    "Subject",
    "case_filter",
    "inbound_filters",
    "outbound_filter",
    "parse_subject",
    "subject_for",
]

ROOT = "lintas"


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


def case_filter(case_id: str) -> str:
    if not is_case_id(case_id):
        raise SubjectError(f"case id {case_id!r} is not a lintas case id")
    return f"{ROOT}.*.*.*.*.{case_id}"
