"""The consumer edge: a pulled batch in, one transaction, acknowledgements out.

Messages of one consumer are applied strictly in stream order, one batch per
transaction, so the events of a case are applied in the order they were published.
What the edge does with each outcome:

* applied, or already applied (sequence at or below the tracked position): ack;
* breaks its contract (not JSON, unknown type or version, wrong fields), is not signed
  by its source agency (when the runner has a verifier; a key id the verifier lacks, it
  first looks up afresh if it can, waiting for the next read allowed if one was made just
  now, see :meth:`~lintas.infra.keys.signing.Verifier.learn_since`), or was delivered
  ``max_deliver`` times without being applied: quarantined with the reason, then acked
  (the original only once the quarantine stream has stored the copy);
* the commit fails:

  - transiently (database locked or gone, broker down): the batch is retried in place
    with back-off while the server is told the messages are still in progress. Never
    terminated, and nothing later is applied first: letting the exception reach
    FastStream would leave the batch to redelivery while newer messages are pulled and
    applied, which breaks per-case order;
  - with a permanent error (an event for a case never opened), or otherwise (a handler
    bug) ``poison_after`` times: the batch is retried one event at a time, and the event
    that fails is quarantined; the rest are applied;
* the batch starts beyond the tracked position (a crashed instance left messages
  unacknowledged, and JetStream delivered newer ones first): the messages in between are
  read from the stream by subject and applied first (see :mod:`._gaps`). The same holds
  *inside* a batch: when two instances share a durable, JetStream hands deliveries out
  in turn, and a batch may hold 1, 3, 5 while 2 and 4 went to the other instance. So a
  batch is applied in runs of messages known to follow each other (first deliveries with
  consecutive consumer sequences, or consecutive stream sequences), each run after
  filling the gap before it, unless it follows the last message handled. A lone instance
  gets one run per batch, and reads the stream only after a redelivery.

Tracing: every message taken up is one CONSUMER ``process`` span, a child of its producer's
span (:mod:`lintas.infra.observability.tracing`). A batch is applied in one transaction, so
its spans share a start (the batch taken up) and an end (committed, or quarantined), carry
the batch's size, and say what became of their own message (``lintas.outcome``: ``applied``,
``already applied``, ``quarantined``). Log lines about one message carry its span, event
type and case id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats.errors
import structlog
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from lintas.consumers._gaps import StreamGapReader
from lintas.consumers.projections import Batch, Projection
from lintas.consumers.quarantine import QuarantineEntry
from lintas.contracts import (
    ContractError,
    Event,
    PermanentError,
    SignatureError,
    TransientError,
    decode,
    parse_message,
)
from lintas.infra.db import read_position, write_position
from lintas.infra.errors import BUS_ERRORS
from lintas.infra.keys.signing import UnknownKey, Verifier
from lintas.infra.observability.tracing import OUTCOME, about, process_span, tracer_for

__all__ = ["BatchServices", "OnCommit", "ProjectionRunner"]

OnCommit = Callable[[Batch], None]
Quarantine = Callable[[QuarantineEntry], Awaitable[int]]

_log = structlog.get_logger("lintas.consumer")

# The bus, not the message, failed an acknowledgement (not a bug such as acking twice).
_ACK_LOST: tuple[type[BaseException], ...] = (
    *BUS_ERRORS,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchServices:
    """What the runner reaches besides a batch's own messages: the stream, to fill a gap
    before the batch, and the quarantine, for what it cannot apply."""

    gaps: StreamGapReader | None = None
    quarantine: Quarantine | None = None


@dataclass(frozen=True, slots=True)
class _Incoming:
    seq: int
    subject: str
    data: bytes
    attempts: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)
    delivery: int | None = None  # the consumer sequence of this delivery


def _seqs(msgs: Sequence[Any]) -> str | None:
    """The stream sequences a pulled batch spans, for a log line (None: read, not pulled)."""
    if not msgs:
        return None
    return f"{msgs[0].metadata.sequence.stream}..{msgs[-1].metadata.sequence.stream}"


def _follows(previous: _Incoming, item: _Incoming) -> bool:
    """Whether nothing of the consumer can lie between two delivered messages.

    Consecutive stream sequences, trivially. Otherwise, two first deliveries with
    consecutive consumer sequences: no delivery went to anyone in between, and JetStream
    delivers new messages in stream order. A redelivery (which comes back out of order) or
    a jump in consumer sequences (a delivery to another instance) ends a run.
    """
    if item.seq == previous.seq + 1:
        return True
    return (
        previous.delivery is not None
        and item.delivery == previous.delivery + 1
        and previous.attempts == 1
        and item.attempts == 1
    )


def _runs(items: Sequence[_Incoming]) -> list[list[_Incoming]]:
    runs: list[list[_Incoming]] = [[items[0]]]
    for previous, item in itertools.pairwise(items):
        if _follows(previous, item):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


@dataclass(slots=True)
class _Taken:
    """A message's process span, its event (None if it did not decode), what became of it."""

    span: Span
    event: Event | None
    outcome: str | None = None


class _Poisoned(Exception):
    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(f"{error.__class__.__name__} after {attempts} attempts")
        self.error = error
        self.attempts = attempts


class ProjectionRunner:
    def __init__(
        self,
        *,
        consumer: str,
        stream: str,
        projection: Projection,
        engine: Engine,
        lock: asyncio.Lock | None = None,
        on_commit: Sequence[OnCommit] = (),
        max_backoff_s: float = 5.0,
        gap_limit: int = 256,
        max_deliver: int | None = None,
        poison_after: int = 3,
        verifier: Verifier | None = None,
        agency: str | None = None,
        tracer_provider: TracerProvider | None = None,
        build: str | None = None,
    ) -> None:
        self.consumer = consumer
        # When the projection was built from the log (lintas.consumers.rebuild.build_of):
        # what it quarantines says so, and a retry tells an entry of an earlier build.
        self.build = build
        self.agency = agency  # whose consumer this is (None: the platform's record)
        self.stream = stream
        self.projection = projection
        self.engine = engine
        # Runners that share one database share one lock: SQLite has a single writer.
        self.lock = lock or asyncio.Lock()
        self.on_commit = list(on_commit)
        self.max_backoff_s = max_backoff_s
        self.gap_limit = gap_limit
        self.max_deliver = max_deliver
        self.poison_after = poison_after
        self.verifier = verifier
        self._tracer = tracer_for(tracer_provider, "lintas.consumers")
        self._position: int | None = None  # tracked position, once read
        self._last: _Incoming | None = None  # the last message handled, to tell continuity
        # What the process's metrics read (lintas.consumers.metrics): counts since it started,
        # and the stored times (epoch seconds) that bound the consumer's lag.
        self.applied = 0
        self.quarantined = 0
        self.holding_since: float | None = None
        """Stored time of the oldest message of the batch in hand (None: none in hand)."""
        self.acked_through: float | None = None
        """Stored time of the newest message acknowledged so far."""

    async def handle(self, msgs: Sequence[Any], services: BatchServices | None = None) -> None:
        """Apply one pulled batch of ``nats.aio.msg.Msg`` and acknowledge it."""
        if not msgs:
            return
        services = services or BatchServices()
        stored = [msg.metadata.timestamp.timestamp() for msg in msgs]
        self.holding_since = min(stored)
        incoming = [
            _Incoming(
                msg.metadata.sequence.stream,
                msg.subject,
                msg.data,
                msg.metadata.num_delivered or 1,
                dict(msg.headers or {}),
                msg.metadata.sequence.consumer,
            )
            for msg in msgs
        ]
        facts = {"consumer": self.consumer, "agency": self.agency}
        with structlog.contextvars.bound_contextvars(
            **{k: v for k, v in facts.items() if v is not None}
        ):
            for run in _runs(incoming) if services.gaps is not None else [incoming]:
                # A run that follows the last message handled needs no look at the stream:
                # with filtered consumers that saves a read per filter and batch.
                if services.gaps is not None and not (self._last and _follows(self._last, run[0])):
                    await self._fill_gap(run[0].seq, services, msgs)
                await self._process(run, services, msgs)
                self._last = run[-1]
            await self._ack(msgs)
        self.holding_since = None
        self.acked_through = max(self.acked_through or 0.0, *stored)

    # -- one ordered run of messages ------------------------------------------------------

    async def _process(
        self, incoming: Sequence[_Incoming], services: BatchServices, msgs: Sequence[Any]
    ) -> None:
        spans: dict[int, _Taken] = {}
        try:
            unknown: list[_Incoming] | None = [] if self._learns else None
            batch, rejected = self._decode(incoming, spans, unknown)
            if unknown:
                # Signed with a key this verifier does not hold: published since it was
                # built, perhaps (admission held it). Learn the registry afresh, waiting for
                # the next read allowed if one was made just now, then decide for good.
                assert self.verifier is not None
                await self.verifier.learn_since(time.monotonic())
                more, also_rejected = self._decode(unknown, spans)
                batch = sorted([*batch, *more], key=lambda b: b[0])
                rejected |= also_rejected
            if self.max_deliver:
                exhausted = {i.seq for i in incoming if i.attempts >= self.max_deliver}
                for seq, _event in [b for b in batch if b[0] in exhausted]:
                    rejected[seq] = f"delivered {self.max_deliver} times without being applied"
                batch = [b for b in batch if b[0] not in exhausted]
            by_seq = {i.seq: i for i in incoming}
            await self._quarantine(
                [(by_seq[s], r) for s, r in sorted(rejected.items())], services, msgs, spans
            )
            last = max(i.seq for i in incoming)
            try:
                applied = await self._commit_with_retry(batch, list(rejected), last, msgs)
            except _Poisoned:
                applied = await self._one_at_a_time(
                    batch, rejected, last, by_seq, services, msgs, spans
                )
            fresh = {seq for seq, _event in applied}
            for seq, taken in spans.items():
                taken.outcome = taken.outcome or ("applied" if seq in fresh else "already applied")
        finally:
            ended = time.time_ns()
            for taken in spans.values():
                if taken.outcome is not None:
                    taken.span.set_attribute(OUTCOME, taken.outcome)
                taken.span.end(ended)
        self._notify(applied)  # after the spans ended: a listener sees them exported

    @contextlib.contextmanager
    def _about(self, spans: Mapping[int, _Taken], seq: int) -> Iterator[None]:
        """Log lines inside carry the message's span, event type and case id."""
        if seq not in spans:
            yield
            return
        taken = spans[seq]
        with about(
            taken.span,
            taken.event.envelope if taken.event else None,
            consumer=self.consumer,
            agency=self.agency,
        ):
            yield

    async def _one_at_a_time(
        self,
        batch: Batch,
        rejected: dict[int, str],
        last: int,
        by_seq: Mapping[int, _Incoming],
        services: BatchServices,
        msgs: Sequence[Any],
        spans: Mapping[int, _Taken],
    ) -> Batch:
        applied: list[tuple[int, Event]] = []
        uncounted = sorted(rejected)
        for seq, event in batch:
            counted = [s for s in uncounted if s < seq]
            uncounted = [s for s in uncounted if s >= seq]
            try:
                applied += await self._commit_with_retry([(seq, event)], counted, seq, msgs)
            except _Poisoned as poisoned:
                reason = f"{event.type} v{event.envelope.dataversion} could not be applied: " + (
                    str(poisoned.error)
                    if isinstance(poisoned.error, PermanentError)
                    else f"{poisoned.error.__class__.__name__} on {poisoned.attempts} attempts"
                )
                with self._about(spans, seq):
                    _log.error(
                        "event.poisoned",
                        stream_seq=seq,
                        error=poisoned.error.__class__.__name__,
                    )
                await self._quarantine([(by_seq[seq], reason)], services, msgs, spans)
                await self._commit_with_retry([], [*counted, seq], seq, msgs)
        await self._commit_with_retry([], uncounted, last, msgs)
        return applied

    @property
    def _learns(self) -> bool:
        return self.verifier is not None and self.verifier.refreshes

    def _decode(
        self,
        items: Sequence[_Incoming],
        spans: dict[int, _Taken],
        unknown: list[_Incoming] | None = None,
    ) -> tuple[list[tuple[int, Event]], dict[int, str]]:
        """Decode and verify each message, starting its process span (into ``spans``);
        one signed with a key the registry lacks goes to ``unknown`` instead, if given."""
        batch: list[tuple[int, Event]] = []
        rejected: dict[int, str] = {}
        started = time.time_ns()
        for item in items:
            event: Event | None = None
            level = "warning"  # named, not looked up: each lookup on structlog's proxy binds
            details: dict[str, Any] = {}
            try:
                doc = parse_message(item.data)  # once, for the contract and the signature
                event = decode(item.data, subject=item.subject, parsed=doc)
                if self.verifier is not None:
                    self.verifier.verify(item.data, event.envelope, parsed=doc)
            except UnknownKey as exc:
                if unknown is not None:
                    unknown.append(item)
                    continue
                rejected[item.seq] = str(exc)
            except SignatureError as exc:
                rejected[item.seq] = str(exc)
            except ContractError as exc:
                rejected[item.seq] = str(exc)
                details = {"event_type": exc.event_type, "version": exc.version, "field": exc.field}
            except Exception as exc:
                # Whatever a hostile body makes the decoder do, it is this message's fault:
                # raising here would leave the whole batch to redelivery behind newer ones.
                rejected[item.seq] = f"decoder failed: {exc.__class__.__name__}"
                level = "error"
            spans[item.seq] = _Taken(
                process_span(
                    self._tracer,
                    consumer=self.consumer,
                    agency=self.agency,
                    envelope=event.envelope if event else None,
                    subject=item.subject,
                    stream_seq=item.seq,
                    headers=item.headers,
                    batch_size=len(items),
                    start_time=started,
                ),
                event,
            )
            if item.seq not in rejected:
                assert event is not None
                batch.append((item.seq, event))
                continue
            with self._about(spans, item.seq):
                getattr(_log, level)(
                    "message.rejected", stream_seq=item.seq, reason=rejected[item.seq], **details
                )
        return batch, rejected

    async def _quarantine(
        self,
        items: Sequence[tuple[_Incoming, str]],
        services: BatchServices,
        msgs: Sequence[Any],
        spans: Mapping[int, _Taken],
    ) -> None:
        quarantine = services.quarantine
        for item, reason in items:
            if item.seq in spans:
                taken = spans[item.seq]
                # The reason names types, versions and fields, never values.
                taken.span.set_status(Status(StatusCode.ERROR, reason))
                taken.outcome = "quarantined" if quarantine else "rejected"
        if quarantine is None:
            return  # no quarantine here: logged above, and still in the stream
        for item, reason in items:
            entry = QuarantineEntry(
                consumer=self.consumer,
                stream=self.stream,
                stream_seq=item.seq,
                subject=item.subject,
                attempts=item.attempts,
                reason=reason,
                body=item.data,
                original_headers=item.headers,
                build=self.build,
            )

            async def store(entry: QuarantineEntry = entry) -> int:
                return await quarantine(entry)

            entry_id = await self._with_retry(store, msgs, poison_after=None)
            self.quarantined += 1
            with self._about(spans, item.seq):
                _log.warning("message.quarantined", stream_seq=item.seq, quarantine_id=entry_id)

    # -- gaps ----------------------------------------------------------------------------------

    async def _fill_gap(self, first: int, services: BatchServices, msgs: Sequence[Any]) -> None:
        gaps = services.gaps
        assert gaps is not None
        if self._position is None:
            self._position = await asyncio.to_thread(self._read_position)
        while first > self._position + 1:
            start = self._position + 1

            async def read(start: int = start) -> list[_Incoming]:
                found = await gaps.between(start, first - 1, self.gap_limit)
                return [_Incoming(m.seq, m.subject, m.data) for m in found]

            found = await self._with_retry(read, msgs, poison_after=None)
            if not found:
                return
            _log.info(
                "gap.filled",
                consumer=self.consumer,
                first=found[0].seq,
                last=found[-1].seq,
                count=len(found),
            )
            await self._process(found, services, msgs)

    def _read_position(self) -> int:
        with Session(self.engine) as session:
            return read_position(session, self.consumer, self.stream).position

    async def catch_up(
        self,
        through: int,
        services: BatchServices,
        *,
        progress: Callable[[int, int], None] | None = None,
        chunk: int = 1000,
    ) -> None:
        """Apply the consumer's messages from its tracked position up to stream sequence
        ``through``, read from the stream (``services.gaps``) ``chunk`` at a time: before
        the subscriber takes deliveries, after a rebuild (:mod:`.rebuild`) or a stop that
        left messages unapplied. ``progress(position, through)`` after each chunk."""
        gaps = services.gaps
        assert gaps is not None
        self._position = await asyncio.to_thread(self._read_position)
        self._last = None
        while self._position < through:
            start = self._position + 1

            async def read(start: int = start) -> list[_Incoming]:
                found = await gaps.between(start, through, chunk)
                return [_Incoming(m.seq, m.subject, m.data) for m in found]

            found = await self._with_retry(read, (), poison_after=None)
            if not found:
                break
            await self._process(found, services, ())
            if progress is not None:
                progress(self._position, through)

    async def counts(self) -> tuple[int, int, int]:
        """The tracking row's position and its counts of events applied and rejected."""

        def read() -> tuple[int, int, int]:
            with Session(self.engine) as session:
                row = read_position(session, self.consumer, self.stream)
                session.commit()
                return row.position, row.applied, row.rejected

        async with self.lock:
            return await asyncio.to_thread(read)

    # -- commit, retry, ack ----------------------------------------------------------------

    def _notify(self, applied: Batch) -> None:
        if applied:
            for callback in self.on_commit:
                callback(applied)

    async def _ack(self, msgs: Sequence[Any]) -> None:
        """Only after the commit: a crash before this line means redelivery, then a skip."""
        try:
            for msg in msgs[:-1]:
                await msg.ack()
            # Acks on one connection arrive in order: once the last is confirmed, all are.
            await msgs[-1].ack_sync()
        except _ACK_LOST as exc:
            # Committed: whatever the server did not take is redelivered after ack_wait,
            # found at or below the tracked position, and acked then. Nothing is lost.
            _log.warning(
                "batch.ack_unconfirmed",
                consumer=self.consumer,
                error=type(exc).__name__,
                stream_seqs=f"{msgs[0].metadata.sequence.stream}.."
                f"{msgs[-1].metadata.sequence.stream}",
            )

    async def _commit_with_retry(
        self, batch: Batch, rejected: list[int], last: int, msgs: Sequence[Any]
    ) -> Batch:
        async def commit() -> Batch:
            async with self.lock:
                fresh, self._position = await asyncio.to_thread(self._commit, batch, rejected, last)
                return fresh

        return await self._with_retry(commit, msgs, poison_after=self.poison_after)

    async def _with_retry(
        self, step: Callable[[], Awaitable[T]], msgs: Sequence[Any], *, poison_after: int | None
    ) -> T:
        delay = 0.05
        attempt = 1
        while True:
            try:
                return await step()
            except Exception as exc:
                expected = isinstance(exc, OperationalError | TransientError) or (
                    isinstance(exc, DBAPIError) and exc.connection_invalidated
                )
                if poison_after is not None and (
                    isinstance(exc, PermanentError) or (not expected and attempt >= poison_after)
                ):
                    # A permanent error says so itself: no point in trying it again.
                    raise _Poisoned(exc, attempt) from exc
                log = _log.warning if expected else _log.error
                log(
                    "projection.retry",
                    consumer=self.consumer,
                    attempt=attempt,
                    delay_s=delay,
                    error=exc.__class__.__name__,
                    stream_seqs=_seqs(msgs),
                    exc_info=not expected,
                )
                for msg in msgs:
                    await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
                attempt += 1

    def _commit(self, batch: Batch, rejected: list[int], last: int) -> tuple[Batch, int]:
        """Apply what is above the tracked position; return it and the new position."""
        with Session(self.engine) as session:
            tracking = read_position(session, self.consumer, self.stream)
            fresh = [(seq, event) for seq, event in batch if seq > tracking.position]
            if not fresh and last <= tracking.position:
                return [], tracking.position
            applied = self.projection.apply_batch(session, fresh)
            position = max(tracking.position, last)
            write_position(
                tracking,
                position,
                applied=applied,
                rejected=sum(1 for seq in rejected if seq > tracking.position),
            )
            session.commit()
            self.applied += len(fresh)
            return fresh, position
