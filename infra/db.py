"""Projection databases: engines, the tracking table, one transaction per batch.

A consumer's tracking row (its last applied stream sequence) is written in the same
transaction as the projection rows it produced, so a redelivered message is recognised
and skipped: exactly-once effects on at-least-once delivery.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Connection, DateTime, TypeDecorator, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlmodel import Field, Session, SQLModel, create_engine, select

from lintas.contracts.errors import TransientError

__all__ = [
    "Release",
    "Retried",
    "TablesBusy",
    "Tracking",
    "UTCDateTime",
    "create_db_engine",
    "ensure_tables",
    "hold_tables",
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


class TablesBusy(TransientError):
    """Another process holds a projection's tables in a way that excludes this one: a
    rebuild, while consumers run, or the reverse."""


Release = Callable[[], None]


def hold_tables(engine: Engine, name: str, *, exclusive: bool) -> Release:
    """Hold the tables of projection ``name`` in ``engine``'s database until the returned
    function is called (or the process ends): shared by every process that writes them in
    order (its consumers, ``lintas dlq retry``), exclusive for one that drops and rebuilds
    them (``lintas rebuild``). Never waits: :class:`TablesBusy` if the other kind holds them.

    PostgreSQL: a session advisory lock on a connection of its own, kept out of the pool
    (a pooled connection keeps session locks after it is returned). SQLite: ``flock`` on a
    file beside the database (per open file, so it holds between processes and within
    one). Either is let go by the operating system or the server when the process dies:
    a crashed consumer never blocks a rebuild."""
    if engine.dialect.name == "postgresql":
        return _hold_postgres(engine, name, exclusive)
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return lambda: None  # one process's own database: nobody else to exclude
    fd = os.open(f"{database}.{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _busy(name, exclusive) from None

    def release() -> None:
        os.close(fd)  # closing the file lets go of its lock

    return release


def _hold_postgres(engine: Engine, name: str, exclusive: bool) -> Release:
    kind = "" if exclusive else "_shared"
    # The two-key form: a key space of its own, apart from schema_lock's one-key locks.
    keys = "hashtext('lintas_tables'), hashtext(:name)"
    conn = engine.connect()
    try:
        held = conn.execute(text(f"SELECT pg_try_advisory_lock{kind}({keys})"), {"name": name})
        got = bool(held.scalar_one())
        conn.commit()  # no transaction left open: a session lock outlives it
    except BaseException:
        conn.invalidate()
        conn.close()
        raise
    if not got:
        conn.close()
        raise _busy(name, exclusive)

    def release() -> None:
        try:
            conn.execute(text(f"SELECT pg_advisory_unlock{kind}({keys})"), {"name": name})
            conn.commit()
        except Exception:
            conn.invalidate()  # its session, and the lock with it, ends with the connection
        finally:
            conn.close()

    return release


def _busy(name: str, exclusive: bool) -> TablesBusy:
    if exclusive:
        return TablesBusy(
            f"the {name} projection is in use: a consumer (or lintas dlq retry) writing it "
            "runs against this database; stop it first"
        )
    return TablesBusy(
        f"the {name} projection is being rebuilt (lintas rebuild) in this database: "
        "start again once it has finished"
    )
