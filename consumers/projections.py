"""Where the pure projections are kept: SQLModel tables and batch application.

Each projection applies an ordered batch of ``(stream sequence, event)`` inside the
session the runner opened, beside the tracking row; the runner commits both at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import BigInteger, bindparam, text
from sqlalchemy import insert as sa_insert
from sqlalchemy import update as sa_update
from sqlmodel import Field, Session, SQLModel, col, select

from lintas.consumers import record as record_fold
from lintas.consumers import worklist as worklist_fold
from lintas.consumers.gate import AgencyGate
from lintas.consumers.record import CaseRecord
from lintas.consumers.worklist import WorkItem
from lintas.contracts import Event, PermanentError, authority
from lintas.infra.db import UTCDateTime
from lintas.infra.nats.topology import agency_of

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
    """A fold kept in tables. ``name`` and ``schema_version`` say which tables it builds:
    bump the version whenever the tables, or what the fold writes into them, change, and
    the projection is rebuilt from the log where it was built by older code
    (:mod:`.rebuild`; ``tests/unit/consumers/test_projection_versions.py`` fails on a
    table changed without a bump)."""

    name: ClassVar[str]
    schema_version: ClassVar[int]
    tables: ClassVar[tuple[type[SQLModel], ...]]

    @staticmethod
    def feeds(consumer: str) -> bool:
        """Whether a consumer of this name writes these tables: how a tracking row noted
        before versions were is told apart in a database several projections share."""
        ...

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
    (:mod:`.gate`): an event the gate refuses raises, and is quarantined; so does one the
    authority policy refuses on its own (:func:`lintas.contracts.authority.judge_alone`)."""

    name: ClassVar[str] = "worklist"
    schema_version: ClassVar[int] = 1
    tables: ClassVar[tuple[type[SQLModel], ...]] = (WorklistRow, *AgencyGate.tables)

    @staticmethod
    def feeds(consumer: str) -> bool:
        # Every agency's: in a shared database, one table holds every agency's worklist.
        return agency_of(consumer) is not None

    def __init__(self, agency: str) -> None:
        self.agency = agency
        self.gate = AgencyGate(agency)

    def apply_batch(self, session: Session, batch: Batch) -> int:
        for _seq, event in batch:
            # The agency sees only part of each case: what the authority policy refuses
            # whatever the case's state (the record and the watchdog judge the rest).
            authority.check_alone(event)
        self._lock_cases(session, {event.case_id for _, event in batch})
        self.gate.apply_batch(session, batch)
        keyed = [
            (key, event)
            for _seq, event in batch
            if (key := worklist_fold.item_key(self.agency, event)) is not None
        ]
        rows = self._rows(session, {event.case_id for _, event in keyed})
        items: dict[tuple[str, str, str, str], WorkItem | None] = {}
        for key, event in keyed:
            if key not in items:
                row = rows.get(key)
                items[key] = (
                    None if row is None else WorkItem.model_validate(row, from_attributes=True)
                )
            items[key] = worklist_fold.apply(self.agency, items[key], event)
        for key, item in items.items():
            if item is None:
                continue
            row = rows.get(key)
            values = item.model_dump()
            if row is None:
                session.add(WorklistRow(**values))
            else:
                for name, value in values.items():
                    setattr(row, name, value)
        return len(keyed)

    def _lock_cases(self, session: Session, case_ids: set[str]) -> None:
        """On PostgreSQL, hold the batch's cases for this agency until the commit.

        The agency's inbound and sent consumers write the same books, case-file fields and
        work items, under separate tracking rows. In one process they share a lock; across
        instances, a transaction lock per (agency, case), always taken in sorted order,
        makes the second wait for the first before it reads, rows that do not exist yet
        included (a ``FOR UPDATE`` could not lock those, and both would insert). Nothing
        else writes these rows. SQLite has one writer at a time already."""
        if not case_ids or session.get_bind().dialect.name != "postgresql":
            return
        keys = sorted(f"{self.agency}/{case_id}" for case_id in case_ids)
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                "FROM unnest(CAST(:keys AS text[])) AS k"
            ),
            {"keys": keys},
        )

    def _rows(
        self, session: Session, case_ids: set[str]
    ) -> dict[tuple[str, str, str, str], WorklistRow]:
        """The agency's stored items of these cases, by key: one read per batch."""
        if not case_ids:
            return {}
        query = select(WorklistRow).where(  # the cases are held: see _lock_cases
            col(WorklistRow.agency) == self.agency,
            col(WorklistRow.case_id).in_(sorted(case_ids)),
        )
        return {(r.agency, r.case_id, r.requester, r.request_id): r for r in session.exec(query)}


class RecordCaseRow(SQLModel, table=True):
    __tablename__ = "record_case"

    case_id: str = Field(primary_key=True, max_length=32)
    situation: str | None = Field(default=None, max_length=32, index=True)
    owner: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16, index=True)
    whereabouts: str | None = Field(default=None, max_length=200)
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seq: int = Field(sa_type=BigInteger)
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

    name: ClassVar[str] = "record"
    # 2: codes where free text was (contracts' codes): records with free text are rebuilt.
    schema_version: ClassVar[int] = 2
    tables: ClassVar[tuple[type[SQLModel], ...]] = (RecordCaseRow,)

    @staticmethod
    def feeds(consumer: str) -> bool:
        return consumer == "record"

    def __init__(self, held_bytes: int = 8 * 2**20) -> None:
        # The records last written, by case, with their JSON: a record that reads back as
        # the very JSON written is not parsed again. Checked against the text, so the cache
        # cannot go stale: a row another instance rewrote (or a rolled-back write) reads
        # back different and is parsed. Bounded by the JSON's size (a parsed record takes
        # a few times more).
        self._held: OrderedDict[str, tuple[str, CaseRecord]] = OrderedDict()
        self._held_bytes = 0
        self._capacity = held_bytes

    def apply_batch(self, session: Session, batch: Batch) -> int:
        docs = self.rows(session, {event.case_id for _, event in batch})
        records = self.fold({cid: self._parsed(cid, doc) for cid, doc in docs.items()}, batch)
        for cid, doc in self.store(session, docs, records).items():
            self._hold(cid, doc, records[cid])
        return len(batch)

    def _parsed(self, case_id: str, doc: str) -> CaseRecord:
        held = self._held.get(case_id)
        if held is not None and held[0] == doc:
            self._held.move_to_end(case_id)
            return held[1]
        return CaseRecord.model_validate_json(doc)

    def _hold(self, case_id: str, doc: str, record: CaseRecord) -> None:
        old = self._held.pop(case_id, None)
        if old is not None:
            self._held_bytes -= len(old[0])
        self._held[case_id] = (doc, record)
        self._held_bytes += len(doc)
        while self._held_bytes > self._capacity and self._held:
            _, (dropped, _) = self._held.popitem(last=False)
            self._held_bytes -= len(dropped)

    @staticmethod
    def rows(session: Session, case_ids: Iterable[str]) -> dict[str, str]:
        """The stored records (as JSON) of those of ``case_ids`` the store holds."""
        wanted = sorted(set(case_ids))
        query = select(RecordCaseRow.case_id, RecordCaseRow.doc).where(
            col(RecordCaseRow.case_id).in_(wanted)
        )
        return dict(session.exec(query).all())

    @staticmethod
    def fold(records: Mapping[str, CaseRecord], batch: Batch) -> dict[str, CaseRecord]:
        """The records of the batch's cases after it; :class:`UnknownCase` for an event
        of a case neither in ``records`` nor opened earlier in the batch."""
        after = dict(records)
        for seq, event in batch:
            if event.case_id not in after and event.type != "case.opened":
                raise UnknownCase(event.case_id, event.type)
            after[event.case_id] = record_fold.apply(after.get(event.case_id), event, seq)
        return after

    @staticmethod
    def store(
        session: Session, stored: Collection[str], records: Mapping[str, CaseRecord]
    ) -> dict[str, str]:
        """Write ``records``: an update of those ``stored`` already, an insert of the rest
        (Core statements, one per kind: ORM objects cost more per row than the fold).
        Returns the JSON written of each."""
        values = {
            cid: {
                "situation": rec.situation,
                "owner": rec.owner,
                "status": rec.status,
                "whereabouts": rec.whereabouts,
                "opened_at": rec.opened_at,
                "last_seq": rec.last_seq,
                "doc": rec.model_dump_json(),
            }
            for cid, rec in sorted(records.items())
        }
        table = RecordCaseRow.__table__  # type: ignore[attr-defined]
        connection = session.connection()
        updates = [{"row_case_id": cid, **v} for cid, v in values.items() if cid in stored]
        if updates:
            names = [name for name in updates[0] if name != "row_case_id"]
            columns: dict[str, Any] = {name: bindparam(name) for name in names}
            query = sa_update(table).where(table.c.case_id == bindparam("row_case_id"))
            updated = connection.execute(query.values(columns), updates).rowcount
            if updated != len(updates):  # a row read above is gone: never drop a record
                raise RuntimeError(
                    f"the record store lost {len(updates) - updated} of the batch's records "
                    "while it was applied"
                )
        inserts = [{"case_id": cid, **v} for cid, v in values.items() if cid not in stored]
        if inserts:
            connection.execute(sa_insert(table), inserts)
        return {cid: str(v["doc"]) for cid, v in values.items()}

    @staticmethod
    def stored(session: Session, case_ids: Iterable[str]) -> set[str]:
        """Which of ``case_ids`` the store holds a record of (their records unread)."""
        query = select(RecordCaseRow.case_id).where(
            col(RecordCaseRow.case_id).in_(sorted(set(case_ids)))
        )
        return set(session.exec(query).all())


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
