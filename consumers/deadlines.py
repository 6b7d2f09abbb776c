"""Deadlines of hand-offs, and the notices the watchdog sends when they pass. Pure.

The watchdog tracks three kinds of hand-off: referrals, document requests and
rehabilitation hand-offs. Each is due when its request says (``due``) or, when it says
nothing, a per-kind default after it was requested (:class:`DeadlinePolicy`, from the
settings). It is *answered* once the agency asked accepts, reports progress, completes or
rejects it, or the requester revokes it; a closed case answers everything still open in it.

A hand-off still unanswered at its due date gets one overdue notice, to the agency asked
(it owes the answer; its worklist marks the item overdue). Still unanswered at the second
deadline (``due`` + the per-kind escalation delay), and only after its overdue notice, it
is escalated to KPAI. :func:`apply` folds events into a :class:`Deadline`; :func:`actions`
says what is due at a given time; :func:`overdue_notice` and :func:`escalation` build the
events, with ids derived from the hand-off so that every replica builds the same ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from lintas.contracts import Event, derived_uuid7
from lintas.contracts.families.oversight import OversightEscalatedV3
from lintas.contracts.handoffs import Step, classify

__all__ = [
    "KPAI",
    "NOTICES",
    "TRACKED",
    "Action",
    "Deadline",
    "DeadlinePolicy",
    "Key",
    "Notice",
    "actions",
    "apply",
    "close",
    "escalated_key",
    "escalation",
    "escalation_id",
    "overdue_notice",
]

KPAI: Final = "kpai"

TRACKED: Final[frozenset[str]] = frozenset({"referral", "document", "rehabilitation"})

# The overdue notice of each kind, and the field its request id goes in.
NOTICES: Final[dict[str, tuple[str, str]]] = {
    "referral": ("referral.overdue", "referral_id"),
    "document": ("document.overdue", "request_id"),
    "rehabilitation": ("rehabilitation.handoff_overdue", "handoff_id"),
}

Key = tuple[str, str, str]  # case id, requester, request id


@dataclass(frozen=True, slots=True)
class DeadlinePolicy:
    """Per kind: how long the agency asked has by default, and how long after its due
    date KPAI is told."""

    due_after: Mapping[str, timedelta]
    escalate_after: Mapping[str, timedelta]

    @classmethod
    def from_settings(cls, settings: Any) -> DeadlinePolicy:
        return cls(
            due_after={kind: getattr(settings, f"due_{kind}") for kind in TRACKED},
            escalate_after={kind: getattr(settings, f"escalate_{kind}") for kind in TRACKED},
        )


class Deadline(BaseModel):
    """One tracked hand-off, as the watchdog sees it."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    requester: str
    request_id: str
    handoff: str
    what: str | None = None
    asked: str
    requested_at: datetime
    due: datetime
    escalate_at: datetime
    status: Literal["open", "answered", "closed"] = "open"
    answered_at: datetime | None = None
    overdue_seq: int | None = None  # stream sequence of its overdue notice, once seen
    escalated_seq: int | None = None  # stream sequence of its escalation, once seen

    @property
    def key(self) -> Key:
        return (self.case_id, self.requester, self.request_id)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _opened(event: Event, step: Step, policy: DeadlinePolicy) -> Deadline:
    kind = step.handoff or ""
    given = getattr(event.data, "due", None)
    due = _utc(given) if given is not None else _utc(event.time) + policy.due_after[kind]
    return Deadline(
        case_id=event.case_id,
        requester=step.requester,
        request_id=step.request_id,
        handoff=kind,
        what=step.what,
        asked=step.asked or "",
        requested_at=_utc(event.time),
        due=due,
        escalate_at=due + policy.escalate_after[kind],
    )


def escalated_key(event: Event) -> Key | None:
    """The hand-off an escalation is about, when it names one."""
    data = event.data
    if isinstance(data, OversightEscalatedV3) and data.overdue is not None:
        return (event.case_id, data.overdue.requester, data.overdue.request_id)
    return None


def apply(item: Deadline | None, event: Event, seq: int, policy: DeadlinePolicy) -> Deadline | None:
    """Fold the event at stream sequence ``seq`` into the deadline it touches (if it does:
    the caller finds the item by :func:`escalated_key` or ``classify(event)``)."""
    if item is not None and escalated_key(event) == item.key:
        return (
            item
            if item.escalated_seq is not None
            else item.model_copy(update={"escalated_seq": seq})
        )
    step = classify(event)
    if step is None:
        return item
    if step.kind == "requested":
        if item is not None or step.handoff not in TRACKED:
            return item  # the first request sets the deadline; a repeat changes nothing
        return _opened(event, step, policy)
    if item is None or step.asked != item.asked:
        return item  # only the agency asked answers (or is told of a revocation)
    if step.kind == "overdue":
        return (
            item if item.overdue_seq is not None else item.model_copy(update={"overdue_seq": seq})
        )
    if item.status != "open":
        return item
    return item.model_copy(update={"status": "answered", "answered_at": _utc(event.time)})


def close(item: Deadline, event: Event) -> Deadline:
    """The case was closed: nothing in it is awaited any more."""
    if item.status != "open":
        return item
    return item.model_copy(update={"status": "closed", "answered_at": _utc(event.time)})


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["overdue", "escalate"]
    item: Deadline


def actions(items: Iterable[Deadline], now: datetime) -> list[Action]:
    """What is due at ``now``: an overdue notice for each open hand-off past its due date
    that has none, an escalation for each past its second deadline that has had its
    notice but no escalation. Oldest deadlines first."""
    found: list[tuple[datetime, Action]] = []
    for item in items:
        if item.status != "open":
            continue
        if item.overdue_seq is None:
            if item.due <= now:
                found.append((item.due, Action("overdue", item)))
        elif item.escalated_seq is None and item.escalate_at <= now:
            found.append((item.escalate_at, Action("escalate", item)))
    return [action for _, action in sorted(found, key=lambda pair: pair[0])]


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _seed(*parts: str) -> str:
    return "/".join(("watchdog", *parts))


@dataclass(frozen=True, slots=True)
class Notice:
    """An event to publish: its type, target, data and the id every replica gives it."""

    event_type: str
    target: str
    data: dict[str, Any]
    event_id: str


def overdue_notice(item: Deadline) -> Notice:
    event_type, id_field = NOTICES[item.handoff]
    data: dict[str, Any] = {
        id_field: item.request_id,
        "requester": item.requester,
        "due": item.due.isoformat(),
        "escalates_at": item.escalate_at.isoformat(),
    }
    if item.handoff == "document":
        data["kind"] = item.what
    seed = _seed("overdue", *item.key)
    return Notice(event_type, item.asked, data, str(derived_uuid7(seed, _ms(item.due))))


def escalation_id(item: Deadline) -> str:
    """The escalation's request id: fixed by the hand-off, unique within its case."""
    digest = hashlib.sha256(f"{item.requester}/{item.request_id}".encode()).hexdigest()
    return f"overdue-{digest[:16]}"


def escalation(item: Deadline) -> Notice:
    # No ``reason``: it is free text, marked personal and sealed with the case's data key,
    # which the watchdog never holds; ``overdue`` names the hand-off, which says it all.
    data: dict[str, Any] = {
        "escalation_id": escalation_id(item),
        "concern": "overdue_handoff",
        "overdue": {
            "handoff": item.handoff,
            "request_id": item.request_id,
            "requester": item.requester,
            "asked": item.asked,
            "due": item.due.isoformat(),
        },
    }
    seed = _seed("escalation", *item.key)
    return Notice(
        "oversight.escalated", KPAI, data, str(derived_uuid7(seed, _ms(item.escalate_at)))
    )
