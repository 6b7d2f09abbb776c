"""Two consumers of one agency (its inbound and its sent durables, in two instances) folding
the same case at once on PostgreSQL: the second waits for the first, and neither's consent
is lost, whether the case's book already exists or both would create it. (SQLite takes its
write lock at BEGIN: one writer at a time.)"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from lintas.consumers.gate import GateCaseRow
from lintas.consumers.projections import Batch, WorklistProjection
from lintas.contracts import Event, new_case_id
from tests.support.events import CASE, CONSENT, OPENED, WITHDRAWN, at, ev
from tests.support.postgres import queued_behind

pytestmark = pytest.mark.postgres


def _consent(case_id: str, consent_id: str, minutes: float) -> Event:
    data = CONSENT.data.model_dump(mode="json", exclude_none=True) | {"consent_id": consent_id}
    return ev(
        "consent.recorded", data, source="kemlu", target="all", case_id=case_id, time=at(minutes)
    )


def _at_once(engine: Engine, first: Batch, second: Batch) -> None:
    """``first`` applied and held uncommitted while another instance applies ``second``;
    then ``first`` commits, and ``second`` must finish without an error."""
    holder = Session(engine)
    WorklistProjection("kp2mi").apply_batch(holder, first)

    def other_instance() -> None:
        with Session(engine) as session:
            WorklistProjection("kp2mi").apply_batch(session, second)
            session.commit()

    queued_behind(engine, holder, other_instance)


def _grants(engine: Engine, case_id: str) -> list[tuple[int, str, int | None]]:
    with Session(engine) as session:
        row = session.exec(select(GateCaseRow).where(GateCaseRow.case_id == case_id)).one()
    # [seq, by, consent id, scopes, agencies, withdrawn at]
    return [(g[0], g[2], g[-1]) for g in json.loads(row.book)]


def test_two_consumers_folding_one_book_at_once_lose_neither_consent(
    postgres_engine: Engine,
) -> None:
    engine = postgres_engine
    with Session(engine) as session:
        WorklistProjection("kp2mi").apply_batch(session, [(1, OPENED), (2, CONSENT)])
        session.commit()
    # Instance A's inbound consumer folds the withdrawal, instance B's sent one consent 2.
    _at_once(
        engine,
        [(3, WITHDRAWN)],
        [(4, _consent(CASE, "c-2", 4))],
    )
    assert _grants(engine, CASE) == [(2, "c-1", 3), (4, "c-2", None)]


def test_two_consumers_creating_one_book_at_once_lose_neither_consent(
    postgres_engine: Engine,
) -> None:
    engine = postgres_engine
    case_id = new_case_id()  # no book yet: both would insert it
    _at_once(
        engine,
        [(1, _consent(case_id, "c-1", 1))],
        [(2, _consent(case_id, "c-2", 2))],
    )
    assert _grants(engine, case_id) == [(1, "c-1", None), (2, "c-2", None)]
