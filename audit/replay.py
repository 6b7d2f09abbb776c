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
rebuilds (the ``traceparent`` their envelopes carry, one link per trace, at most
:data:`MAX_TRACE_LINKS`). It starts no span in a live trace.

A whole-log selection of a few thousand events or more is split by case across worker processes
(:mod:`._shards`): each case's events still fold in stream order, in one process, and the
result is the same as in one process (the tests hold the digests equal). A worker that
dies after applying batches fails the replay (:class:`ReplayWorkerDied`): the store is
then incomplete, never silently short.

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
import operator
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, repeat
from multiprocessing import get_context
from pathlib import Path
from typing import Any, get_args, get_origin

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, TracerProvider
from pydantic import BaseModel
from sqlalchemy import BigInteger, create_engine, func, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlmodel import Field, Session, SQLModel, col, select

from lintas.audit import _shards
from lintas.audit._shards import MAX_REASONS, Message, Shard, ShardJob, ShardReport, shard_of
from lintas.audit.collector import relaxed_collector
from lintas.audit.events import StoredEvent
from lintas.consumers.projections import RecordCaseRow
from lintas.consumers.record import CaseRecord
from lintas.contracts import PermanentError, TransientError, parse_message
from lintas.infra import canonical as fastjcs
from lintas.infra.db import Tracking, UTCDateTime, create_db_engine
from lintas.infra.keys.signing import Registry
from lintas.infra.observability.tracing import CASE_ID, EVENT_ID, failed, trace_context, tracer_for
from lintas.infra.settings import Settings

__all__ = [
    "MAX_TRACE_LINKS",
    "NotAFreshStore",
    "PersonalSummary",
    "RecordDigest",
    "ReplayResult",
    "ReplayRun",
    "ReplayWorkerDied",
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
    applied: int = Field(default=0, sa_type=BigInteger)
    skipped: int = Field(default=0, sa_type=BigInteger)
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
    workers: int = 0
    """Worker processes the selection was split across (0: replayed in this process)."""
    digest: RecordDigest | None = None


# -- the record's digest ----------------------------------------------------------------------


def record_digest(url: str) -> RecordDigest:
    """The digest of the record in the database at ``url`` (defined in the module doc).

    Read with a plain engine in one statement (one consistent snapshot) rather than the
    projection engine's write-locking transaction, so a live projector is not held up.
    A database with no record yet digests as the empty record.
    """
    return _digest(url, _record_form)


def _digest(url: str, form: Callable[[str], bytes]) -> RecordDigest:
    """:func:`record_digest`, each stored record's canonical form by ``form``."""
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
                digest.update(form(doc))
                digest.update(b"\n")
                cases += 1
        return RecordDigest("sha256:" + digest.hexdigest(), cases)
    finally:
        engine.dispose()


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _holds_list(annotation: Any) -> bool:
    if get_origin(annotation) in (tuple, list):
        return True
    return any(_holds_list(arg) for arg in get_args(annotation))


@dataclass(frozen=True, slots=True)
class _Shape:
    fields: frozenset[str]
    nested: dict[str, type[BaseModel]]
    """Each field that holds models (one, or a list), and the model."""
    lists: frozenset[str]
    """Each field that holds a list (of models, or of plain values)."""


_SHAPES: dict[type[BaseModel], _Shape] = {}
_PLAIN = frozenset({str, int, bool, type(None)})


def _shape(model: type[BaseModel]) -> _Shape:
    shape = _SHAPES.get(model)
    if shape is None:
        nested = {
            name: found[0]
            for name, info in model.model_fields.items()
            if (found := _models_in(info.annotation))
        }
        lists = frozenset(
            name for name, info in model.model_fields.items() if _holds_list(info.annotation)
        )
        shape = _SHAPES[model] = _Shape(frozenset(model.model_fields), nested, lists)
    return shape


def _in_shape(items: list[Any], model: type[BaseModel]) -> bool:
    """Whether each of ``items`` (parsed JSON) is an object with exactly the fields of
    ``model`` and of every model nested in it, as ``model_dump`` of the current model
    gives, and holds nothing but strings, integers, booleans and nulls (no float, which
    no record field is) in their places, at any depth."""
    shape = _shape(model)
    # Item by item in C (map), not in a Python loop: a record holds some hundred objects,
    # most of them (timeline entries, hand-offs) of plain values only.
    try:
        if not all(map(operator.eq, map(dict.keys, items), repeat(shape.fields))):
            return False
    except TypeError:  # an item that is no object
        return False
    if not shape.nested and not shape.lists:
        return set(map(type, chain.from_iterable(map(dict.values, items)))) <= _PLAIN
    for item in items:
        for name, value in item.items():
            inner = shape.nested.get(name)
            if inner is not None:
                if value is None:
                    continue
                if (type(value) is list) != (name in shape.lists):
                    return False  # a list where one object is, or the other way round
                if not _in_shape(value if type(value) is list else [value], inner):
                    return False
            elif name in shape.lists and type(value) is list:
                if not set(map(type, value)) <= _PLAIN:
                    return False
            elif type(value) not in _PLAIN:
                return False
    return True


def _record_form(doc: str) -> bytes:
    """``canonical_json(CaseRecord.model_dump(mode="json"))`` of a stored record.

    The projection stores ``model_dump_json()``, which parses back to exactly that dump, so
    a document in the current shape is canonicalised as parsed, without a round trip
    through the model that would cost more than the rest of the digest. It is parsed and
    written by orjson: with every member name a field name (ASCII) and no float anywhere,
    orjson's sorted output is RFC 8785's (:mod:`lintas.infra.canonical` says why). A
    document not in the current shape, at any depth (written before a field was added),
    or that orjson refuses, goes through the model, which fills the defaults.
    """
    try:
        parsed = orjson.loads(doc)
        if type(parsed) is dict and _in_shape([parsed], CaseRecord):
            return orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    record = CaseRecord.model_validate_json(doc)
    return fastjcs.canonical_json(parse_message(record.model_dump_json().encode()))


def _replayed_form(doc: str) -> bytes:
    """:func:`_record_form` of a record this replay wrote into its fresh store.

    It is ``model_dump_json()`` of the current model, so in the current shape, and the
    model holds only strings, integers (stream sequences: 64 bits), booleans and nulls
    (``tests/unit/test_record.py`` holds that): the check of every nested object, half of
    what a digest costs, is left out. Should orjson refuse it all the same, the general
    form is taken.
    """
    try:
        return orjson.dumps(orjson.loads(doc), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return _record_form(doc)


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

# Below this many events a replay runs in this process: starting worker processes costs
# more than a selection this small (a case, say) takes to replay.
_BULK = 4096

# Batches a shard may have queued before the reader waits for it: bounds memory, yet lets
# the reader go on while the workers start.
_QUEUED = 4


class ReplayWorkerDied(TransientError):
    """A worker process died after it had applied batches: the store is incomplete (replay
    again into a fresh one)."""


class _Shards:
    """Hands each shard its cases' messages in batches, in stream order, and gathers what
    the shards report. Worker processes when the selection is big; else, or when they
    cannot start, one shard in this process: the same code."""

    def __init__(self, job: ShardJob, engine: Engine, result: ReplayResult, span: Span):
        self._job = job
        self._engine = engine
        self._result = result
        self._span = span
        self._linked: set[int] = set()
        self._reasons: list[tuple[int, str]] = []
        self._local: Shard | None = None
        self._pools: list[ProcessPoolExecutor] = []
        self._queued: list[deque[tuple[list[Message], asyncio.Future[ShardReport]]]] = []
        self._reported = False
        self._exiting: threading.Thread | None = None
        self._exit_failed: BaseException | None = None

    def start(self, workers: int, bulk: bool) -> None:
        """Workers start in the background: batches queue for them meanwhile."""
        if bulk and workers > 1:
            self._pools = [self._new_pool() for _ in range(workers)]
            self._queued = [deque() for _ in self._pools]
            self._result.workers = workers
        else:
            self._local = Shard(self._job, self._engine)

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the event loop's threads must not be forked into the workers.
        return ProcessPoolExecutor(
            1,
            mp_context=get_context("spawn"),
            initializer=_shards.start_worker,
            initargs=(self._job,),
        )

    async def submit(self, batch: list[Message]) -> None:
        if self._local is not None:
            self._merge(self._local.apply(batch))
            return
        parts: list[list[Message]] = [[] for _ in self._pools]
        for message in batch:
            parts[shard_of(message[1], len(parts))].append(message)
        loop = asyncio.get_running_loop()
        for pool, queued, part in zip(self._pools, self._queued, parts, strict=True):
            if part:
                try:
                    future = loop.run_in_executor(pool, _shards.apply_in_worker, part)
                except BrokenProcessPool as exc:  # known broken already: said in _next
                    future = loop.create_future()
                    future.set_exception(exc)
                queued.append((part, future))
        for queued in self._queued:
            while len(queued) > _QUEUED:
                await self._next(queued)
                if self._local is not None:
                    return

    async def _next(self, queued: deque[tuple[list[Message], asyncio.Future[ShardReport]]]) -> None:
        _part, future = queued[0]
        try:
            report = await future
        except BrokenProcessPool:
            if self._reported:
                raise ReplayWorkerDied(
                    "a replay worker process died: the store is incomplete; replay again "
                    "into a fresh one"
                ) from None
            await self._fall_back()
            return
        queued.popleft()
        self._reported = True
        self._merge(report)

    async def _fall_back(self) -> None:
        """No worker could start (a script without a __main__ guard, say): everything
        queued is applied here instead, slower but the same. Only if no worker applied
        anything, and the store holds no record: a worker that did may have written some
        records and hold others."""
        waiting = [list(queued) for queued in self._queued]
        outcomes = await asyncio.gather(
            *(future for queued in waiting for _, future in queued), return_exceptions=True
        )
        self.close()
        with Session(self._engine) as session:
            written = session.exec(select(func.count()).select_from(RecordCaseRow)).one()
        if written or any(not isinstance(outcome, BaseException) for outcome in outcomes):
            raise ReplayWorkerDied(
                "a replay worker process died while others applied batches: the store is "
                "incomplete; replay again into a fresh one"
            )
        self._queued = []
        self._result.workers = 0
        self._local = Shard(self._job, self._engine)
        for queued in waiting:
            for part, _ in queued:
                self._merge(self._local.apply(part))

    async def drain(self) -> None:
        """Wait for every batch, then for every shard to write what it holds."""
        for queued in self._queued:
            while queued and self._local is None:
                await self._next(queued)
        if self._local is not None:
            self._local.flush()
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(
                *(loop.run_in_executor(pool, _shards.flush_in_worker) for pool in self._pools)
            )
        except BrokenProcessPool:
            raise ReplayWorkerDied(
                "a replay worker process died writing its records: the store is incomplete; "
                "replay again into a fresh one"
            ) from None

    def release(self) -> None:
        """Once drained: the workers exit (each takes a moment to tear down) while the
        caller goes on; :meth:`close` waits for them."""
        if not self._pools:
            return
        exiting = threading.Thread(
            target=self._exit, args=(self._pools,), name="lintas-replay-exit", daemon=True
        )
        exiting.start()  # (if it cannot start, the pools are still there for close)
        self._pools = []
        self._exiting = exiting

    def _exit(self, pools: list[ProcessPoolExecutor]) -> None:
        self._exit_failed = _shut_down(pools)

    def close(self) -> None:
        for queued in self._queued:
            for _, future in queued:
                # Retrieved, so that no "exception was never retrieved" is logged later.
                if future.done() and not future.cancelled():
                    future.exception()
                else:
                    future.cancel()
        failed = _shut_down(self._pools)
        self._pools = []
        if self._exiting is not None:
            self._exiting.join()
            self._exiting = None
            failed = failed or self._exit_failed
        if self._local is not None:
            self._local.close()
        if failed is not None:
            raise failed

    def _merge(self, report: ShardReport) -> None:
        result = self._result
        result.applied += report.applied
        result.skipped += report.skipped
        result.after_as_of += report.after_as_of
        if report.reasons:
            # Shards report out of stream order: keep the first ones of the stream.
            self._reasons = sorted([*self._reasons, *report.reasons])[:MAX_REASONS]
            result.skipped_reasons = [f"stream seq {seq}: {why}" for seq, why in self._reasons]
        for traceparent, tracestate, case_id, event_id in report.links:
            live = trace_context(traceparent, tracestate)
            if live is None or live.trace_id in self._linked:
                continue
            if len(self._linked) < MAX_TRACE_LINKS:
                self._linked.add(live.trace_id)
                self._span.add_link(live, {CASE_ID: case_id, EVENT_ID: event_id})

    @property
    def traces(self) -> int:
        return len(self._linked)


def _shut_down(pools: list[ProcessPoolExecutor]) -> BaseException | None:
    """Shut every pool down, even after one fails to; the first failure, to be raised
    once everything is closed."""
    failed: BaseException | None = None
    for pool in pools:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except BaseException as exc:
            failed = failed or exc
    return failed


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

    ``workers``: processes a selection of more than a few thousand events is split across,
    by case (default: one per CPU, at most 4); each decodes, checks signatures, folds and
    writes its cases (:mod:`._shards`). While it runs, this process's cyclic garbage
    collector runs less often (:func:`lintas.audit.collector.relaxed_collector`)."""
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
        with trace.use_span(span, end_on_exit=False, record_exception=False), relaxed_collector():
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
    result = ReplayResult()
    with Session(engine) as session:
        run = ReplayRun(
            source=source[:500], as_of=as_of, case_id=case_id, started_at=datetime.now(UTC)
        )
        session.add(run)
        session.commit()
        run_id = run.id
    shards = _Shards(ShardJob(url, registry, as_of, MAX_TRACE_LINKS), engine, result, span)
    try:
        pending: list[Message] = []
        started = False
        seen = 0
        async for stored in events:
            seen += 1
            if progress is not None:
                progress(seen)
            if case_id is not None and stored.subject.rpartition(".")[2] != case_id:
                continue
            result.read += 1
            result.last_seq = stored.seq
            pending.append((stored.seq, stored.subject, stored.body))
            if len(pending) >= (batch_size if started else max(batch_size, _BULK)):
                if not started:
                    # One case is one shard's work: its replay stays in this process.
                    shards.start(workers, bulk=case_id is None)
                    started = True
                await shards.submit(pending)
                pending = []
        if not started:
            shards.start(workers, bulk=False)
        if pending:
            await shards.submit(pending)
        await shards.drain()
        shards.release()  # the workers exit while the record is digested
        # Every record there was written just now by this replay: see _replayed_form.
        result.digest = _digest(url, _replayed_form)
    finally:
        shards.close()
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
            "lintas.replay.traces": shards.traces,
        }
    )
    return result
