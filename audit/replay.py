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

A replay never joins a live trace: it is one span (``replay``) at the root of a trace of
its own, whatever span the caller is in, with links to the traces of the events it
rebuilds (the ``traceparent`` their envelopes carry, one link per trace, the first
:data:`MAX_TRACE_LINKS`). It starts no span in a live trace.

The digest of a record (:func:`record_digest`)::

    SHA-256 over, for every case in ascending (byte) order of case id,
        canonical_json(CaseRecord.model_dump(mode="json")) + b"\\n"

``canonical_json`` is RFC 8785 (:mod:`lintas.contracts.canonical`); the records are read
one at a time, streamed. Written ``sha256:<hex>``. Equal records digest equal whatever the
database (SQLite or PostgreSQL) or the order they were written in.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, TracerProvider
from sqlalchemy import create_engine, func, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlmodel import Field, Session, SQLModel, col, select

from lintas.consumers.projections import RecordCaseRow, RecordProjection
from lintas.consumers.record import CaseRecord
from lintas.contracts import Event, PermanentError, canonical_json, decode, parse_message
from lintas.infra.db import Tracking, UTCDateTime, create_db_engine
from lintas.infra.keys import Registry, SignatureCheck, Verifier, signatures_hold
from lintas.infra.settings import Settings
from lintas.infra.tracing import CASE_ID, EVENT_ID, failed, trace_context, tracer_for

from .events import StoredEvent

__all__ = [
    "MAX_TRACE_LINKS",
    "NotAFreshStore",
    "PersonalSummary",
    "RecordDigest",
    "ReplayResult",
    "ReplayRun",
    "live_record_url",
    "open_fresh_store",
    "personal_summary",
    "record_digest",
    "replay",
]

Progress = Callable[[int], None]

MAX_TRACE_LINKS = 64
"""Live traces a replay span links to at most (a whole-log replay touches every case)."""


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
                # Parsed back from its JSON, the record takes the C encoder's path.
                digest.update(canonical_json(parse_message(record.model_dump_json().encode())))
                digest.update(b"\n")
                cases += 1
        return RecordDigest("sha256:" + digest.hexdigest(), cases)
    finally:
        engine.dispose()


# -- a child's data in the record ---------------------------------------------------------------


@dataclass
class PersonalSummary:
    """What the record says of personal fields: how many in each state, never a value;
    with ``case_id``, each field of that case."""

    states: dict[str, int] = field(default_factory=dict)
    erased_cases: int = 0
    fields: list[tuple[int, str, str, str]] = field(default_factory=list)
    """(stream seq, event type, field, state) of the one case asked for."""


def personal_summary(url: str, case_id: str | None = None) -> PersonalSummary:
    """Count the personal fields of the record at ``url`` by state (sealed, erased, clear)."""
    summary = PersonalSummary()
    engine = create_engine(url)
    try:
        query = select(RecordCaseRow.doc)
        if case_id is not None:
            query = query.where(RecordCaseRow.case_id == case_id)
        with engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=500).execute(query)
            for (doc,) in rows:
                record = CaseRecord.model_validate_json(doc)
                summary.erased_cases += record.erasure is not None
                for p in record.personal:
                    summary.states[p.state] = summary.states.get(p.state, 0) + 1
                    if case_id is not None:
                        summary.fields.append((p.seq, p.type, p.field, p.state))
    finally:
        engine.dispose()
    return summary


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


@dataclass(slots=True)
class _Read:
    """One event of the selection as read: decoded and ready for its signature check, or
    the reason it is not applied."""

    seq: int
    event: Event | None = None
    check: SignatureCheck | None = None
    reason: str | None = None


# Below this many signatures a batch is checked in this process: a worker process costs
# more to start than a single case's replay takes.
_BULK = 512


class _Pipeline:
    """Batches in stream order. The Ed25519 arithmetic, most of a replay's work, runs in
    worker processes: batch k's signatures are checked there while batch k+1 is read and
    decoded here, then batch k is folded. At most two batches are held, so memory does not
    grow with the stream."""

    def __init__(self, engine: Engine, result: ReplayResult, workers: int):
        self._engine = engine
        self._result = result
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False
        self._in_flight: tuple[list[_Read], asyncio.Future[list[list[bool]]]] | None = None

    async def submit(self, batch: list[_Read]) -> None:
        checks = [item.check for item in batch if item.check is not None]
        checked: asyncio.Future[list[list[bool]]]
        if len(checks) < _BULK or self._broken:
            checked = asyncio.get_running_loop().create_future()
            checked.set_result([signatures_hold(checks)])
        else:
            if self._pool is None:
                self._pool = self._new_pool()
            loop, size = asyncio.get_running_loop(), -(-len(checks) // self._workers)
            checked = asyncio.gather(
                *(
                    loop.run_in_executor(self._pool, signatures_hold, checks[k : k + size])
                    for k in range(0, len(checks), size)
                )
            )
        previous, self._in_flight = self._in_flight, (batch, checked)
        if previous is not None:
            await self._fold(*previous)

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the event loop's threads must not be forked into the workers.
        return ProcessPoolExecutor(self._workers, mp_context=get_context("spawn"))

    async def drain(self) -> None:
        previous, self._in_flight = self._in_flight, None
        if previous is not None:
            await self._fold(*previous)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    async def _fold(self, batch: list[_Read], checked: asyncio.Future[list[list[bool]]]) -> None:
        try:
            results = await checked
        except BrokenProcessPool:
            # A worker could not start (a script without a __main__ guard, say) or died:
            # the checks are done here, slower but the same.
            self._broken = True
            results = [signatures_hold([item.check for item in batch if item.check is not None])]
        held = iter([ok for part in results for ok in part])
        kept: list[tuple[int, Event]] = []
        for item in batch:
            if item.check is not None and not next(held):
                assert item.event is not None
                envelope = item.event.envelope
                item.reason = f"{envelope.type} from {envelope.source}: " + _MISMATCH
            if item.reason is not None or item.event is None:
                _skip(self._result, item.seq, item.reason or "not decoded")
            else:
                kept.append((item.seq, item.event))
        if kept:
            with Session(self._engine) as session:
                _apply(session, kept, self._result)


_MISMATCH = "the signature does not match the event (altered, or signed by someone else)"


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


def _read(stored: StoredEvent, verifier: Verifier) -> _Read:
    doc = parse_message(stored.body)
    try:
        event = decode(stored.body, subject=stored.subject, parsed=doc)
        check = verifier.prepare(stored.body, event.envelope)
    except PermanentError as exc:  # contract and signature errors: quarantined live
        return _Read(stored.seq, reason=str(exc))
    except Exception as exc:  # a hostile body: the live edge rejects it too
        return _Read(stored.seq, reason=f"decoder failed: {exc.__class__.__name__}")
    return _Read(stored.seq, event, check)


async def replay(
    events: AsyncIterator[StoredEvent],
    engine: Engine,
    url: str,
    registry: Registry,
    *,
    source: str,
    as_of: datetime | None = None,
    case_id: str | None = None,
    batch_size: int = 2048,
    progress: Progress | None = None,
    workers: int | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ReplayResult:
    """Fold ``events`` into the fresh store ``engine`` (from :func:`open_fresh_store`, on
    ``url``) and digest the result. Only the events of ``case_id`` when given.

    ``workers``: processes checking signatures (default: one per CPU, at most 4)."""
    attributes: dict[str, str | bool] = {"lintas.replay.as_of": as_of is not None}
    if case_id is not None:
        attributes[CASE_ID] = case_id
    span = tracer_for(tracer_provider, "lintas.audit").start_span(
        "replay",
        context=Context(),  # a root: never a child of whatever span the caller is in
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    try:
        # Current, so the replay's log lines carry its own trace id, never a live one.
        with trace.use_span(span, end_on_exit=False, record_exception=False):
            result = await _replay(
                events,
                engine,
                url,
                registry,
                source,
                as_of,
                case_id,
                batch_size,
                progress,
                span,
                workers or min(os.cpu_count() or 1, 4),
            )
    except BaseException as exc:
        failed(span, exc)
        raise
    finally:
        span.end()
    return result


async def _replay(
    events: AsyncIterator[StoredEvent],
    engine: Engine,
    url: str,
    registry: Registry,
    source: str,
    as_of: datetime | None,
    case_id: str | None,
    batch_size: int,
    progress: Progress | None,
    span: Span,
    workers: int,
) -> ReplayResult:
    verifier = Verifier(registry)
    linked: set[int] = set()
    result = ReplayResult()
    with Session(engine) as session:
        run = ReplayRun(
            source=source[:500], as_of=as_of, case_id=case_id, started_at=datetime.now(UTC)
        )
        session.add(run)
        session.commit()
        run_id = run.id
    pipeline = _Pipeline(engine, result, workers)
    try:
        pending: list[_Read] = []
        seen = 0
        async for stored in events:
            seen += 1
            if progress is not None:
                progress(seen)
            if case_id is not None and stored.subject.rsplit(".", 1)[-1] != case_id:
                continue
            result.read += 1
            result.last_seq = stored.seq
            item = _read(stored, verifier)
            if item.event is not None and as_of is not None and item.event.time > as_of:
                result.after_as_of += 1
                continue
            if item.event is not None:
                _link(span, item.event, linked)
            pending.append(item)
            if len(pending) >= batch_size:
                await pipeline.submit(pending)
                pending = []
        if pending:
            await pipeline.submit(pending)
        await pipeline.drain()
    finally:
        pipeline.close()
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
    span.set_attributes(
        {
            "lintas.replay.read": result.read,
            "lintas.replay.applied": result.applied,
            "lintas.replay.skipped": result.skipped,
            "lintas.replay.traces": len(linked),
        }
    )
    return result


def _link(span: Span, event: Event, linked: set[int]) -> None:
    """Link the replay to the live trace ``event`` belongs to, once per trace."""
    live = trace_context(event.envelope.traceparent, event.envelope.tracestate)
    if live is None or live.trace_id in linked:
        return
    linked.add(live.trace_id)
    if len(linked) <= MAX_TRACE_LINKS:
        span.add_link(live, {CASE_ID: event.case_id, EVENT_ID: event.id})
