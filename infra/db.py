"""Projection databases: engines, the tracking table, one transaction per batch.

A consumer's tracking row (its last applied stream sequence) is written in the same
transaction as the projection rows it produced, so a redelivered message is recognised
and skipped: exactly-once effects on at-least-once delivery.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Connection, DateTime, TypeDecorator, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlmodel import Field, Session, SQLModel, create_engine, select

__all__ = [
    "Retried",
    "Tracking",
    "UTCDateTime",
    "create_db_engine",
    "ensure_tables",
    "read_position",
    "schema_lock",
    "write_position",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: lintas stores only aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Tracking(SQLModel, table=True):
    """Where one durable consumer stands in one stream."""

    __tablename__ = "lintas_tracking"

    consumer: str = Field(primary_key=True, max_length=64)
    stream: str = Field(primary_key=True, max_length=64)
    # Stream sequences and counts are 64-bit: a plain int is a 32-bit INTEGER on PostgreSQL.
    position: int = Field(default=0, sa_type=BigInteger, description="last applied stream sequence")
    applied: int = Field(
        default=0, sa_type=BigInteger, description="events applied to the projection"
    )
    rejected: int = Field(
        default=0, sa_type=BigInteger, description="messages that broke their contract"
    )
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC), sa_type=UTCDateTime)


class Retried(SQLModel, table=True):
    """A quarantined message applied later by ``lintas dlq retry``: written in the same
    transaction as its effect, so a second retry of it changes nothing."""

    __tablename__ = "lintas_retried"

    consumer: str = Field(primary_key=True, max_length=64)
    stream: str = Field(primary_key=True, max_length=64)
    stream_seq: int = Field(primary_key=True, sa_type=BigInteger)
    retried_at: datetime = Field(default_factory=lambda: datetime.now(UTC), sa_type=UTCDateTime)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite would BEGIN only at the first write, after the tracking row was read:
    # two processes could then both read the same position. We begin ourselves (below).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers (the CLI) look while a consumer writes; busy_timeout turns a
    # brief lock into a wait instead of an error.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _begin_immediate(conn: Any) -> None:
    # Take the write lock before reading the tracking row: one writer at a time, across
    # processes, sees the position the previous one committed.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def schema_lock(conn: Connection) -> None:
    """Hold the database's tables still until ``conn``'s transaction ends: one process at a
    time makes, drops or inspects them.

    PostgreSQL's ``CREATE TABLE`` (``create_all`` asks first, then creates) is no atomic
    if-absent: two processes starting at once both find a table missing, and the second
    fails on the catalog (``pg_type_typname_nsp_index``, or "already exists"). Behind this
    transaction lock the second waits, then finds the tables the first committed (DDL is
    transactional there). SQLite's BEGIN IMMEDIATE (above) is its one write lock already."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('lintas_projection'))"))


def ensure_tables(engine: Engine, *tables: type[SQLModel]) -> None:
    """Make the tracking tables and ``tables`` where missing, one process at a time."""
    with engine.begin() as conn:
        schema_lock(conn)
        SQLModel.metadata.create_all(
            conn,
            tables=[
                Tracking.__table__,  # type: ignore[attr-defined]
                Retried.__table__,  # type: ignore[attr-defined]
                *(t.__table__ for t in tables),  # type: ignore[attr-defined]
            ],
        )


def read_position(session: Session, consumer: str, stream: str) -> Tracking:
    """The tracking row, locked until the transaction ends (PostgreSQL: FOR UPDATE), so two
    instances of one consumer take turns rather than both applying from one position.

    A missing row is inserted first, if still absent: two instances starting at once then
    queue on the one row (the second's insert waits for the first's commit and does
    nothing), instead of both adding it and the second failing on the primary key."""
    session.execute(_insert_if_absent(session, Tracking(consumer=consumer, stream=stream)))
    return session.exec(
        select(Tracking)
        .where(Tracking.consumer == consumer, Tracking.stream == stream)
        .with_for_update()
    ).one()


def _insert_if_absent(session: Session, row: Tracking) -> postgresql.Insert | sqlite.Insert:
    # SQLite's ON CONFLICT DO NOTHING is its INSERT OR IGNORE, for a key conflict.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Tracking).values(row.model_dump()).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(Tracking).values(row.model_dump()).on_conflict_do_nothing()
    raise NotImplementedError(f"projection databases are SQLite or PostgreSQL, not {dialect}")


def write_position(row: Tracking, position: int, *, applied: int, rejected: int) -> None:
    row.position = position
    row.applied += applied
    row.rejected += rejected
    row.updated_at = datetime.now(UTC)
