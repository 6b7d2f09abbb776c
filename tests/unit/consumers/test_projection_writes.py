"""The projections' batch writes on a real SQLite store: what they file, once, and erase;
and the record projector's parsed-record cache against rows rewritten behind its back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select

from lintas.consumers.gate import AgencyGate, CaseFileRow, GateCaseRow
from lintas.consumers.projections import RecordCaseRow, RecordProjection, load_record
from lintas.consumers.record import CaseRecord
from lintas.contracts import BROADCAST, new_case_id
from lintas.infra.db import create_db_engine
from tests.support.events import CASE, CONSENT, ERASED, OPENED, WITHDRAWN, at, ev


def _engine(tmp_path: Path) -> Engine:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'store.db'}")
    SQLModel.metadata.create_all(engine)
    return engine


def _apply(engine: Engine, projection: AgencyGate | RecordProjection, batch: list) -> None:
    with Session(engine) as session:
        projection.apply_batch(session, batch)
        session.commit()


def _filed(engine: Engine) -> list[tuple[str, int, str, str, bool]]:
    with Session(engine) as session:
        rows = session.exec(select(CaseFileRow).order_by(CaseFileRow.seq, CaseFileRow.field))
        return [(r.agency, r.seq, r.field, r.state, r.sealed is not None) for r in rows]


def test_an_agencys_own_broadcast_reaching_both_its_consumers_is_filed_once(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path)
    privacy = AgencyGate("kemlu")
    # Its sent consumer: everything kemlu published; its inbound one: the broadcasts.
    _apply(engine, privacy, [(1, OPENED), (2, CONSENT), (3, WITHDRAWN)])
    _apply(engine, privacy, [(2, CONSENT), (3, WITHDRAWN)])
    assert _filed(engine) == [
        ("kemlu", 1, "child", "sealed", True),
        ("kemlu", 3, "reason", "sealed", True),
    ]


def test_an_erasure_erases_the_fields_filed_before_it_in_the_same_batch(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    privacy = AgencyGate("kp2mi")
    _apply(engine, privacy, [(1, OPENED)])
    _apply(engine, privacy, [(2, CONSENT), (3, WITHDRAWN), (4, ERASED)])
    assert _filed(engine) == [
        ("kp2mi", 1, "child", "erased", False),
        ("kp2mi", 3, "reason", "erased", False),
    ]
    with Session(engine) as session:
        book = session.exec(select(GateCaseRow)).one()
    assert book.erased_seq == 4


def test_the_record_projector_rereads_a_record_rewritten_behind_its_back(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    projection = RecordProjection()
    _apply(engine, projection, [(1, OPENED), (2, CONSENT)])
    # Another instance (another process) applied the withdrawal meanwhile.
    _apply(engine, RecordProjection(), [(3, WITHDRAWN)])
    _apply(engine, projection, [(4, ERASED)])
    with Session(engine) as session:
        record = load_record(session, CASE)
        rows = session.exec(select(RecordCaseRow)).all()
    assert record is not None
    assert record.last_seq == 4
    assert [c.consent_id for c in record.consents] == ["c-1"]
    assert record.consents[0].withdrawn_seq == 3  # the other instance's write was read back
    assert [(r.case_id, r.last_seq, r.status) for r in rows] == [(CASE, 4, record.status)]


def test_the_record_projector_parses_a_record_it_wrote_only_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(tmp_path)
    parsed: list[str] = []
    real = CaseRecord.model_validate_json

    def counted(doc: str | bytes) -> CaseRecord:
        parsed.append(str(doc))
        return real(doc)

    monkeypatch.setattr(CaseRecord, "model_validate_json", counted)
    projection = RecordProjection()
    _apply(engine, projection, [(1, OPENED)])
    _apply(engine, projection, [(2, CONSENT)])
    _apply(engine, projection, [(3, WITHDRAWN)])
    assert parsed == []  # each batch found the JSON it wrote last
    tight = RecordProjection(held_bytes=1)  # holds nothing: every record is parsed
    _apply(engine, tight, [(4, ERASED)])
    assert len(parsed) == 1


def test_a_batch_updates_one_book_and_inserts_another(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    privacy = AgencyGate("kp2mi")
    _apply(engine, privacy, [(1, OPENED), (2, CONSENT)])
    other = new_case_id()
    data = CONSENT.data.model_dump(mode="json", exclude_none=True)
    consent = ev(
        "consent.recorded", data, source="kemlu", target=BROADCAST, case_id=other, time=at(6)
    )
    _apply(engine, privacy, [(3, WITHDRAWN), (4, consent)])
    with Session(engine) as session:
        books = {b.case_id: json.loads(b.book) for b in session.exec(select(GateCaseRow))}
    assert books[CASE][0][-1] == 3  # withdrawn at 3
    assert books[other][0][0] == 4  # granted at 4, not withdrawn
    assert books[other][0][-1] is None


def test_a_record_row_gone_before_its_update_fails_the_batch(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    record = RecordProjection.fold({}, [(1, OPENED)])
    with Session(engine) as session, pytest.raises(RuntimeError, match="lost 1 of"):
        # Read as stored, gone by the update: the record must not vanish unnoticed.
        RecordProjection.store(session, {CASE}, record)
