"""Projections whose tables no longer match the code are found and rebuilt from the log.

On real SQLite and PostgreSQL: a fresh database gets the tables and its version noted; one
made before versions were noted, with the code's tables, is kept; one with older tables, or
noted at an older version, is dropped with its consumers' tracking, and, on a real
nats-server, a consumer started over it catches up from sequence 1 before it takes a
delivery and ends with the very rows a fresh build has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select
from structlog.testing import capture_logs

from lintas.consumers.app import Databases, attach_record, catch_up_broker, create_broker
from lintas.consumers.projections import RecordCaseRow, RecordProjection, WorklistProjection
from lintas.consumers.rebuild import ProjectionBuild, prepare, reset, stale
from lintas.infra.bootstrap import Parts
from lintas.infra.db import Retried, Tracking, create_db_engine, ensure_tables
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.support.helpers import Applied, declare_record, publish_case
from tests.support.postgres import POSTGRES_ENV, postgres_database

STREAM = "LINTAS"

# record_case as the first code that kept it might have made it: no whereabouts yet.
OLD_RECORD_CASE = """CREATE TABLE record_case (
    case_id VARCHAR(32) PRIMARY KEY,
    situation VARCHAR(32),
    owner VARCHAR(64),
    status VARCHAR(16) NOT NULL,
    opened_at TIMESTAMP,
    last_seq BIGINT NOT NULL,
    doc TEXT NOT NULL
)"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = create_db_engine(f"sqlite:///{tmp_path / 'projections.sqlite'}")
        yield made
        made.dispose()
        return
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        made = create_db_engine(url)
        yield made
        made.dispose()


def _track(engine: Engine, *positions: tuple[str, int]) -> None:
    ensure_tables(engine)
    with Session(engine) as session:
        for consumer, position in positions:
            session.add(Tracking(consumer=consumer, stream=STREAM, position=position))
            session.add(Retried(consumer=consumer, stream=STREAM, stream_seq=position))
        session.commit()


def _tracked(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {row.consumer: row.position for row in session.exec(select(Tracking))}


def _retried(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return {row.consumer for row in session.exec(select(Retried))}


def _noted(engine: Engine) -> dict[str, tuple[str, int]]:
    with Session(engine) as session:
        return {
            row.consumer: (row.projection, row.version)
            for row in session.exec(select(ProjectionBuild))
        }


def _old_record_case(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(OLD_RECORD_CASE))
        conn.execute(
            text(
                "INSERT INTO record_case (case_id, status, last_seq, doc) "
                "VALUES ('C-stale', 'open', 7, '{}')"
            )
        )


def test_a_fresh_database_gets_the_tables_and_its_version_noted(engine: Engine) -> None:
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) is None
    assert "record_case" in inspect(engine).get_table_names()
    assert _noted(engine) == {"record": ("record", 2)}
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) is None  # and again: nothing


def test_tables_made_before_versions_with_the_codes_shape_are_kept(engine: Engine) -> None:
    # What the code before versions did: the tables, a tracking row, no note.
    ensure_tables(engine, RecordCaseRow)
    _track(engine, ("record", 12))
    with Session(engine) as session:
        session.add(RecordCaseRow(case_id="C-kept", status="open", last_seq=12, doc="{}"))
        session.commit()
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) is None
    assert _tracked(engine) == {"record": 12}
    with Session(engine) as session:
        assert [r.case_id for r in session.exec(select(RecordCaseRow))] == ["C-kept"]
    assert _noted(engine) == {"record": ("record", 2)}


def test_older_tables_are_dropped_with_their_consumers_tracking(engine: Engine) -> None:
    _old_record_case(engine)
    _track(engine, ("record", 7), ("agency-kemlu", 5))
    assert stale(engine, RecordProjection(), STREAM) == "table record_case lacks column whereabouts"
    with capture_logs() as logs:
        why = prepare(engine, RecordProjection(), STREAM, ["record"])
    assert why == "table record_case lacks column whereabouts"
    columns = {c["name"] for c in inspect(engine).get_columns("record_case")}
    assert "whereabouts" in columns
    with Session(engine) as session:
        assert session.exec(select(RecordCaseRow)).all() == []
    # Only the record's own consumer starts again; another projection's is left alone.
    assert _tracked(engine) == {"agency-kemlu": 5}
    assert _retried(engine) == {"agency-kemlu"}
    assert _noted(engine) == {"record": ("record", 2)}
    assert [e["event"] for e in logs] == ["projection.stale", "projection.reset"]
    assert logs[1]["consumers"] == ["record"]


def test_a_projection_noted_at_an_older_version_is_stale(engine: Engine) -> None:
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) is None
    _track(engine, ("record", 3))
    with Session(engine) as session:
        note = session.get(ProjectionBuild, ("record", STREAM))
        assert note is not None
        note.version = 0
        session.commit()
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) == (
        "record built it at schema version 0, the code's is 2"
    )
    assert _tracked(engine) == {}
    assert _noted(engine) == {"record": ("record", 2)}


def test_tables_dropped_by_hand_under_a_tracking_row_are_stale(engine: Engine) -> None:
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) is None
    _track(engine, ("record", 9))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE record_case"))
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) == "its tables are missing"
    assert _tracked(engine) == {}


def test_a_shared_worklist_is_reset_for_every_agency(engine: Engine) -> None:
    """One database for every projection: the worklist tables hold every agency's items, so
    every agency's worklist consumers start again, and the record's do not."""
    projection = WorklistProjection("kemlu")
    assert prepare(engine, projection, STREAM, ["agency-kemlu", "sent-kemlu"]) is None
    assert prepare(engine, RecordProjection(), STREAM, ["record"]) is None
    _track(
        engine,
        ("agency-kemlu", 4),
        ("sent-kemlu", 6),
        ("agency-dukcapil", 5),  # noted before versions were: told by its name
        ("record", 9),
        ("staff-kemlu", 3),  # the demo's staff keep no projection
    )
    forgotten = reset(engine, projection, STREAM, ["agency-kemlu", "sent-kemlu"])
    assert forgotten == ["agency-dukcapil", "agency-kemlu", "sent-kemlu"]
    assert _tracked(engine) == {"record": 9, "staff-kemlu": 3}
    assert _noted(engine) == {
        "agency-kemlu": ("worklist", 1),
        "sent-kemlu": ("worklist", 1),
        "record": ("record", 2),
    }


# -- rebuilt on start, from the log ------------------------------------------------------------


def _rows(databases: Databases) -> list[dict[str, Any]]:
    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        rows = session.exec(select(RecordCaseRow).order_by(RecordCaseRow.case_id)).all()
        return [row.model_dump() for row in rows]


async def _start(url: str, settings: Settings, on_commit: list[Any]) -> tuple[Any, Databases]:
    """The record projector as a process starts it: attached (its tables prepared), caught
    up from the log, then consuming. Returns its broker and databases."""
    databases = Databases(settings)
    broker = create_broker(url, settings, "platform")
    attach_record(broker, databases, settings, on_commit=on_commit)
    parts = Parts(settings, url, service="lintas-test")
    await catch_up_broker(parts, broker)
    await broker.start()
    await parts.close()
    return broker, databases


@pytest.mark.nats
async def test_a_record_built_at_an_older_schema_is_rebuilt_on_start_as_fresh(
    nats_server: EmbeddedNats,
    js: JetStreamContext,
    settings: Settings,
    database_url: str | None,
) -> None:
    settings = settings.model_copy(update={"database_url": database_url})
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    for _ in range(3):
        await publish_case(kemlu)  # 4 events each

    applied = Applied()
    broker, databases = await _start(nats_server.url, settings, [applied])
    await applied.wait_for(12)
    await broker.stop()
    fresh = _rows(databases)
    assert len(fresh) == 3
    engine, _ = databases.for_consumer("record")
    # As older code would have left it: its own table shape, a row of its own, its version.
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE record_case"))
    _old_record_case(engine)
    with Session(engine) as session:
        note = session.get(ProjectionBuild, ("record", settings.stream))
        assert note is not None
        note.version = 0
        session.commit()
    databases.dispose()

    again = Applied()
    with capture_logs() as logs:
        broker, databases = await _start(nats_server.url, settings, [again])
    try:
        events = [e for e in logs if e["event"].startswith("projection.")]
        assert events[0]["event"] == "projection.stale"
        assert events[0]["reason"] == "record built it at schema version 0, the code's is 2"
        caught = next(e for e in events if e["event"] == "projection.caught_up")
        assert (caught["start"], caught["through"], caught["applied"]) == (0, 12, 12)
        assert any(e["event"] == "projection.catch_up_progress" for e in events)
        # Caught up before the broker took a delivery: the same rows as the fresh build.
        assert _rows(databases) == fresh
        assert [seq for seq, _ in again.events] == list(range(1, 13))

        await publish_case(kemlu, steps=0)  # and it goes on consuming from there
        await again.wait_for(13)
        assert [seq for seq, _ in again.events] == list(range(1, 14))
    finally:
        await broker.stop()
        databases.dispose()
    assert len(_rows(databases)) == 4
    assert _tracked(databases.for_consumer("record")[0])["record"] == 13
    databases.dispose()


@pytest.mark.nats
async def test_a_current_projection_starts_without_a_rebuild(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await declare_record(js, settings)
    kemlu = Publisher(js, "kemlu", stream=settings.stream)
    await publish_case(kemlu)
    applied = Applied()
    broker, databases = await _start(nats_server.url, settings, [applied])
    await applied.wait_for(4)
    await broker.stop()
    databases.dispose()
    with capture_logs() as logs:
        broker, databases = await _start(nats_server.url, settings, [])
    await broker.stop()
    databases.dispose()
    assert [e["event"] for e in logs if e["event"].startswith("projection.")] == []
