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

from sqlalchemy import BigInteger
from sqlmodel import Field, Session, SQLModel, col, update

from lintas.contracts import BROADCAST, Event, Sealed
from lintas.contracts import gate as gate_rules
from lintas.infra.db import UTCDateTime

__all__ = ["AgencyPrivacy", "CaseFileRow", "PrivacyCaseRow"]

_BOOK_TYPES = gate_rules.CONSENT_TYPES | {"case.erased"}


class PrivacyCaseRow(SQLModel, table=True):
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


def _dump(book: gate_rules.ConsentBook) -> str:
    return json.dumps(
        [
            [g.seq, g.by, g.consent_id, sorted(g.scopes), sorted(g.agencies), g.withdrawn_seq]
            for g in book.grants
        ]
    )


def _load(row: PrivacyCaseRow | None) -> gate_rules.ConsentBook:
    if row is None:
        return gate_rules.ConsentBook()
    return gate_rules.ConsentBook(
        grants=tuple(
            gate_rules.Grant(seq, by, consent_id, frozenset(scopes), frozenset(agencies), until)
            for seq, by, consent_id, scopes, agencies, until in json.loads(row.book)
        ),
        erased_seq=row.erased_seq,
    )


class AgencyPrivacy:
    """The gate and the case file of one agency, applied to ordered batches."""

    tables: tuple[type[SQLModel], ...] = (PrivacyCaseRow, CaseFileRow)

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
        """Gate, fold and file the batch in order; raises the first refusal. One read per
        case whose book the batch needs; most answers need none."""
        rows: dict[str, PrivacyCaseRow | None] = {}
        books: dict[str, gate_rules.ConsentBook] = {}
        changed: set[str] = set()
        with session.no_autoflush:
            for seq, event in batch:
                personal = gate_rules.carries_personal(event)
                if not self._needs_book(event, personal):
                    if personal:
                        self._file(session, seq, event)
                    continue
                case_id = event.case_id
                if case_id not in books:
                    rows[case_id] = session.get(PrivacyCaseRow, (self.agency, case_id))
                    books[case_id] = _load(rows[case_id])
                book = books[case_id]
                if event.target == self.agency:
                    refused = gate_rules.gate_refusal(book, event, at=seq)
                    if refused is not None:
                        raise refused
                if personal:
                    self._file(session, seq, event)
                folded = gate_rules.fold(book, event, seq).about(self.agency)
                if folded != book:
                    books[case_id] = folded
                    changed.add(case_id)
                if event.type == "case.erased":
                    self._erase(session, case_id)
            for case_id in sorted(changed):
                self._store(session, case_id, rows[case_id], books[case_id])

    def _store(
        self,
        session: Session,
        case_id: str,
        row: PrivacyCaseRow | None,
        book: gate_rules.ConsentBook,
    ) -> None:
        if row is None:
            session.add(
                PrivacyCaseRow(
                    agency=self.agency,
                    case_id=case_id,
                    book=_dump(book),
                    erased_seq=book.erased_seq,
                )
            )
        else:
            row.book = _dump(book)
            row.erased_seq = book.erased_seq

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

    def _file(self, session: Session, seq: int, event: Event) -> None:
        """File the event's personal fields if it reached or came from this agency. An
        agency's own broadcast reaches both of its consumers: it is filed once."""
        if self.agency not in (event.source, event.target) and event.target != BROADCAST:
            return
        twice = event.source == self.agency and event.target == BROADCAST
        data = event.data
        for name in sorted(type(data).personal_fields()):
            value = getattr(data, name)
            if value is None:
                continue
            key = (self.agency, event.case_id, seq, name)
            if twice and session.get(CaseFileRow, key) is not None:
                continue
            sealed = value.model_dump_json() if isinstance(value, Sealed) else None
            session.add(
                CaseFileRow(
                    agency=self.agency,
                    case_id=event.case_id,
                    seq=seq,
                    field=name,
                    event_type=event.type,
                    source=event.source,
                    time=event.time,
                    state="sealed" if sealed else "clear",
                    sealed=sealed,
                )
            )
