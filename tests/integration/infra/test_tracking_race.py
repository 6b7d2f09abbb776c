"""Two instances of one consumer starting at once on PostgreSQL, neither with a tracking
row yet: both would insert it. The second must wait for the first and then read the row
the first committed, not fail on the primary key (a UniqueViolation, then a retry loop)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from lintas.infra.db import Tracking, create_db_engine, ensure_tables, read_position, write_position
from tests.support.postgres import POSTGRES_ENV, lock_waiters, postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine() -> Engine:
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        engine = create_db_engine(url)
        ensure_tables(engine)
        yield engine
        engine.dispose()


def test_two_instances_creating_one_tracking_row_take_turns(engine: Engine) -> None:
    first = Session(engine)
    write_position(read_position(first, "record", "LINTAS"), 5, applied=5, rejected=0)
    first.flush()  # the row exists, uncommitted: the other instance cannot see it yet
    first_pid = first.execute(text("SELECT pg_backend_pid()")).scalar_one()
    seen: list[int] = []
    failed: list[BaseException] = []

    def other_instance() -> None:
        try:
            with Session(engine) as session:
                tracking = read_position(session, "record", "LINTAS")
                seen.append(tracking.position)
                write_position(tracking, 7, applied=2, rejected=0)
                session.commit()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=other_instance)
    thread.start()
    with Session(engine) as watcher:
        deadline = time.monotonic() + 10
        while thread.is_alive() and not lock_waiters(watcher, first_pid):
            assert time.monotonic() < deadline, "the other instance neither finished nor waited"
            watcher.rollback()  # a fresh snapshot of pg_stat_activity each time
            time.sleep(0.01)  # a poll interval, not a synchronisation: the wait is above
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not failed, failed
    assert seen == [5]  # it waited, then read what the first committed
    with Session(engine) as session:
        row = session.exec(select(Tracking)).one()
    assert (row.position, row.applied) == (7, 7)
