"""Rebuilding a projection from the log when its tables no longer match the code.

A projection is derived data: the log is the truth, so a projection whose tables were made
by older code is not migrated but dropped and rebuilt, by replaying its consumers' messages
from sequence 1 through the same fold and the same consumer edge as live ones.

Each projection says which schema it builds (``name``, ``schema_version``); the
``lintas_projection`` table notes, per consumer, which projection and version its tracking
row was built into. A projection is **stale** in a database when a consumer's note names
another version, or when its tables do not have the code's columns and primary keys (a
version someone forgot to bump, or tables made before versions were noted). Then
:func:`reset` drops its tables, and the tracking, retried and version rows of every
consumer that fed them (in a shared database, every agency's worklist consumers), and
makes the tables afresh; :func:`catch_up` then applies the consumer's messages from its
tracked position (0 after a reset) up to the last one its durable delivered. The durable
goes on from there; its redeliveries find them applied.

On start (:func:`lintas.consumers.app.catch_up_broker`) every consumer is prepared this way
before its subscriber takes a delivery; ``lintas rebuild CONSUMER`` forces it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
import structlog
from sqlalchemy import Connection, Table, delete, inspect, select, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from lintas.consumers._gaps import StreamGapReader
from lintas.consumers.projections import Projection
from lintas.consumers.quarantine import QuarantineEntry, put
from lintas.consumers.runner import BatchServices, ProjectionRunner
from lintas.infra.db import Retried, Tracking, UTCDateTime, ensure_tables, schema_lock
from lintas.infra.errors import bus_errors
from lintas.infra.nats.topology import ConsumerSpec
from lintas.infra.reads import StreamReads
from lintas.infra.settings import Settings

__all__ = [
    "ProjectionBuild",
    "Rebuilt",
    "build_of",
    "catch_up",
    "prepare",
    "reset",
    "stale",
]

_log = structlog.get_logger("lintas.rebuild")


class ProjectionBuild(SQLModel, table=True):
    """Which projection, at which schema version, a consumer's tracking row was built into."""

    __tablename__ = "lintas_projection"

    consumer: str = Field(primary_key=True, max_length=64)
    stream: str = Field(primary_key=True, max_length=64)
    projection: str = Field(max_length=32, index=True)
    version: int
    built_at: datetime = Field(default_factory=lambda: datetime.now(UTC), sa_type=UTCDateTime)


_BUILDS: Table = ProjectionBuild.__table__  # type: ignore[attr-defined]
_TRACKING: Table = Tracking.__table__  # type: ignore[attr-defined]
_RETRIED: Table = Retried.__table__  # type: ignore[attr-defined]


def _tables(projection: Projection) -> list[Table]:
    return [t.__table__ for t in projection.tables]  # type: ignore[attr-defined]


def _lock(conn: Connection) -> None:
    """One preparer at a time per database: two processes starting at once must not both
    find the projection stale and reset it twice, nor both create its tables (the lock
    every maker of tables takes, :func:`lintas.infra.db.schema_lock`)."""
    schema_lock(conn)


def _structure(conn: Connection, projection: Projection) -> str | None:
    """How the database's tables of ``projection`` differ from the code's, or None."""
    found = inspect(conn)
    present = set(found.get_table_names())
    wanted = _tables(projection)
    missing = [t.name for t in wanted if t.name not in present]
    if len(missing) == len(wanted):
        return None  # none yet: a fresh projection, not a stale one
    if missing:
        return f"table {missing[0]} is missing"
    for table in wanted:
        columns = {c["name"] for c in found.get_columns(table.name)}
        code = {c.name for c in table.columns}
        if code - columns:
            return f"table {table.name} lacks column {sorted(code - columns)[0]}"
        if columns - code:
            return (
                f"table {table.name} has column {sorted(columns - code)[0]}, which the code has not"
            )
        keys = set(found.get_pk_constraint(table.name)["constrained_columns"])
        if keys != {c.name for c in table.primary_key.columns}:
            return f"table {table.name} has primary key ({', '.join(sorted(keys))})"
    return None


def _versions(conn: Connection, projection: Projection) -> dict[tuple[str, str], int]:
    if not inspect(conn).has_table(_BUILDS.name):
        return {}
    rows = conn.execute(
        select(_BUILDS.c.consumer, _BUILDS.c.stream, _BUILDS.c.version).where(
            _BUILDS.c.projection == projection.name
        )
    )
    return {(consumer, stream): version for consumer, stream, version in rows}


def _stale(conn: Connection, projection: Projection, stream: str) -> str | None:
    for (consumer, _stream), version in sorted(_versions(conn, projection).items()):
        if version != projection.schema_version:
            return (
                f"{consumer} built it at schema version {version}, the code's is "
                f"{projection.schema_version}"
            )
    present = set(inspect(conn).get_table_names())
    if not any(t.name in present for t in _tables(projection)):
        # No tables, but consumers that say they applied events into them: dropped by hand.
        if any(_positions(conn, stream, _fed_by(conn, projection, stream)).values()):
            return "its tables are missing"
        return None
    return _structure(conn, projection)


def _positions(conn: Connection, stream: str, consumers: Sequence[str]) -> dict[str, int]:
    if not consumers or not inspect(conn).has_table(_TRACKING.name):
        return {}
    rows = conn.execute(
        select(_TRACKING.c.consumer, _TRACKING.c.position).where(
            _TRACKING.c.stream == stream, _TRACKING.c.consumer.in_(list(consumers))
        )
    )
    return {consumer: position for consumer, position in rows}


def stale(engine: Engine, projection: Projection, stream: str) -> str | None:
    """Why ``projection``'s tables in ``engine`` do not match the code, or None."""
    with engine.connect() as conn:
        return _stale(conn, projection, stream)


def _fed_by(conn: Connection, projection: Projection, stream: str) -> list[str]:
    """The consumers whose tracking rows say how far these tables are built: those noted
    as building them, and those with a tracking row but no note whose name says so."""
    noted = {c for c, s in _versions(conn, projection) if s == stream}
    if not inspect(conn).has_table(_TRACKING.name):
        return sorted(noted)
    others = set()
    if inspect(conn).has_table(_BUILDS.name):
        others = {
            consumer
            for (consumer,) in conn.execute(
                select(_BUILDS.c.consumer).where(_BUILDS.c.stream == stream)
            )
        } - noted
    tracked = {
        consumer
        for (consumer,) in conn.execute(
            select(_TRACKING.c.consumer).where(_TRACKING.c.stream == stream)
        )
    }
    return sorted(noted | {c for c in tracked - others if projection.feeds(c)})


def _note(conn: Connection, projection: Projection, stream: str, consumers: Iterable[str]) -> None:
    wanted = sorted(set(consumers))
    if not wanted:
        return
    conn.execute(delete(_BUILDS).where(_BUILDS.c.stream == stream, _BUILDS.c.consumer.in_(wanted)))
    conn.execute(
        _BUILDS.insert(),
        [
            {
                "consumer": consumer,
                "stream": stream,
                "projection": projection.name,
                "version": projection.schema_version,
                "built_at": datetime.now(UTC),
            }
            for consumer in wanted
        ],
    )


def _reset(
    conn: Connection, projection: Projection, stream: str, consumers: Iterable[str]
) -> list[str]:
    fed = sorted(set(_fed_by(conn, projection, stream)) | set(consumers))
    present = set(inspect(conn).get_table_names())
    for table in reversed(_tables(projection)):
        if table.name in present:
            table.drop(conn)
    for table in (_TRACKING, _RETRIED, _BUILDS):
        if table.name in present and fed:
            conn.execute(
                delete(table).where(
                    tuple_(table.c.consumer, table.c.stream).in_([(c, stream) for c in fed])
                )
            )
    SQLModel.metadata.create_all(conn, tables=_tables(projection))
    return fed


def reset(
    engine: Engine, projection: Projection, stream: str, consumers: Sequence[str]
) -> list[str]:
    """Drop ``projection``'s tables and make them afresh, forgetting how far every consumer
    that fed them had got; note ``consumers`` as building them now. Returns every consumer
    reset (in a shared database, more than ``consumers``: each must catch up again)."""
    ensure_tables(engine, ProjectionBuild)
    with engine.begin() as conn:
        _lock(conn)
        fed = _reset(conn, projection, stream, consumers)
        _note(conn, projection, stream, consumers)
    # Asked for (lintas rebuild): news, not a warning.
    _log.info("projection.reset", projection=projection.name, consumers=fed, stream=stream)
    return fed


def prepare(
    engine: Engine, projection: Projection, stream: str, consumers: Sequence[str]
) -> str | None:
    """Make ``projection``'s tables ready for ``consumers``: made if absent, dropped and made
    afresh if stale (returns why: the consumers then catch up from sequence 1)."""
    ensure_tables(engine, ProjectionBuild)
    with engine.begin() as conn:
        _lock(conn)
        why = _stale(conn, projection, stream)
        if why is None:
            SQLModel.metadata.create_all(conn, tables=_tables(projection))
            noted = _versions(conn, projection)
            _note(conn, projection, stream, [c for c in consumers if (c, stream) not in noted])
            return None
        _log.warning(
            "projection.stale", projection=projection.name, reason=why, consumers=list(consumers)
        )
        fed = _reset(conn, projection, stream, consumers)
        _note(conn, projection, stream, consumers)
    _log.warning("projection.reset", projection=projection.name, consumers=fed, stream=stream)
    return why


def build_of(engine: Engine, consumer: str, stream: str) -> str | None:
    """When ``consumer``'s projection was last built from the log (noted by :func:`prepare`
    or :func:`reset`), as text; None if never noted. A rebuild changes it; a restart not."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(_BUILDS.name):
            return None
        built = conn.execute(
            select(_BUILDS.c.built_at).where(
                _BUILDS.c.consumer == consumer, _BUILDS.c.stream == stream
            )
        ).scalar()
    return None if built is None else built.isoformat()


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What :func:`catch_up` did for one consumer: from which tracked position, up to which
    stream sequence, and the events applied and messages rejected on the way."""

    consumer: str
    start: int
    through: int
    applied: int
    rejected: int


Progress = Callable[[int, int], None]
"""Called with (position reached, position to reach) after each chunk."""


async def delivered(js: Any, stream: str, consumer: str) -> int | None:
    """The stream sequence of the last message the durable ``consumer`` delivered (all at
    or below it come again only as redeliveries), or None if there is no such durable."""
    with bus_errors(f"reading consumer {consumer}"):
        try:
            info = await js.consumer_info(stream, consumer)
        except nats.js.errors.NotFoundError:
            return None
    return int(info.delivered.stream_seq or 0)


async def catch_up(
    runner: ProjectionRunner,
    js: Any,
    spec: ConsumerSpec,
    settings: Settings,
    *,
    reads: StreamReads | None = None,
    progress: Progress | None = None,
    chunk: int = 1000,
) -> Rebuilt | None:
    """Apply ``spec``'s messages from ``runner``'s tracked position up to the last its durable
    delivered, read from the stream (through ``reads``: the read service, for an agency
    that may not read it); what cannot be applied is quarantined as the live edge would.
    None when the durable does not exist (yet)."""
    through = await delivered(js, settings.stream, spec.name)
    if through is None:
        return None

    async def quarantine(entry: QuarantineEntry) -> int:
        return await put(js, settings, entry)

    services = BatchServices(
        gaps=StreamGapReader(js, settings.stream, spec.filter_subjects, reads),
        quarantine=quarantine,
    )
    before = await runner.counts()
    start = before[0]
    if start < through:
        _log.info("projection.catching_up", consumer=spec.name, start=start, through=through)
    await runner.catch_up(through, services, progress=progress, chunk=chunk)
    after = await runner.counts()
    done = Rebuilt(spec.name, start, through, after[1] - before[1], after[2] - before[2])
    if start < through:
        _log.info(
            "projection.caught_up",
            consumer=spec.name,
            start=start,
            through=through,
            applied=done.applied,
            rejected=done.rejected,
        )
    return done
