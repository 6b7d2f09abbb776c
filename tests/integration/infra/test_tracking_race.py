"""Two instances of one consumer starting at once on PostgreSQL, neither with a tracking
row yet: both would insert it. The second must wait for the first and then read the row
the first committed, not fail on the primary key (a UniqueViolation, then a retry loop)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from lintas.infra.db import Tracking, read_position, write_position
from tests.support.postgres import queued_behind

pytestmark = pytest.mark.postgres


def test_two_instances_creating_one_tracking_row_take_turns(postgres_engine: Engine) -> None:
    engine = postgres_engine
    first = Session(engine)
    write_position(read_position(first, "record", "LINTAS"), 5, applied=5, rejected=0)
    first.flush()  # the row exists, uncommitted: the other instance cannot see it yet
    seen: list[int] = []

    def other_instance() -> None:
        with Session(engine) as session:
            tracking = read_position(session, "record", "LINTAS")
            seen.append(tracking.position)
            write_position(tracking, 7, applied=2, rejected=0)
            session.commit()

    queued_behind(engine, first, other_instance)
    assert seen == [5]  # it waited, then read what the first committed
    with Session(engine) as session:
        row = session.exec(select(Tracking)).one()
    assert (row.position, row.applied) == (7, 7)
