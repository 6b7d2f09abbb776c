"""The outbox's table is made and migrated with Alembic, on real SQLite and PostgreSQL.

From an empty database, and from one the code before migrations made (SQLModel's
``create_all``, rows and all): both end at the newest revision, with the table exactly as
the model declares it (Alembic's own comparison finds nothing to change), rows kept, and
a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import Session

from lintas.infra.db import UTCDateTime, create_db_engine
from lintas.producers import Outbox, OutboxRecord, ensure_outbox_table
from lintas.producers._schema import MIGRATIONS, VERSION_TABLE, revision
from lintas.producers.outbox import OutboxDeadLetter
from tests.support.postgres import POSTGRES_ENV, postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = create_db_engine(f"sqlite:///{tmp_path / 'agency.sqlite'}")
        yield made
        made.dispose()
        return
    with postgres_database() as url:
        if url is None:
            pytest.skip(f"{POSTGRES_ENV} is not set")
        made = create_db_engine(url)
        yield made
        made.dispose()


def _before_migrations() -> Table:
    """``lintas_outbox`` as the code before migrations declared it, kept here as it was so
    that this stays the old table when the model moves on."""
    return Table(
        "lintas_outbox",
        MetaData(),
        Column(
            "position",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
        ),
        Column("id", String(36), nullable=False, unique=True),
        Column("agency", String(64), nullable=False),
        Column("subject", String(255), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime),
        Column("stream_seq", BigInteger),
        Column("attempts", Integer, nullable=False),
        Column("last_error", String(300)),
        Index(
            "ix_lintas_outbox_pending",
            "position",
            sqlite_where=text("sent_at IS NULL"),
            postgresql_where=text("sent_at IS NULL"),
        ),
        sqlite_autoincrement=True,
    )


def _differences(engine: Engine) -> list[Any]:
    """What Alembic would change to make the database's outbox (and its dead letters) the
    model's."""
    model = MetaData()
    OutboxRecord.__table__.to_metadata(model)  # type: ignore[attr-defined]
    OutboxDeadLetter.__table__.to_metadata(model)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _parent: (
                    kind != "table" or name in {"lintas_outbox", "lintas_outbox_dead"}
                ),
            },
        )
        return list(compare_metadata(context, model))


def _head() -> str:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _add(engine: Engine, outbox: Outbox) -> str:
    with Session(engine) as session:
        event = outbox.add(
            session,
            "case.closed",
            {"reason": "reunified"},
            case_id="C01M98983XRES49DSZN3PCKHDVA",
            target="all",
            time=datetime(2025, 3, 1, tzinfo=UTC),
        )
        session.commit()
    return event.id


def _ids(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxRecord.id).order_by(OutboxRecord.position)))  # type: ignore[arg-type]


def test_an_empty_database_is_brought_to_the_newest_revision(engine: Engine) -> None:
    assert revision(engine) is None
    ensure_outbox_table(engine)
    assert revision(engine) == _head() == "0002"
    assert _differences(engine) == []
    first = _add(engine, Outbox("kemlu"))
    ensure_outbox_table(engine)  # again: nothing to do
    assert _ids(engine) == [first]
    assert revision(engine) == _head()


def test_a_database_made_before_migrations_is_taken_as_revision_1(engine: Engine) -> None:
    old = _before_migrations()
    old.metadata.create_all(engine)
    assert VERSION_TABLE not in inspect(engine).get_table_names()
    kept = _add(engine, Outbox("kemlu"))
    ensure_outbox_table(engine)
    assert revision(engine) == _head()
    assert _ids(engine) == [kept]
    assert _differences(engine) == []
    later = _add(engine, Outbox("kemlu"))
    assert _ids(engine) == [kept, later]


def test_the_migrations_ship_inside_the_package() -> None:
    assert MIGRATIONS.parent.name == "producers"
    assert (MIGRATIONS / "env.py").is_file()
    assert sorted(p.name for p in (MIGRATIONS / "versions").glob("*.py")) == [
        "r0001_outbox.py",
        "r0002_outbox_dead.py",
    ]
