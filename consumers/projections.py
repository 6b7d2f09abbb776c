"""Where the pure projections are kept: SQLModel tables and batch application.

Each projection applies an ordered batch of ``(stream sequence, event)`` inside the
session the runner opened, beside the tracking row; the runner commits both at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar, Protocol

from sqlmodel import Field, Session, SQLModel, col, select

from lintas.contracts import Event, PermanentError
from lintas.infra.db import UTCDateTime

from . import record as record_fold
from . import worklist as worklist_fold
from .privacy import AgencyPrivacy
from .record import CaseRecord
from .worklist import WorkItem

__all__ = [
    "Batch",
    "Projection",
    "RecordCaseRow",
    "RecordProjection",
    "UnknownCase",
    "WorklistProjection",
    "WorklistRow",
    "load_record",
    "load_records",
    "load_worklist",
]

Batch = Sequence[tuple[int, Event]]


class Projection(Protocol):
    tables: ClassVar[tuple[type[SQLModel], ...]]

    def apply_batch(self, session: Session, batch: Batch) -> int:
        """Apply the batch in order; return how many events changed the projection."""
        ...


class WorklistRow(SQLModel, table=True):
    __tablename__ = "worklist_item"

    agency: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(primary_key=True, max_length=32)
    requester: str = Field(primary_key=True, max_length=64)
    request_id: str = Field(primary_key=True, max_length=64)
    handoff: str | None = Field(default=None, max_length=32)
    what: str | None = Field(default=None, max_length=120)
    status: str = Field(max_length=16, index=True)
    requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    overdue: bool = False
    last_event: str = Field(max_length=64)


class WorklistProjection:
    """The agency's worklist, behind its consent gate, beside its case file
    (:mod:`.privacy`): an event the gate refuses raises, and is quarantined."""

    tables: ClassVar[tuple[type[SQLModel], ...]] = (WorklistRow, *AgencyPrivacy.tables)

    def __init__(self, agency: str) -> None:
        self.agency = agency
        self.privacy = AgencyPrivacy(agency)

    def apply_batch(self, session: Session, batch: Batch) -> int:
        self.privacy.apply_batch(session, batch)
        items: dict[tuple[str, str, str, str], WorkItem | None] = {}
        changed = 0
        for _seq, event in batch:
            key = worklist_fold.item_key(self.agency, event)
            if key is None:
                continue
            if key not in items:
                row = session.get(WorklistRow, key)
                items[key] = (
                    None if row is None else WorkItem.model_validate(row, from_attributes=True)
                )
            items[key] = worklist_fold.apply(self.agency, items[key], event)
            changed += 1
        for key, item in items.items():
            if item is None:
                continue
            row = session.get(WorklistRow, key)
            values = item.model_dump()
            if row is None:
                session.add(WorklistRow(**values))
            else:
                for name, value in values.items():
                    setattr(row, name, value)
        return changed


class RecordCaseRow(SQLModel, table=True):
    __tablename__ = "record_case"

    case_id: str = Field(primary_key=True, max_length=32)
    situation: str | None = Field(default=None, max_length=32, index=True)
    owner: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16, index=True)
    whereabouts: str | None = Field(default=None, max_length=200)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seq: int
    doc: str = Field(description="the whole CaseRecord as JSON")


class UnknownCase(PermanentError):
    """An event for a case the record has never seen opened: quarantined, so that it can be
    retried (``lintas dlq retry``) once the case is known, instead of founding a record
    with no situation, no opener and no owner."""

    def __init__(self, case_id: str, event_type: str) -> None:
        super().__init__(f"{event_type} for case {case_id}, which was never opened")


class RecordProjection:
    """The coordination record: one row per case holding its :class:`CaseRecord`.

    :meth:`apply_batch` is :meth:`rows`, :meth:`fold` and :meth:`store` in one session;
    replay's shards, which alone write their cases, run them in separate transactions so
    that folding holds no database lock."""

    tables: ClassVar[tuple[type[SQLModel], ...]] = (RecordCaseRow,)

    def apply_batch(self, session: Session, batch: Batch) -> int:
        rows = self.rows(session, {event.case_id for _, event in batch})
        self.store(session, rows, self.fold(rows, batch))
        return len(batch)

    @staticmethod
    def rows(session: Session, case_ids: Iterable[str]) -> dict[str, RecordCaseRow]:
        wanted = sorted(set(case_ids))
        query = select(RecordCaseRow).where(col(RecordCaseRow.case_id).in_(wanted))
        return {row.case_id: row for row in session.exec(query)}

    @staticmethod
    def fold(rows: Mapping[str, RecordCaseRow], batch: Batch) -> dict[str, CaseRecord]:
        """The records of the batch's cases after it; :class:`UnknownCase` for an event
        of a case neither in ``rows`` nor opened earlier in the batch."""
        records = {cid: CaseRecord.model_validate_json(row.doc) for cid, row in rows.items()}
        for seq, event in batch:
            if event.case_id not in records and event.type != "case.opened":
                raise UnknownCase(event.case_id, event.type)
            records[event.case_id] = record_fold.apply(records.get(event.case_id), event, seq)
        return records

    @staticmethod
    def store(
        session: Session, rows: Mapping[str, RecordCaseRow], records: Mapping[str, CaseRecord]
    ) -> None:
        for cid, rec in records.items():
            values = {
                "situation": rec.situation,
                "owner": rec.owner,
                "status": rec.status,
                "whereabouts": rec.whereabouts,
                "opened_at": rec.opened_at,
                "last_seq": rec.last_seq,
                "doc": rec.model_dump_json(),
            }
            row = rows.get(cid)
            if row is None:
                row = RecordCaseRow(case_id=cid, status=rec.status, last_seq=rec.last_seq, doc="")
            for name, value in values.items():
                setattr(row, name, value)
            session.add(row)


def load_record(session: Session, case_id: str) -> CaseRecord | None:
    row = session.get(RecordCaseRow, case_id)
    return None if row is None else CaseRecord.model_validate_json(row.doc)


def load_records(session: Session) -> list[CaseRecord]:
    rows = session.exec(select(RecordCaseRow).order_by(col(RecordCaseRow.case_id)))
    return [CaseRecord.model_validate_json(row.doc) for row in rows]


def load_worklist(session: Session, agency: str) -> list[WorkItem]:
    rows = session.exec(
        select(WorklistRow)
        .where(WorklistRow.agency == agency)
        .order_by(col(WorklistRow.requested_at))
    )
    return [WorkItem.model_validate(row, from_attributes=True) for row in rows]
