"""The coordination record of one case: who asked whom for what, and what came of it.

Pure: :func:`apply` folds one event into a case's record. The record projector keeps
one per case; replay (for auditors) folds the same events into a fresh store.

The record holds no personal value. Of a child's data it keeps what an auditor needs:
the case's consents and overrides (scopes, agencies, when withdrawn, who was told), which
events carried which personal fields and in what state (``sealed``, ``erased`` once the
case's keys are destroyed, ``clear`` for events published before fields were sealed), the
erasure itself, and, per timeline entry, why the consent gate refuses it when it does
(the receiving agency's consumer quarantines such an event; the record shows it).

Before it folds anything, :func:`apply` asks the authority policy
(:mod:`lintas.contracts.authority`) whether the event's source may say it about the case
now, on the case's :class:`~lintas.contracts.authority.CaseState` that its record gives
(:func:`case_state`): a refused event raises :class:`~lintas.contracts.AuthorityRefused`
(the record's consumer quarantines it, a replay leaves it out) and changes nothing.
"""

from __future__ import annotations

import threading
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from lintas.contracts import Event, EventData, Sealed
from lintas.contracts import authority as authority_rules
from lintas.contracts import gate as gate_rules
from lintas.contracts.codes import label
from lintas.contracts.families import case, document, rehabilitation, repatriation
from lintas.contracts.handoffs import RANK, TERMINAL, classify

__all__ = [
    "CaseRecord",
    "ConsentEntry",
    "DocumentIssued",
    "Erasure",
    "Handoff",
    "PersonalField",
    "TimelineEntry",
    "apply",
    "case_state",
    "consent_book",
]


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
    issuing_office: str | None
    """The office's code (labels: lintas.contracts.codes); None: an older event named it
    in free text, which is not carried forward."""
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
    refused: str | None = None
    """Why the consent gate refuses this event (its receiver quarantines it), if it does."""


class ConsentEntry(BaseModel):
    """A consent recorded, or an override, as the case's broadcast events say."""

    model_config = ConfigDict(frozen=True)

    seq: int
    at: datetime
    by: str
    consent_id: str | None = None  # None: an override
    given_by: str | None = None
    officer_role: str | None = None  # a code; None on a consent, or an uncoded override
    legal_basis: tuple[str, ...] | None = None  # citations, as officer_role
    scopes: tuple[str, ...]
    agencies: tuple[str, ...]
    withdrawn_seq: int | None = None
    withdrawn_at: datetime | None = None
    notified: tuple[str, ...] | None = None


class PersonalField(BaseModel):
    """A personal field an event carried: never its value, only its state."""

    model_config = ConfigDict(frozen=True)

    seq: int
    type: str
    field: str
    state: str  # "sealed", "erased", or "clear" (published before the field was sealed)


class Erasure(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    at: datetime
    by: str
    officer_role: str
    requested_by: str
    legal_basis: tuple[str, ...] | None  # citations; None: v1 text that held none
    reason: str | None  # a code; None: v1's free text, not carried forward


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
    consents: tuple[ConsentEntry, ...] = ()
    personal: tuple[PersonalField, ...] = ()
    erasure: Erasure | None = None


def case_state(record: CaseRecord | None) -> authority_rules.CaseState:
    """What the authority policy knows of the case, as its record says it: the record folds
    every admitted event into the same owner, status, erasure, hand-offs and consents that
    :func:`lintas.contracts.authority.apply` folds, so it stores nothing more (and a record
    stored before the policy existed needs no migration)."""
    if record is None:
        return authority_rules.start()
    return authority_rules.CaseState(
        opened_by=record.opened_by,
        owner=record.owner,
        closed=record.status == "closed",
        erased=record.erasure is not None,
        handoffs=tuple(
            authority_rules.Pending(
                h.requester,
                h.key.partition("/")[2],
                h.handoff,
                h.asked,
                h.status in TERMINAL,
                asked_at=h.requested_at,
            )
            for h in record.handoffs
            if h.handoff is not None and h.asked is not None
        ),
        consents=tuple((c.consent_id, c.by) for c in record.consents if c.consent_id),
    )


def consent_book(record: CaseRecord) -> gate_rules.ConsentBook:
    """The case's consent book (what the gate decides on), rebuilt from the record."""
    # Asked once per event folded, while a case's consents change a few times in its
    # life: kept by the identity of the consents the book was built from. The entry holds
    # those objects, so their ids cannot be reused while it is kept.
    cached = _BOOKS.get(id(record.consents))
    if cached is not None and cached[0] is record.consents and cached[1] is record.erasure:
        return cached[2]
    book = _build_book(record)
    with _BOOKS_LOCK:  # projectors fold in worker threads
        if len(_BOOKS) >= _BOOKS_KEPT:
            del _BOOKS[next(iter(_BOOKS))]
        _BOOKS[id(record.consents)] = (record.consents, record.erasure, book)
    return book


_BOOKS: dict[int, tuple[tuple[ConsentEntry, ...], Erasure | None, gate_rules.ConsentBook]] = {}
_BOOKS_KEPT = 4096
_BOOKS_LOCK = threading.Lock()


def _build_book(record: CaseRecord) -> gate_rules.ConsentBook:
    return gate_rules.ConsentBook(
        grants=tuple(
            gate_rules.Grant(
                seq=c.seq,
                by=c.by,
                consent_id=c.consent_id,
                scopes=frozenset(c.scopes),
                agencies=frozenset(c.agencies),
                withdrawn_seq=c.withdrawn_seq,
            )
            for c in record.consents
        ),
        erased_seq=record.erasure.seq if record.erasure else None,
    )


def _consents(record: CaseRecord, event: Event, seq: int) -> tuple[ConsentEntry, ...]:
    """The record's consents after the event: which grants there are and when each was
    withdrawn is the consent gate's own fold (:func:`lintas.contracts.gate.fold`); the
    record adds what an auditor reads beside them (who gave it, the officer, when)."""
    before = consent_book(record)
    after = gate_rules.fold(before, event, seq)
    if after.grants == before.grants:
        return record.consents
    data = event.data
    entries = {c.seq: c for c in record.consents}
    updated = []
    for grant in after.grants:
        entry = entries.get(grant.seq)
        if entry is None:  # the grant this event made
            entry = ConsentEntry(
                seq=seq,
                at=event.time,
                by=event.source,
                consent_id=grant.consent_id,
                given_by=getattr(data, "given_by", None),
                officer_role=getattr(data, "officer_role", None),
                legal_basis=_citations(getattr(data, "legal_basis", None)),
                # In the event's own order, as published (a grant holds them as sets).
                scopes=tuple(getattr(data, "scopes", ())),
                agencies=tuple(getattr(data, "agencies", ())),
            )
        elif grant.withdrawn_seq is not None and entry.withdrawn_seq is None:
            notified = getattr(data, "notified", None)
            entry = entry.model_copy(
                update={
                    "withdrawn_seq": grant.withdrawn_seq,
                    "withdrawn_at": event.time,
                    "notified": tuple(notified) if notified is not None else None,
                }
            )
        updated.append(entry)
    return tuple(updated)


def _personal(record: CaseRecord, event: Event, seq: int) -> tuple[PersonalField, ...]:
    if isinstance(event.data, case.CaseErasedV2):
        return tuple(
            p.model_copy(update={"state": "erased"}) if p.state == "sealed" else p
            for p in record.personal
        )
    data = event.data
    if record.last_seq >= seq and any(p.seq == seq for p in record.personal):
        return record.personal
    carried = tuple(
        PersonalField(
            seq=seq,
            type=event.type,
            field=name,
            state="sealed" if isinstance(value, Sealed) else "clear",
        )
        for name in _personal_names(type(data))
        if (value := getattr(data, name)) is not None
    )
    return (*record.personal, *carried) if carried else record.personal


_PERSONAL_NAMES: dict[type[EventData], tuple[str, ...]] = {}


def _personal_names(model: type[EventData]) -> tuple[str, ...]:
    # In name order, worked out once per model (asked for every event folded).
    names = _PERSONAL_NAMES.get(model)
    if names is None:
        names = _PERSONAL_NAMES[model] = tuple(sorted(model.personal_fields()))
    return names


def _handoffs(record: CaseRecord, event: Event) -> tuple[Handoff, ...]:
    step = classify(event)
    if step is None:
        return record.handoffs
    key = step.key
    found = next((h for h in record.handoffs if h.key == key), None)
    current = found or Handoff(key=step.key, requester=step.requester, asked=step.asked)
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
    if found is not None:
        return tuple(updated if h is found else h for h in record.handoffs)
    return (*record.handoffs, updated)


def _citations(basis: list[str] | None) -> tuple[str, ...] | None:
    return tuple(basis) if basis is not None else None


def _whereabouts(record: CaseRecord, event: Event) -> str | None:
    data = event.data
    if isinstance(data, case.CaseOpenedV4):
        place = data.location
        return f"{place.regency or place.subdivision or 'unknown region'}, {place.country}"
    if isinstance(data, repatriation.RepatriationScheduledV2):
        return f"awaiting repatriation via {label(data.port_of_entry)} on {data.departure_on}"
    if isinstance(data, repatriation.RepatriationCompletedV2):
        return f"arrived in Indonesia at {label(data.port_of_entry)}"
    if isinstance(data, rehabilitation.RehabilitationHandoffAcceptedV1):
        step = classify(event)
        handoff = next((h for h in record.handoffs if step and h.key == step.key), None)
        if handoff is not None and handoff.handoff == "reintegration":
            return f"home: {event.source} ({(handoff.what or 'family').replace('_', ' ')})"
        placement = handoff.what if handoff is not None else None
        return f"in rehabilitation with {event.source}" + (
            f" ({label(placement)})" if placement else ""
        )
    return record.whereabouts


def _in_order(
    timeline: tuple[TimelineEntry, ...], entry: TimelineEntry
) -> tuple[TimelineEntry, ...]:
    if not timeline or timeline[-1].seq < entry.seq:
        return (*timeline, entry)
    return tuple(sorted((*timeline, entry), key=lambda e: e.seq))


def apply(record: CaseRecord | None, event: Event, seq: int) -> CaseRecord:
    """Fold the event at stream sequence ``seq`` into the record of its case."""
    authority_rules.check(case_state(record), event)  # AuthorityRefused: folds nothing
    record = record or CaseRecord(case_id=event.case_id)
    data = event.data
    update: dict[str, object] = {"last_seq": max(record.last_seq, seq)}
    owner = gate_rules.owner_after(record.owner, event)
    refused = gate_rules.gate_refusal(consent_book(record), event, at=seq)
    if isinstance(data, case.CaseOpenedV4):
        update |= {
            "situation": data.situation,
            "jurisdiction": data.jurisdiction.country,
            "opened_by": event.source,
            "opened_at": event.time,
        }
    elif isinstance(data, case.CaseClosedV1):
        update |= {"status": "closed", "closed_reason": data.reason, "closed_at": event.time}
    elif isinstance(data, case.CaseReopenedV2):
        update |= {"status": "open", "closed_reason": None, "closed_at": None}
    elif (
        isinstance(data, case.CaseErasedV2)
        and record.erasure is None
        and gate_rules.erases(owner, event)
    ):
        # Only the owner erases (as the read service, which alone destroys the keys, holds).
        update["erasure"] = Erasure(
            seq=seq,
            at=event.time,
            by=event.source,
            officer_role=data.officer_role,
            requested_by=data.requested_by,
            legal_basis=_citations(data.legal_basis),
            reason=data.reason,
        )
    elif isinstance(data, document.DocumentIssuedV4):
        # The number identifies the child: the record keeps only that it was issued.
        update["documents"] = (
            *record.documents,
            DocumentIssued(
                kind=data.kind,
                issued_by=event.source,
                issuing_office=data.issuing_office,
                valid_until=data.valid_until.isoformat() if data.valid_until else None,
                issued_on=data.issued_on.isoformat(),
                at=event.time,
            ),
        )
    update["owner"] = owner
    update["whereabouts"] = _whereabouts(record, event)
    update["handoffs"] = _handoffs(record, event)
    update["consents"] = _consents(record, event, seq)
    update["personal"] = _personal(record, event, seq)
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
            refused=str(refused) if refused is not None else None,
        ),
    )
    return record.model_copy(update=update)
