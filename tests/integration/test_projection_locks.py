"""Two consumers of one agency (its inbound and its sent durables, in two instances) folding
the same case's consent book at once on PostgreSQL: the second waits for the first, and
neither's consent is lost. (SQLite takes its write lock at BEGIN: one writer at a time.)"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import text
from sqlmodel import Session, SQLModel, select

from lintas.consumers.privacy import AgencyPrivacy, PrivacyCaseRow
from lintas.infra.db import create_db_engine

from ..unit._events import at, ev
from ..unit.test_privacy_folds import CASE, CONSENT, OPENED, WITHDRAWN
from .conftest import POSTGRES_ENV, postgres_database

pytestmark = pytest.mark.postgres


def _lock_waiters(session: Session) -> int:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(session.execute(query).scalar_one())


def test_two_consumers_folding_one_book_at_once_lose_neither_consent() -> None:
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        engine = create_db_engine(url)
        SQLModel.metadata.create_all(engine)
        with Session(engine) as session:
            AgencyPrivacy("kp2mi").apply_batch(session, [(1, OPENED), (2, CONSENT)])
            session.commit()
        data = CONSENT.data.model_dump(mode="json", exclude_none=True) | {"consent_id": "c-2"}
        second = ev(
            "consent.recorded", data, source="kemlu", target="all", case_id=CASE, time=at(4)
        )

        # Instance A's inbound consumer folds the withdrawal, and has not committed yet ...
        first = Session(engine)
        AgencyPrivacy("kp2mi").apply_batch(first, [(3, WITHDRAWN)])
        failed: list[BaseException] = []

        def other_instance() -> None:  # ... when instance B's sent consumer folds consent 2
            try:
                with Session(engine) as session:
                    AgencyPrivacy("kp2mi").apply_batch(session, [(4, second)])
                    session.commit()
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=other_instance)
        thread.start()
        with Session(engine) as watcher:
            deadline = time.monotonic() + 10
            while thread.is_alive() and not _lock_waiters(watcher):
                assert time.monotonic() < deadline, "B neither finished nor waited for A"
                watcher.rollback()  # a fresh snapshot of pg_stat_activity each time
        first.commit()
        first.close()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert not failed
        with Session(engine) as session:
            book = json.loads(session.exec(select(PrivacyCaseRow)).one().book)
        engine.dispose()
        # [seq, by, consent id, scopes, agencies, withdrawn at]
        assert [(g[0], g[2], g[-1]) for g in book] == [(2, "c-1", 3), (4, "c-2", None)]
