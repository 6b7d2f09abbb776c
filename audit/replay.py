"""Rebuilding the coordination record from the log alone, and the record's digest.

A replay folds the events, in stream order, through the record projection the live
projector uses (:class:`~lintas.consumers.projections.RecordProjection`, whose fold is
:func:`lintas.consumers.record.apply`), into a *fresh* store: never the live database,
never one that already holds a record or a consumer's position. It publishes nothing,
acknowledges nothing and starts no consumer, so no agency sees or reacts to anything.

It applies exactly what the live projector would: an event that breaks its contract, is
unsigned or wrongly signed (checked against the registry), or belongs to a case never
opened is skipped (the live projector quarantines it), and the skipped ones are counted.
So the replay of the whole log digests the same as the live record after it consumed the
same log, unless an operator applied quarantined entries later (``lintas dlq retry``),
which the log alone does not show.

``as_of`` keeps the events whose *event time* (the envelope's ``time``, as the agency
signed it) is at or before it, in stream order: the record as the agencies' own clocks
say it stood then. An event published late (an outbox catching up) still counts at its
event time; the stream's arrival time is not used.

The digest of a record (:func:`record_digest`)::

    SHA-256 over, for every case in ascending (byte) order of case id,
        canonical_json(CaseRecord.model_dump(mode="json")) + b"\\n"

``canonical_json`` is RFC 8785 (:mod:`lintas.contracts.canonical`); the records are read
one at a time, streamed. Written ``sha256:<hex>``. Equal records digest equal whatever the
database (SQLite or PostgreSQL) or the order they were written in.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlmodel import Field, Session, SQLModel, col, select

from lintas.consumers.projections import RecordCaseRow, RecordProjection
from lintas.consumers.record import CaseRecord
from lintas.contracts import Event, PermanentError, canonical_json, decode
from lintas.infra.db import Tracking, UTCDateTime, create_db_engine
from lintas.infra.keys import Registry, Verifier
from lintas.infra.settings import Settings

from .events import StoredEvent

__all__ = [
    "NotAFreshStore",
    "RecordDigest",
    "ReplayResult",
    "ReplayRun",
    "live_record_url",
    "open_fresh_store",
    "record_digest",
    "replay",
]

Progress = Callable[[int], None]


class NotAFreshStore(PermanentError):
    """The replay target is the live database, or already holds a record or positions."""


class ReplayRun(SQLModel, table=True):
    """What a replayed store was rebuilt from: one row, written by the replay itself."""

    __tablename__ = "audit_replay"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=500)
    as_of: datetime | None = Field(default=None, sa_type=UTCDateTime)
    case_id: str | None = Field(default=None, max_length=32)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    applied: int = 0
    skipped: int = 0
    digest: str | None = Field(default=None, max_length=80)


@dataclass(frozen=True, slots=True)
class RecordDigest:
    digest: str
    cases: int


@dataclass
class ReplayResult:
    read: int = 0
    """Events of the selection (the case, when given) read from the source."""
    applied: int = 0
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)
    after_as_of: int = 0
    last_seq: int | None = None
    digest: RecordDigest | None = None


# -- the record's digest ----------------------------------------------------------------------


def record_digest(url: str) -> RecordDigest:
    """The digest of the record in the database at ``url`` (defined in the module doc).

    Read with a plain engine in one statement (one consistent snapshot) rather than the
    projection engine's write-locking transaction, so a live projector is not held up.
    A database with no record yet digests as the empty record.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (
        not parsed.database or not Path(parsed.database).exists()
    ):
        return RecordDigest("sha256:" + hashlib.sha256().hexdigest(), 0)
    engine = create_engine(url)
    try:
        digest = hashlib.sha256()
        cases = 0
        if not inspect(engine).has_table(RecordCaseRow.__tablename__):
            return RecordDigest("sha256:" + digest.hexdigest(), 0)
        case_id = col(RecordCaseRow.case_id)
        order = case_id.collate("C") if engine.dialect.name == "postgresql" else case_id
        query = select(RecordCaseRow.doc).order_by(order)
        with engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=500).execute(query)
            for (doc,) in rows:
                record = CaseRecord.model_validate_json(doc)
                digest.update(canonical_json(record.model_dump(mode="json")))
                digest.update(b"\n")
                cases += 1
        return RecordDigest("sha256:" + digest.hexdigest(), cases)
    finally:
        engine.dispose()


# -- the fresh store --------------------------------------------------------------------------


def live_record_url(settings: Settings) -> str:
    return settings.database_url_for("record")


def _identity(url: str) -> tuple[str, ...]:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return ("sqlite", ":memory:")
        return ("sqlite", str(Path(database).resolve()))
    return (backend, parsed.host or "", str(parsed.port or ""), parsed.database or "")


def _refuse_live(url: str, settings: Settings) -> None:
    target = _identity(url)
    if target == ("sqlite", ":memory:"):
        raise NotAFreshStore("replay into a database file or server, not an in-memory SQLite")
    if settings.database_url and target == _identity(settings.database_url):
        raise NotAFreshStore(
            "that is the live database (LINTAS_DATABASE_URL): a replay writes to a fresh store"
        )
    if target[0] == "sqlite":
        live_dir = settings.db_dir.resolve()
        if Path(target[1]).is_relative_to(live_dir):
            raise NotAFreshStore(
                f"that database is in {live_dir}, where the live projections are: a replay "
                "writes to a fresh store elsewhere"
            )


def open_fresh_store(url: str, settings: Settings) -> Engine:
    """An engine on ``url``, which must be neither live nor hold a record or positions."""
    _refuse_live(url, settings)
    engine = create_db_engine(url)
    try:
        tables = inspect(engine).get_table_names()
        for model, what in (
            (RecordCaseRow, "a coordination record"),
            (ReplayRun, "an earlier replay"),
            (Tracking, "consumer positions (a live projection database)"),
        ):
            name = str(model.__tablename__)
            if name in tables:
                with Session(engine) as session:
                    rows = session.exec(select(func.count()).select_from(model)).one()
                if rows:
                    raise NotAFreshStore(
                        f"{make_url(url).render_as_string(hide_password=True)} already holds "
                        f"{what} ({name}: {rows} rows): a replay needs a fresh store"
                    )
        SQLModel.metadata.create_all(
            engine,
            tables=[RecordCaseRow.__table__, ReplayRun.__table__],  # type: ignore[attr-defined]
        )
    except BaseException:
        engine.dispose()
        raise
    return engine


# -- replay -----------------------------------------------------------------------------------


def _apply(session: Session, batch: list[tuple[int, Event]], result: ReplayResult) -> None:
    """Apply what the live projector would: not the events of a case never opened."""
    wanted = sorted({event.case_id for _, event in batch})
    known = set(
        session.exec(select(RecordCaseRow.case_id).where(col(RecordCaseRow.case_id).in_(wanted)))
    )
    kept: list[tuple[int, Event]] = []
    for seq, event in batch:
        if event.case_id not in known and event.type != "case.opened":
            _skip(result, seq, f"{event.type} for case {event.case_id}, which was never opened")
            continue
        known.add(event.case_id)
        kept.append((seq, event))
    RecordProjection().apply_batch(session, kept)
    session.commit()
    result.applied += len(kept)


def _skip(result: ReplayResult, seq: int, reason: str) -> None:
    result.skipped += 1
    if len(result.skipped_reasons) < 20:
        result.skipped_reasons.append(f"stream seq {seq}: {reason}")


async def replay(
    events: AsyncIterator[StoredEvent],
    engine: Engine,
    url: str,
    registry: Registry,
    *,
    source: str,
    as_of: datetime | None = None,
    case_id: str | None = None,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> ReplayResult:
    """Fold ``events`` into the fresh store ``engine`` (from :func:`open_fresh_store`, on
    ``url``) and digest the result. Only the events of ``case_id`` when given."""
    verifier = Verifier(registry)
    result = ReplayResult()
    with Session(engine) as session:
        run = ReplayRun(
            source=source[:500], as_of=as_of, case_id=case_id, started_at=datetime.now(UTC)
        )
        session.add(run)
        session.commit()
        run_id = run.id
    pending: list[tuple[int, Event]] = []
    seen = 0
    async for stored in events:
        seen += 1
        if progress is not None:
            progress(seen)
        if case_id is not None and stored.subject.rsplit(".", 1)[-1] != case_id:
            continue
        result.read += 1
        result.last_seq = stored.seq
        try:
            event = decode(stored.body, subject=stored.subject)
            verifier.verify(stored.body, event.envelope)
        except PermanentError as exc:  # contract and signature errors: quarantined live
            _skip(result, stored.seq, str(exc))
            continue
        except Exception as exc:  # a hostile body: the live edge rejects it too
            _skip(result, stored.seq, f"decoder failed: {exc.__class__.__name__}")
            continue
        if as_of is not None and event.time > as_of:
            result.after_as_of += 1
            continue
        pending.append((stored.seq, event))
        if len(pending) >= batch_size:
            with Session(engine) as session:
                _apply(session, pending, result)
            pending = []
    if pending:
        with Session(engine) as session:
            _apply(session, pending, result)
    result.digest = record_digest(url)
    with Session(engine) as session:
        row = session.get(ReplayRun, run_id)
        assert row is not None
        row.finished_at = datetime.now(UTC)
        row.applied = result.applied
        row.skipped = result.skipped
        row.digest = result.digest.digest
        session.add(row)
        session.commit()
    return result
