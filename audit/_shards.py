"""Replay's work, split by case across worker processes.

Every case belongs to one shard (CRC-32 of its id, modulo the shards), and a shard gets its
cases' messages in stream order, so each case is folded in order by one process. A shard
does everything a message needs: decode it, check its signature (the Ed25519 arithmetic is
most of a replay's work), fold it into its case's record and write the record. The reader
only reads the stream and hands the bodies over, so the CPUs share the work rather than
wait on one process that folds.

Shards own disjoint rows. A shard holds the records of its recent cases between batches
(a bounded write-back cache: :class:`_Records`) and reads and writes the store only for
records it does not hold or pushes out, and at the end (:meth:`Shard.flush`), in short
transactions with no fold inside: on SQLite, where every transaction takes the write lock,
shards take turns only for those.

:class:`Shard` is the same in a worker and in the reader's own process (a small selection,
or where worker processes cannot start).
"""

from __future__ import annotations

import bisect
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from lintas.audit.collector import relax_collector
from lintas.consumers import record as record_fold
from lintas.consumers.projections import RecordProjection
from lintas.consumers.record import CaseRecord
from lintas.contracts import AuthorityRefused, Event, PermanentError, decode, parse_message
from lintas.infra.db import create_db_engine
from lintas.infra.keys.signing import Registry, Verifier
from lintas.infra.observability.tracing import trace_context

__all__ = ["MAX_REASONS", "Message", "Shard", "ShardJob", "ShardReport", "shard_of"]

Message = tuple[int, str, bytes]
"""(stream sequence, subject, body) as read: plain values, cheap to hand to a worker."""

MAX_REASONS = 20
"""Skip reasons a replay keeps (the count is exact)."""

# Records a shard holds between batches: enough for the cases active at once in a busy
# log, few enough (a record is some tens of KB as objects) that memory stays flat.
_HELD = 256


def shard_of(subject: str, shards: int) -> int:
    """The shard of the case a message's subject names (its last token)."""
    return zlib.crc32(subject.rpartition(".")[2].encode()) % shards


@dataclass(frozen=True)
class ShardJob:
    """What every shard is started with."""

    url: str
    registry: Registry
    as_of: datetime | None
    max_links: int


@dataclass
class ShardReport:
    """What a shard did with one batch."""

    applied: int = 0
    skipped: int = 0
    reasons: list[tuple[int, str]] = field(default_factory=list)
    """(stream seq, why) of the first :data:`MAX_REASONS` skipped."""
    after_as_of: int = 0
    links: list[tuple[str, str | None, str, str]] = field(default_factory=list)
    """(traceparent, tracestate, case id, event id) of events of traces this shard had not
    seen, up to the job's ``max_links`` over the shard's life."""

    def skip(self, seq: int, reason: str) -> None:
        # Reasons come out of stream order within a batch (decoding before folding): the
        # first ones of the stream are kept.
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS or seq < self.reasons[-1][0]:
            bisect.insort(self.reasons, (seq, reason))
            del self.reasons[MAX_REASONS:]


class Shard:
    """Decodes, checks, folds and stores the messages of its cases, batch by batch."""

    def __init__(self, job: ShardJob, engine: Engine | None = None) -> None:
        self._job = job
        self._own_engine = engine is None
        self._engine = engine if engine is not None else create_db_engine(job.url)
        self._verifier = Verifier(job.registry)
        self._traces: set[int] = set()
        self._records = _Records(self._engine, _HELD)

    def close(self) -> None:
        if self._own_engine:
            self._engine.dispose()

    def apply(self, batch: Sequence[Message]) -> ShardReport:
        report = ShardReport()
        kept: list[tuple[int, Event]] = []
        for seq, subject, body in batch:
            doc = parse_message(body)
            try:
                event = decode(body, subject=subject, parsed=doc)
                if self._job.as_of is not None and event.time > self._job.as_of:
                    report.after_as_of += 1  # past the cut: its signature does not matter
                    continue
                # Over the document parsed for decoding: one parse per message.
                self._verifier.verify(body, event.envelope, parsed=doc)
            except PermanentError as exc:  # contract and signature errors: quarantined live
                report.skip(seq, str(exc))
                continue
            except Exception as exc:  # a hostile body: the live edge rejects it too
                report.skip(seq, f"decoder failed: {exc.__class__.__name__}")
                continue
            self._link(event, report)
            kept.append((seq, event))
        if kept:
            self._store(kept, report)
        return report

    def _link(self, event: Event, report: ShardReport) -> None:
        envelope = event.envelope
        if envelope.traceparent is None or len(self._traces) >= self._job.max_links:
            return
        live = trace_context(envelope.traceparent, envelope.tracestate)
        if live is None or live.trace_id in self._traces:
            return
        self._traces.add(live.trace_id)
        report.links.append((envelope.traceparent, envelope.tracestate, event.case_id, event.id))

    def _store(self, batch: list[tuple[int, Event]], report: ShardReport) -> None:
        """Apply what the live projector would: not the events of a case never opened, nor
        what the authority policy refuses."""
        records = self._records
        records.load({event.case_id for _, event in batch})
        kept: list[tuple[int, Event]] = []
        for seq, event in batch:
            record = records.get(event.case_id)
            if record is None and event.type != "case.opened":
                report.skip(seq, f"{event.type} for case {event.case_id}, which was never opened")
                continue
            try:
                records.put(event.case_id, record_fold.apply(record, event, seq))
            except AuthorityRefused as exc:  # the live record's consumer quarantines it
                report.skip(seq, str(exc))
                continue
            kept.append((seq, event))
        records.evict()
        report.applied += len(kept)

    def flush(self) -> None:
        """Write every record still held: the store is complete after this."""
        self._records.flush()


class _Records:
    """The shard's records, held between batches and written back when pushed out (least
    recently used first) or flushed: a case's record is read from the store once and
    written once or a few times, not per batch. At most ``capacity`` are held."""

    def __init__(self, engine: Engine, capacity: int) -> None:
        self._engine = engine
        self._capacity = capacity
        self._held: OrderedDict[str, CaseRecord] = OrderedDict()
        self._dirty: set[str] = set()

    def load(self, case_ids: set[str]) -> None:
        missing = case_ids - self._held.keys()
        if missing:
            with Session(self._engine) as session:
                rows = RecordProjection.rows(session, missing)
            for cid, doc in rows.items():
                self._held[cid] = CaseRecord.model_validate_json(doc)
        for cid in case_ids & self._held.keys():
            self._held.move_to_end(cid)

    def get(self, case_id: str) -> CaseRecord | None:
        return self._held.get(case_id)

    def put(self, case_id: str, record: CaseRecord) -> None:
        self._held[case_id] = record
        self._dirty.add(case_id)

    def evict(self) -> None:
        out: dict[str, CaseRecord] = {}
        while len(self._held) > self._capacity:
            cid, record = self._held.popitem(last=False)
            if cid in self._dirty:
                out[cid] = record
                self._dirty.discard(cid)
        self._write(out)

    def flush(self) -> None:
        self._write({cid: self._held[cid] for cid in self._dirty})
        self._dirty.clear()

    def _write(self, records: dict[str, CaseRecord]) -> None:
        if not records:
            return
        with Session(self._engine) as session:
            RecordProjection.store(session, RecordProjection.stored(session, records), records)
            session.commit()


# -- in a worker process --------------------------------------------------------------------

_WORKER: Shard | None = None


def start_worker(job: ShardJob) -> None:
    """The worker's initializer: its shard, for its life, and a collector that stays out
    of the way of the bulk work (:mod:`lintas.audit.collector`)."""
    global _WORKER
    _WORKER = Shard(job)
    relax_collector()


def ready() -> bool:
    return _WORKER is not None


def apply_in_worker(batch: Sequence[Message]) -> ShardReport:
    assert _WORKER is not None, "start_worker did not run"
    return _WORKER.apply(batch)


def flush_in_worker() -> None:
    assert _WORKER is not None, "start_worker did not run"
    _WORKER.flush()
