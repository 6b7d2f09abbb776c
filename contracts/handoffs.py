"""Which events open a hand-off between agencies and which answer it.

A hand-off is one agency asking another to act for the child: a referral, a document
request, a repatriation, a rehabilitation or reintegration hand-off, an escalation to
KPAI, a tracing request. It is identified by the requester and the request id the
requester chose, since ids are only unique within one requester's case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from lintas.contracts import BROADCAST, Event

__all__ = ["RANK", "TERMINAL", "Step", "StepKind", "classify"]

StepKind = Literal[
    "requested", "accepted", "progress", "completed", "rejected", "revoked", "overdue"
]

# How far along a hand-off is; a status only ever moves up this order, so projections fed
# by two consumers (an agency's inbox and its own sent events) converge in any order. The
# terminal statuses are ranked too, for when two race (a revoke crossing a completion):
# what the agency asked actually did wins over what the requester meant to stop.
RANK: Final[dict[str, int]] = {
    "requested": 0,
    "accepted": 1,
    "revoked": 2,
    "rejected": 3,
    "completed": 4,
}
TERMINAL: Final = frozenset({"revoked", "rejected", "completed"})

_OPENS: Final[dict[str, tuple[str, str]]] = {
    # event type: (hand-off kind, field holding the request id)
    "referral.requested": ("referral", "referral_id"),
    "document.requested": ("document", "request_id"),
    "repatriation.requested": ("repatriation", "repatriation_id"),
    "rehabilitation.handoff_requested": ("rehabilitation", "handoff_id"),
    "rehabilitation.reintegration_handoff": ("reintegration", "handoff_id"),
    "oversight.escalated": ("oversight", "escalation_id"),
    "tracing.requested": ("tracing", "tracing_id"),
}

# Answers come from the agency asked and are addressed to the requester ...
_ANSWERS: Final[dict[str, tuple[str, StepKind]]] = {
    "referral.accepted": ("referral_id", "accepted"),
    "referral.rejected": ("referral_id", "rejected"),
    "referral.completed": ("referral_id", "completed"),
    "document.issued": ("request_id", "completed"),
    "document.rejected": ("request_id", "rejected"),
    "repatriation.scheduled": ("repatriation_id", "accepted"),
    "repatriation.completed": ("repatriation_id", "completed"),
    "repatriation.failed": ("repatriation_id", "rejected"),
    "rehabilitation.handoff_accepted": ("handoff_id", "accepted"),
    "rehabilitation.progress_reported": ("handoff_id", "progress"),
    "rehabilitation.completed": ("handoff_id", "completed"),
    "oversight.reviewed": ("escalation_id", "completed"),
    "tracing.match_found": ("tracing_id", "accepted"),
    "tracing.reunified": ("tracing_id", "completed"),
}

# ... while these come from the requester itself, or (the overdue notices) from the
# platform's watchdog on its behalf, to the agency asked. A notice that names its requester
# in ``data.requester`` is keyed by it; one that does not (referral.overdue v1) by its source.
_FROM_REQUESTER: Final[dict[str, tuple[str, StepKind]]] = {
    "referral.revoked": ("referral_id", "revoked"),
    "referral.overdue": ("referral_id", "overdue"),
    "document.overdue": ("request_id", "overdue"),
    "rehabilitation.handoff_overdue": ("handoff_id", "overdue"),
}


@dataclass(frozen=True, slots=True)
class Step:
    """One event's meaning for one hand-off."""

    requester: str
    request_id: str
    kind: StepKind
    handoff: str | None = None  # set on "requested": referral, document, ...
    what: str | None = None  # set on "requested": the service, document kind, ...
    asked: str | None = None  # the agency asked, when the event says

    @property
    def key(self) -> str:
        return f"{self.requester}/{self.request_id}"


def _what(event: Event, handoff: str) -> str:
    data = event.data
    # Fields only: a pydantic model's missing attribute costs a raised AttributeError.
    fields = type(data).model_fields
    for attr in ("service", "kind", "to", "concern", "placement"):
        if attr in fields and isinstance(value := getattr(data, attr), str):
            return value
    return handoff


def classify(event: Event) -> Step | None:
    """The hand-off step an event is, or None when it is not part of a hand-off.

    A hand-off is between two agencies: an event addressed to everyone opens or answers
    none (it would otherwise open a phantom hand-off keyed by ``all``).
    """
    if event.target == BROADCAST:
        return None
    opened = _OPENS.get(event.type)
    if opened is not None:
        handoff, field = opened
        return Step(
            requester=event.source,
            request_id=getattr(event.data, field),
            kind="requested",
            handoff=handoff,
            what=_what(event, handoff),
            asked=event.target,
        )
    answer = _ANSWERS.get(event.type)
    if answer is not None:
        request_id = getattr(event.data, answer[0])
        if request_id is None:  # e.g. a document issued without a request
            return None
        return Step(event.target, request_id, answer[1], asked=event.source)
    from_requester = _FROM_REQUESTER.get(event.type)
    if from_requester is not None:
        return Step(
            getattr(event.data, "requester", None) or event.source,
            getattr(event.data, from_requester[0]),
            from_requester[1],
            asked=event.target,
        )
    return None
