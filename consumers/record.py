"""The coordination record of one case: who asked whom for what, and what came of it.

Pure: :func:`apply` folds one event into a case's record. The record projector keeps
one per case; replay (for auditors) folds the same events into a fresh store.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from lintas.contracts import Event
from lintas.contracts.families import case, document, rehabilitation, repatriation

from .handoffs import RANK, TERMINAL, classify

__all__ = ["CaseRecord", "DocumentIssued", "Handoff", "TimelineEntry", "apply"]


class Handoff(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    handoff: str | None = None
    what: str | None = None
    requester: str
    asked: str | None = None
    status: str = "requested"
    requested_at: datetime | None = None
    accepted_at: datetime | None = None
    closed_at: datetime | None = None
    overdue: bool = False

    @property
    def duration_s(self) -> float | None:
        if self.requested_at is None or self.closed_at is None:
            return None
        return (self.closed_at - self.requested_at).total_seconds()


class DocumentIssued(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    issued_by: str
    issuing_office: str
    issuing_office_code: str | None = None
    issued_on: str
    valid_until: str | None = None
    at: datetime


class TimelineEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    time: datetime
    type: str
    source: str
    target: str
    owner: str | None


class CaseRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    case_id: str
    situation: str | None = None
    jurisdiction: str | None = None
    opened_by: str | None = None
    opened_at: datetime | None = None
    owner: str | None = None
    whereabouts: str | None = None
    status: str = "open"
    closed_reason: str | None = None
    closed_at: datetime | None = None
    last_seq: int = 0
    handoffs: tuple[Handoff, ...] = ()
    documents: tuple[DocumentIssued, ...] = ()
    timeline: tuple[TimelineEntry, ...] = ()


def _handoffs(record: CaseRecord, event: Event) -> tuple[Handoff, ...]:
    step = classify(event)
    if step is None:
        return record.handoffs
    existing = {h.key: h for h in record.handoffs}
    current = existing.get(step.key) or Handoff(
        key=step.key, requester=step.requester, asked=step.asked
    )
    if step.kind != "requested" and current.handoff is not None and step.asked != current.asked:
        # Only the agency asked can answer (or be told of revocation): anyone else's
        # answer to someone else's request changes nothing in the record.
        return record.handoffs
    update: dict[str, object] = {}
    if step.kind == "requested":
        update |= {
            "handoff": step.handoff,
            "what": step.what,
            "asked": step.asked,
            "requested_at": event.time,
        }
    elif step.kind == "overdue":
        update["overdue"] = True
    else:
        wanted = "accepted" if step.kind == "progress" else step.kind
        if RANK[wanted] > RANK[current.status]:
            update["status"] = wanted
        if wanted == "accepted" and current.accepted_at is None:
            update["accepted_at"] = event.time
        if wanted in TERMINAL and current.closed_at is None:
            update["closed_at"] = event.time
    updated = current.model_copy(update=update)
    if step.key in existing:
        return tuple(updated if h.key == step.key else h for h in record.handoffs)
    return (*record.handoffs, updated)


def _whereabouts(record: CaseRecord, event: Event) -> str | None:
    data = event.data
    if isinstance(data, case.CaseOpenedV2):
        place = data.location
        return f"{place.name or place.subdivision or 'unknown region'}, {place.country}"
    if isinstance(data, repatriation.RepatriationScheduledV1):
        return f"awaiting repatriation via {data.port_of_entry} on {data.departure_on}"
    if isinstance(data, repatriation.RepatriationCompletedV1):
        return f"arrived in Indonesia at {data.port_of_entry}"
    if isinstance(data, rehabilitation.RehabilitationHandoffAcceptedV1):
        step = classify(event)
        handoff = next((h for h in record.handoffs if step and h.key == step.key), None)
        if handoff is not None and handoff.handoff == "reintegration":
            return f"home: {event.source} ({(handoff.what or 'family').replace('_', ' ')})"
        placement = handoff.what if handoff is not None else None
        return f"in rehabilitation with {event.source}" + (f" ({placement})" if placement else "")
    return record.whereabouts


def _in_order(
    timeline: tuple[TimelineEntry, ...], entry: TimelineEntry
) -> tuple[TimelineEntry, ...]:
    if not timeline or timeline[-1].seq < entry.seq:
        return (*timeline, entry)
    return tuple(sorted((*timeline, entry), key=lambda e: e.seq))


def apply(record: CaseRecord | None, event: Event, seq: int) -> CaseRecord:
    """Fold the event at stream sequence ``seq`` into the record of its case."""
    record = record or CaseRecord(case_id=event.case_id)
    data = event.data
    update: dict[str, object] = {"last_seq": max(record.last_seq, seq)}
    owner = record.owner
    if isinstance(data, case.CaseOpenedV2):
        owner = record.owner or event.source
        update |= {
            "situation": data.situation,
            "jurisdiction": data.jurisdiction.country,
            "opened_by": event.source,
            "opened_at": event.time,
        }
    elif isinstance(data, case.CaseAssignedV1):
        owner = data.owner
    elif isinstance(data, case.CaseClosedV1):
        update |= {"status": "closed", "closed_reason": data.reason, "closed_at": event.time}
    elif isinstance(data, case.CaseReopenedV1):
        update |= {"status": "open", "closed_reason": None, "closed_at": None}
    elif isinstance(data, document.DocumentIssuedV2):
        # The number identifies the child: the record keeps only that it was issued.
        update["documents"] = (
            *record.documents,
            DocumentIssued(
                kind=data.kind,
                issued_by=event.source,
                issuing_office=data.issuing_office,
                issuing_office_code=data.issuing_office_code,
                valid_until=data.valid_until.isoformat() if data.valid_until else None,
                issued_on=data.issued_on.isoformat(),
                at=event.time,
            ),
        )
    update["owner"] = owner
    update["whereabouts"] = _whereabouts(record, event)
    update["handoffs"] = _handoffs(record, event)
    # In stream order even when an old event comes late (a retried quarantine entry).
    update["timeline"] = _in_order(
        record.timeline,
        TimelineEntry(
            seq=seq,
            time=event.time,
            type=event.type,
            source=event.source,
            target=event.target,
            owner=owner,
        ),
    )
    return record.model_copy(update=update)
