"""An agency's side of the privacy gate, and its case file: what it was sent of a child's data.

Kept beside the agency's worklist (same database, same transaction), fed by the same two
consumers (what is addressed to the agency or to everyone, and what it sent itself):

* ``privacy_case``: each case's consent book as far as it concerns the agency (the
  broadcast consents and overrides naming it, their withdrawals, the erasure, with their
  stream sequences), so the gate can decide on an event as of the event's own position in
  the stream whatever order the two consumers deliver in;
* the gate itself: an event addressed to the agency that the book does not allow
  (:func:`lintas.contracts.gate.gate_refusal`: no consent covering it, personal data
  after erasure, an undeclared field to a partner abroad) raises
  :class:`~lintas.contracts.GateRefused`, a permanent error, so the consumer edge
  quarantines it and applies the rest of the batch;
* ``case_file_field``: every personal field of an event the agency received or sent, as
  it travelled: sealed (its ciphertext, which only holders of the case's data key can
  open: :mod:`.casefile`), or ``erased`` once the case is erased (the ciphertext is
  dropped too; a field the other consumer files after the erasure keeps its ciphertext,
  which nothing can open any more, and the case file shows it erased), or ``clear`` for
  an event published before the field was sealed (its value is not copied here).

No plaintext of a child's data is ever written to these tables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Table, insert
from sqlmodel import Field, Session, SQLModel, col, select, update

from lintas.contracts import BROADCAST, Event, Sealed
from lintas.contracts import gate as gate_rules
from lintas.infra.db import UTCDateTime

__all__ = ["AgencyGate", "CaseFileRow", "GateCaseRow"]

_BOOK_TYPES = gate_rules.CONSENT_TYPES | {"case.erased"}


class GateCaseRow(SQLModel, table=True):
    """A case's consent book as this agency's gate knows it: its broadcast consents and
    overrides (each with the stream sequence it took effect at, and of its withdrawal),
    and when the case's personal data was erased."""

    __tablename__ = "privacy_case"

    agency: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(primary_key=True, max_length=32)
    book: str = Field(description="the grants as JSON")
    erased_seq: int | None = Field(default=None, sa_type=BigInteger)


class CaseFileRow(SQLModel, table=True):
    """One personal field of an event the agency received or sent (never its plaintext)."""

    __tablename__ = "case_file_field"

    agency: str = Field(primary_key=True, max_length=64)
    case_id: str = Field(primary_key=True, max_length=32)
    seq: int = Field(primary_key=True, sa_type=BigInteger)
    field: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=64)
    source: str = Field(max_length=64)
    time: datetime = Field(sa_type=UTCDateTime)
    state: str = Field(max_length=16, description="sealed, erased, or clear")
    sealed: str | None = Field(default=None, description="the Sealed value as JSON")


# New books and new case-file fields are written with Core executemany statements.
_BOOK_TABLE: Table = GateCaseRow.__table__  # type: ignore[attr-defined]
_FILE_TABLE: Table = CaseFileRow.__table__  # type: ignore[attr-defined]


def _dump(book: gate_rules.ConsentBook) -> str:
    return json.dumps(
        [
            [g.seq, g.by, g.consent_id, sorted(g.scopes), sorted(g.agencies), g.withdrawn_seq]
            for g in book.grants
        ]
    )


def _load(row: GateCaseRow | None) -> gate_rules.ConsentBook:
    if row is None:
        return gate_rules.ConsentBook()
    return gate_rules.ConsentBook(
        grants=tuple(
            gate_rules.Grant(seq, by, consent_id, frozenset(scopes), frozenset(agencies), until)
            for seq, by, consent_id, scopes, agencies, until in json.loads(row.book)
        ),
        erased_seq=row.erased_seq,
    )


class AgencyGate:
    """The gate and the case file of one agency, applied to ordered batches."""

    tables: tuple[type[SQLModel], ...] = (GateCaseRow, CaseFileRow)

    def __init__(self, agency: str) -> None:
        self.agency = agency

    def _needs_book(self, event: Event, personal: bool) -> bool:
        if event.type in _BOOK_TYPES:
            # A consent that does not name this agency cannot change its gate: only the
            # grants naming it are kept (a withdrawal may end one, an erasure ends all).
            granted = getattr(event.data, "agencies", None)
            return granted is None or self.agency in granted
        return event.target == self.agency and (
            personal or gate_rules.requirement(event.type, event.target, personal) is not None
        )

    def apply_batch(self, session: Session, batch: Sequence[tuple[int, Event]]) -> None:
        """Gate, fold and file the batch in order; raises the first refusal. One read of
        the books the batch needs, one of the fields it may have filed already, and the new
        fields written in bulk (per-row ORM objects cost more than the rest of the batch)."""
        needs: list[tuple[int, Event, bool, bool]] = []
        for seq, event in batch:
            personal = gate_rules.carries_personal(event)
            needs.append((seq, event, personal, self._needs_book(event, personal)))
        rows = self._rows(session, {e.case_id for _, e, _, book in needs if book})
        books = {case_id: _load(row) for case_id, row in rows.items()}
        filed = self._filed(session, [(seq, e) for seq, e, personal, _ in needs if personal])
        fields: list[dict[str, Any]] = []
        changed: set[str] = set()
        with session.no_autoflush:
            for seq, event, personal, needs_book in needs:
                if not needs_book:
                    if personal:
                        fields += self._fields(seq, event, filed)
                    continue
                case_id = event.case_id
                book = books.setdefault(case_id, gate_rules.ConsentBook())
                if event.target == self.agency:
                    refused = gate_rules.gate_refusal(book, event, at=seq)
                    if refused is not None:
                        raise refused
                if personal:
                    fields += self._fields(seq, event, filed)
                folded = gate_rules.fold(book, event, seq).about(self.agency)
                if folded != book:
                    books[case_id] = folded
                    changed.add(case_id)
                if event.type == "case.erased":
                    self._insert(session, fields)  # the fields filed so far are erased too
                    fields = []
                    self._erase(session, case_id)
            self._insert(session, fields)
            new = [
                {"agency": self.agency, "case_id": c, "book": _dump(b), "erased_seq": b.erased_seq}
                for c, b in sorted(books.items())
                if c in changed and c not in rows
            ]
            if new:
                session.connection().execute(insert(_BOOK_TABLE), new)
            for case_id in sorted(changed & rows.keys()):
                rows[case_id].book = _dump(books[case_id])
                rows[case_id].erased_seq = books[case_id].erased_seq

    def _rows(self, session: Session, case_ids: set[str]) -> dict[str, GateCaseRow]:
        if not case_ids:
            return {}
        # Read unlocked: the agency's other consumer may fold the same books at once (in
        # another instance, on PostgreSQL), so WorklistProjection, which applies this, holds
        # the batch's cases for the agency until the commit.
        query = select(GateCaseRow).where(
            col(GateCaseRow.agency) == self.agency,
            col(GateCaseRow.case_id).in_(sorted(case_ids)),
        )
        return {row.case_id: row for row in session.exec(query)}

    def _filed(
        self, session: Session, personal: Sequence[tuple[int, Event]]
    ) -> set[tuple[str, int, str]]:
        """The fields already filed of the batch's own broadcasts: they reach both of the
        agency's consumers, and are filed by whichever applies them first."""
        twice = [
            (seq, e) for seq, e in personal if e.source == self.agency and e.target == BROADCAST
        ]
        if not twice:
            return set()
        query = select(CaseFileRow.case_id, CaseFileRow.seq, CaseFileRow.field).where(
            col(CaseFileRow.agency) == self.agency,
            col(CaseFileRow.case_id).in_(sorted({e.case_id for _, e in twice})),
            col(CaseFileRow.seq).in_(sorted({seq for seq, _ in twice})),
        )
        return {(case_id, seq, name) for case_id, seq, name in session.exec(query)}

    @staticmethod
    def _insert(session: Session, fields: list[dict[str, Any]]) -> None:
        if fields:
            session.flush()
            # Core: the ORM's bulk insert took about 3x as long per row here.
            session.connection().execute(insert(_FILE_TABLE), fields)

    def _erase(self, session: Session, case_id: str) -> None:
        session.flush()  # rows added earlier in this batch are erased too
        session.execute(
            update(CaseFileRow)
            .where(
                col(CaseFileRow.agency) == self.agency,
                col(CaseFileRow.case_id) == case_id,
                col(CaseFileRow.state) == "sealed",
            )
            .values(state="erased", sealed=None)
        )

    def _fields(
        self, seq: int, event: Event, filed: set[tuple[str, int, str]]
    ) -> list[dict[str, Any]]:
        """The rows of the event's personal fields if it reached or came from this agency,
        but those ``filed`` already."""
        if self.agency not in (event.source, event.target) and event.target != BROADCAST:
            return []
        data = event.data
        rows = []
        for name in sorted(type(data).personal_fields()):
            value = getattr(data, name)
            if value is None or (event.case_id, seq, name) in filed:
                continue
            sealed = value.model_dump_json() if isinstance(value, Sealed) else None
            rows.append(
                {
                    "agency": self.agency,
                    "case_id": event.case_id,
                    "seq": seq,
                    "field": name,
                    "event_type": event.type,
                    "source": event.source,
                    "time": event.time,
                    "state": "sealed" if sealed else "clear",
                    "sealed": sealed,
                }
            )
        return rows
