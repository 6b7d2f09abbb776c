"""Stream sequences past 2**31 fit every table that keeps one, on SQLite and PostgreSQL
(a plain ``int`` column is a 32-bit INTEGER on PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, SQLModel, select

from lintas.consumers.projections import RecordProjection, load_record
from lintas.consumers.watchdog import DeadlineRow
from lintas.infra.db import Retried, create_db_engine, read_position, write_position
from tests.support.events import CASE, OPENED, at

FAR = 2**40  # a stream far past 2**31 messages


def test_sequences_past_32_bits_are_stored(database_url: str | None, tmp_path: Path) -> None:
    engine = create_db_engine(database_url or f"sqlite:///{tmp_path / 'store.db'}")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        write_position(read_position(session, "record", "LINTAS"), FAR, applied=FAR, rejected=1)
        RecordProjection().apply_batch(session, [(FAR, OPENED)])
        session.add(Retried(consumer="record", stream="LINTAS", stream_seq=FAR + 1))
        session.add(
            DeadlineRow(
                case_id=CASE,
                requester="kp2mi",
                request_id="r-1",
                handoff="referral",
                asked="kemensos",
                requested_at=at(0),
                due=at(60),
                escalate_at=at(120),
                status="overdue",
                overdue_seq=FAR + 2,
            )
        )
        session.commit()
    with Session(engine) as session:
        tracking = read_position(session, "record", "LINTAS")
        record = load_record(session, CASE)
        retried = session.exec(select(Retried)).one()
        deadline = session.exec(select(DeadlineRow)).one()
    engine.dispose()
    assert (tracking.position, tracking.applied) == (FAR, FAR)
    assert record is not None
    assert record.last_seq == FAR
    assert retried.stream_seq == FAR + 1
    assert deadline.overdue_seq == FAR + 2
