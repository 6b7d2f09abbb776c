"""The transactional outbox: an agency system's own rows and its events, in one transaction.

An agency system that publishes straight after committing its own data loses the event if
it crashes (or the bus is down) between the two. With the outbox it writes the event into
its own database, in the same transaction as its own rows, and a relay publishes it later::

    outbox = Outbox("dukcapil")
    with Session(engine) as session:
        session.add(my_row)                                    # the agency's own data
        outbox.add(session, "document.issued", {...}, case_id=case_id, target="kp2mi")
        session.commit()                                       # both, or neither

    relay = OutboxRelay(
        engine, js, stream="LINTAS", signer=signer, keys=keys,
        verifier=Verifier(registry, refresh=registry_source(url, settings, "dukcapil")),
        reads=ServiceReads(nc, "dukcapil"),                    # heads, through the platform
        admission=Admission(nc, js, intake_stream(settings)),  # the log's only writer
    )                                                          # the gate counts signed consents
    outbox.notify(relay.wake)                                  # optional: no poll delay
    await relay.run(stop)                                      # until stop is set

:meth:`Outbox.add` validates exactly as :class:`~lintas.producers.Publisher` does and
stores the encoded envelope, byte for byte what will be published, except that a child's
personal fields are stored as the agency gave them (in its own database, beside its own
rows) and sealed by the relay when it publishes (it needs ``keys``, the agency's case
keys); the relay also applies the Publisher's consent gate then, and once the event is
stored replaces the row's body with the sealed envelope, so no plaintext stays in the
outbox. A row the gate refuses holds the outbox like any refused publish, until a consent
covers it (``outbox.publish_failed`` names why); so does a row admission refuses for the
sender's setup (:data:`~lintas.contracts.admission.SENDER_CODES`, its code in
``last_error``). A row admission refuses for good (:class:`~lintas.producers.Refused`, any
other code) is moved to :class:`OutboxDeadLetter` (``lintas_outbox_dead``: its code and
field, none of its data; ``outbox.dead_lettered``; ``lintas dlq outbox``) and the rows
behind it flow. The relay publishes
pending rows strictly in the order they were written (``position``), one at a time,
waiting for each ack, with ``Nats-Msg-Id`` = the event id, then marks them sent with
their stream sequence. If it crashes between the ack and the mark, it publishes the same
ids again and JetStream keeps one copy (the ack says ``duplicate``), provided the retry
comes within the stream's duplicate window (``LINTAS_DUPLICATE_WINDOW_S``). A row whose
publish failed (its ack may have been lost with the connection) is first looked up on
its subject before it is published again, so an outage longer than that window does not
store it twice either. A failed publish ends the round: nothing later is published
before it, so per-case order holds. While the bus is down, :meth:`OutboxRelay.run` backs
off and tries again; nothing escapes it but cancellation.

Order, precisely: rows are published in ``position`` order, which the database assigns at
insert. On SQLite (one writer at a time) that is commit order. On PostgreSQL two
transactions that overlap may commit in the opposite order to their positions, and the
relay publishes what is committed; an agency that writes one case from two concurrent
transactions has no order to keep anyway.

Tracing: :meth:`Outbox.add` is a PRODUCER ``create`` span, in whatever span the agency
system is in (or, with ``caused_by``, in the cause's trace), and its ``traceparent`` is
stored in the row's envelope. The relay's ``publish`` span is a child of it; consumers'
spans are children of the ``create`` span, the message's creation context.

Give the relay a NATS client that never stops reconnecting (``max_reconnect_attempts=-1``,
e.g. ``lintas.infra.nats.bus.connect(url, name, attempts=-1)``): a nats-py client that gave up is
closed for good, and the relay can only report that (``outbox.publish_failed`` at error
level) until it is given a new one. Best also without nats-py's reconnect buffer
(``pending_size=0``): then a publish while disconnected fails at once instead of waiting
for its timeout and being sent, stale, on reconnect (after a long outage, a second copy).
Run one relay per database; two are safe (they publish in the same order, and the
duplicate window absorbs their overlap) but do the work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Unpack

import nats.errors
import nats.js.errors
import structlog
from opentelemetry.trace import TracerProvider
from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    Table,
    Text,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from lintas.contracts import (
    Event,
    EventData,
    GateRefused,
    PermanentError,
    SubjectError,
    TransientError,
    decode,
    encode,
    is_agency_id,
)
from lintas.contracts.admission import MAX_PAST, SENDER_CODES
from lintas.infra.db import UTCDateTime
from lintas.infra.errors import BusUnavailable, NatsClientClosed, bus_errors
from lintas.infra.keys.signing import Signer, Verifier
from lintas.infra.observability.tracing import (
    DUPLICATE,
    EVENT_ID,
    STREAM_SEQ,
    message_context,
    publishing,
    tracer_for,
)
from lintas.infra.privacy.casekeys import CaseKeys
from lintas.infra.reads import DirectReads, ReadRefused, StreamReads
from lintas.producers._admit import Admission
from lintas.producers._gate import PublishGate
from lintas.producers._schema import ensure_outbox_table
from lintas.producers._wire import (
    CaseHead,
    Draft,
    Heads,
    PublishRejected,
    Refused,
    drafted,
    publish_chained,
)

__all__ = [
    "NatsClientClosed",
    "Outbox",
    "OutboxDeadLetter",
    "OutboxRecord",
    "OutboxRelay",
    "dead_letters",
    "ensure_outbox_table",
]

_log = structlog.get_logger("lintas.outbox")

# Short enough to keep the table small, long enough for a NATS or JetStream error text.
_LAST_ERROR_CHARS = 300
# session.info keys: the outboxes that added rows in the open transaction; whether the
# commit listener is installed on this session.
_ADDED = "lintas.outbox.added"
_LISTENING = "lintas.outbox.listening"


class OutboxRecord(SQLModel, table=True):
    """One event an agency system committed and the relay publishes (or has published)."""

    __tablename__ = "lintas_outbox"
    # sqlite_autoincrement: positions are never reused, even after sent rows are pruned.
    __table_args__ = (
        Index(
            "ix_lintas_outbox_pending",
            "position",
            sqlite_where=text("sent_at IS NULL"),
            postgresql_where=text("sent_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    # Assigned by the database at insert: the order the relay publishes in. A clock (the
    # rows' created_at) could step back, or differ between two hosts of one agency.
    # BIGINT, but INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
    position: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=BigInteger().with_variant(Integer(), "sqlite"),
    )
    id: str = Field(unique=True, max_length=36, description="event id (UUIDv7), Nats-Msg-Id")
    agency: str = Field(max_length=64, description="the publishing agency")
    subject: str = Field(max_length=255, description="the NATS subject to publish on")
    body: str = Field(sa_type=Text, description="the encoded envelope, exactly as published")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC), sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stream_seq: int | None = Field(default=None, sa_type=BigInteger)
    attempts: int = Field(default=0, description="publish attempts, the successful one included")
    last_error: str | None = Field(
        default=None,
        max_length=_LAST_ERROR_CHARS,
        description="why the last failed attempt failed (never event data)",
    )


_TABLE: Table = OutboxRecord.__table__  # type: ignore[attr-defined]


class OutboxDeadLetter(SQLModel, table=True):
    """A row admission refused for good, set aside so the rows behind it flow: what was
    refused and why, and nothing of the event's data (its body, which may hold a child's
    data in clear, went with the row). The agency's own rows still hold what it meant to
    say; a corrected event is a new :meth:`Outbox.add`."""

    __tablename__ = "lintas_outbox_dead"

    position: int = Field(
        primary_key=True,
        sa_type=BigInteger().with_variant(Integer(), "sqlite"),
        sa_column_kwargs={"autoincrement": False},
        description="the row's position in lintas_outbox",
    )
    id: str = Field(unique=True, max_length=36, description="event id (UUIDv7)")
    agency: str = Field(max_length=64, description="the publishing agency")
    subject: str = Field(max_length=255, description="its subject: type, source, target, case")
    created_at: datetime = Field(sa_type=UTCDateTime, description="when the row was added")
    refused_at: datetime = Field(sa_type=UTCDateTime, description="when it was set aside")
    attempts: int = Field(description="publish attempts, the refused one included")
    code: str = Field(max_length=64, description="admission's refusal code (ADMISSION.md)")
    field: str | None = Field(default=None, max_length=255, description="the field at fault")


_DEAD: Table = OutboxDeadLetter.__table__  # type: ignore[attr-defined]


def dead_letters(engine: Engine) -> list[OutboxDeadLetter]:
    """The rows admission refused for good in ``engine``'s outbox, oldest first."""
    with Session(engine) as session:
        found = session.execute(select(OutboxDeadLetter).order_by(_DEAD.c.position))
        return list(found.scalars())


class Outbox:
    """Adds one agency's events to the agency's own database transactions."""

    def __init__(self, agency: str, *, tracer_provider: TracerProvider | None = None) -> None:
        if not is_agency_id(agency):
            raise SubjectError(f"{agency!r} is not an agency id")
        self.agency = agency
        self._tracer = tracer_for(tracer_provider, "lintas.producers")
        self._callbacks: list[Callable[[], None]] = []

    def notify(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that added events (e.g. ``relay.wake``).

        It runs in the thread that commits, so it must be thread-safe and quick.
        """
        self._callbacks.append(callback)

    def add(
        self,
        session: Session,
        event_type: str,
        data: Mapping[str, Any] | EventData,
        *,
        case_id: str,
        target: str,
        **draft: Unpack[Draft],
    ) -> Event:
        """Validate the event and add it to ``session``; the caller commits (or rolls back).

        Arguments as :meth:`Publisher.publish`. Raises
        :class:`~lintas.contracts.ContractError` (naming type, version and field), and then
        adds nothing. The same ``event_id`` twice fails at commit (the id is unique).
        """
        with drafted(
            self._tracer,
            self.agency,
            event_type,
            data,
            case_id=case_id,
            target=target,
            operation="create",
            **draft,
        ) as (_span, built):
            # Stored unsigned: the signature covers the case's hash chain (prevhash), which
            # is known only when the relay publishes; the relay signs then.
            session.add(
                OutboxRecord(
                    id=built.id,
                    agency=self.agency,
                    subject=built.envelope.nats_subject,
                    body=encode(built.envelope).decode(),
                )
            )
            if self._callbacks:
                self._listen(session)
            _log.debug("outbox.added", event_id=built.id)
        return built

    def _listen(self, session: Session) -> None:
        added: list[Outbox] = session.info.setdefault(_ADDED, [])
        if not any(outbox is self for outbox in added):
            added.append(self)
        if not session.info.get(_LISTENING):
            session.info[_LISTENING] = True
            event.listen(session, "after_commit", _committed)
            event.listen(session, "after_rollback", _rolled_back)


def _committed(session: Session) -> None:
    for outbox in session.info.pop(_ADDED, ()):
        for callback in outbox._callbacks:
            try:
                callback()
            except Exception as exc:  # the commit has happened: never fail it afterwards
                _log.warning("outbox.notify_failed", error=type(exc).__name__)


def _rolled_back(session: Session) -> None:
    session.info.pop(_ADDED, None)


@dataclass(frozen=True, slots=True)
class _Pending:
    position: int
    id: str
    subject: str
    body: str
    attempts: int


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_LAST_ERROR_CHARS]


def _for_good(refused: Refused, row: _Pending) -> bool:
    """Whether admission's refusal of ``row`` will never change: anything but a refusal
    of the sender's setup (:data:`~lintas.contracts.admission.SENDER_CODES`, which a
    corrected key or clock lifts), or a ``time`` further back than admission ever takes."""
    if refused.code not in SENDER_CODES:
        return True
    if refused.code != "time_skew":
        return False
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        at = datetime.fromisoformat(json.loads(row.body)["time"].replace("Z", "+00:00"))
        return at < datetime.now(UTC) - MAX_PAST
    return False


def _expected(exc: BaseException) -> bool:
    """A failure that clears by itself: the bus or the database is down or busy."""
    return isinstance(exc, OperationalError | TransientError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class OutboxRelay:
    """Publishes the committed, unsent rows of ``lintas_outbox`` in ``engine``'s database.

    ``js`` is a nats-py JetStream context on a client that keeps reconnecting. ``batch``
    rows are read per round; ``timeout`` bounds each publish; ``poll_interval_s`` is how
    often an idle relay looks for rows nobody told it about (another process wrote them);
    back-off after a failure doubles from ``min_backoff_s`` up to ``max_backoff_s``, which
    must stay well below the stream's duplicate window. ``reads``: who looks up case heads
    and stored rows (default: this client, on the stream; an agency on a bus with
    permissions passes :class:`~lintas.infra.reads.ServiceReads`). ``verifier``: what the
    gate counts, and ``admission`` where each row is sent, as
    :class:`~lintas.producers.Publisher` says.
    """

    def __init__(
        self,
        engine: Engine,
        js: Any,
        *,
        stream: str = "LINTAS",
        batch: int = 100,
        timeout: float = 5.0,
        poll_interval_s: float = 1.0,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        signer: Signer | None = None,
        keys: CaseKeys | None = None,
        tracer_provider: TracerProvider | None = None,
        reads: StreamReads | None = None,
        verifier: Verifier | None = None,
        admission: Admission | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.signer = signer
        self.keys = keys
        self.verifier = verifier
        self.admission = admission
        self._gates: dict[str, PublishGate] = {}
        self._heads = Heads()
        self._sealed: dict[int, str] = {}  # position -> the body as published, when sealed
        self._tracer = tracer_for(tracer_provider, "lintas.producers")
        self.engine = engine
        self._js = js
        self._reads = reads or DirectReads(js, stream)
        self.stream = stream
        self.batch = batch
        self.timeout = timeout
        self.poll_interval_s = poll_interval_s
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Look for new rows now rather than at the next poll. Safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to wake
            loop.call_soon_threadsafe(self._wake.set)

    # -- one round ---------------------------------------------------------------------

    async def run_once(self) -> int:
        """Publish up to ``batch`` pending rows in order; return how many were sent.

        Stops at the first failure and raises it (:class:`BusUnavailable`,
        :class:`PublishRejected`, a refusal of the consent gate or of the sender's setup, or
        a database error), after marking the rows published before it: the failed row is
        first again next round. A row admission refuses for good is set aside
        (:class:`OutboxDeadLetter`), and the round goes on.
        """
        rows = await asyncio.to_thread(self._pending, self.batch)
        if not rows:
            return 0
        acked: list[tuple[_Pending, int]] = []
        duplicates = 0
        try:
            for row in rows:
                try:
                    # A row that failed before may have been stored all the same (the ack
                    # lost with the connection): look before publishing it again, since
                    # after a long outage JetStream's duplicate window may have passed.
                    stored = await self._stored_seq(row) if row.attempts else None
                    seq, duplicate = (
                        (stored, True) if stored is not None else await self._publish(row)
                    )
                except Refused as exc:
                    if not _for_good(exc, row):
                        await self._record_failure(row, exc, published=len(acked))
                        raise
                    # Sending it again gets the same answer: set aside, the rest flows.
                    await self._set_aside(row, exc)
                    continue
                except (BusUnavailable, PermanentError) as exc:
                    # Refused by the bus or the consent gate: first in line again next round.
                    await self._record_failure(row, exc, published=len(acked))
                    raise
                acked.append((row, seq))
                duplicates += duplicate
        finally:
            if acked:
                sealed, self._sealed = self._sealed, {}
                await asyncio.to_thread(self._mark_sent, acked, sealed)
        _log.info(
            "outbox.relayed",
            stream=self.stream,
            events=len(acked),
            duplicates=duplicates,
            stream_seqs=f"{acked[0][1]}..{acked[-1][1]}",
        )
        return len(acked)

    def _gate_of(self, agency: str) -> PublishGate:
        if agency not in self._gates:
            keys = self.keys if self.keys is not None and self.keys.agency == agency else None
            self._gates[agency] = PublishGate(
                self._js, agency, self.stream, keys, reads=self._reads, verifier=self.verifier
            )
        return self._gates[agency]

    async def _publish(self, row: _Pending) -> tuple[int, bool]:
        draft = decode(row.body.encode(), subject=row.subject, draft=True)
        if self.signer is not None and self.signer.agency != draft.source:
            raise PublishRejected(
                f"event {row.id} is {draft.source}'s; this relay signs as {self.signer.agency}"
            )
        gate = self._gate_of(draft.source)
        what = f"publishing event {row.id}"
        prepared: list[tuple[Event, CaseHead]] = []

        async def prepare(head: CaseHead) -> Event:
            ready = await gate.prepare(draft, head, what)
            prepared[:] = [(ready, head)]
            return ready

        with publishing(
            self._tracer,
            agency=draft.source,
            event_type=draft.type,
            case_id=draft.case_id,
            target=draft.target,
            cause=message_context(draft.envelope),
        ) as span:
            span.set_attributes({"messaging.message.id": draft.id, EVENT_ID: draft.id})
            seq, duplicate, stored = await publish_chained(
                self._js,
                draft,
                signer=self.signer,
                stream=self.stream,
                ack_timeout_s=self.timeout,
                what=what,
                reads=self._reads,
                prepare=prepare,
                admission=self.admission,
                heads=self._heads,
            )
            span.set_attributes({STREAM_SEQ: seq, DUPLICATE: duplicate})
        if prepared and not duplicate:
            await gate.stored(stored, prepared[0][1], seq)
        await gate.after(prepared[0][0] if prepared else stored, seq, what)
        if draft.data.clear_fields():
            self._sealed[row.position] = encode(stored.envelope).decode()
        return seq, duplicate

    async def _stored_seq(self, row: _Pending) -> int | None:
        """The stream sequence of ``row`` if it is the last message on its subject.

        The relay publishes one outbox's events in order and stops at the first failure,
        so nothing of this outbox was published after a row that failed: if the row was
        stored, it is the last message on its subject, unless another publisher (not this
        outbox) used the same subject since. Then it is published again, and JetStream's
        duplicate window is the only guard.
        """
        try:
            with bus_errors(f"looking up event {row.id}"):
                async with asyncio.timeout(self.timeout):
                    last = await self._reads.last_on(row.subject)
        except (nats.js.errors.APIError, ReadRefused):
            return None  # cannot tell: publish, and let the duplicate window judge
        if last is None or last[1] != row.id:
            return None
        _log.info("outbox.found_stored", event_id=row.id, stream_seq=last[0])
        with contextlib.suppress(ValueError, AttributeError, ReadRefused):
            with bus_errors(f"reading event {row.id}"):
                body = await self._reads.message(last[0])
            if json.loads(body or b"{}").get("data") != json.loads(row.body).get("data"):
                # Stored sealed: the row's plaintext goes, as after an acknowledged publish.
                self._sealed[row.position] = body.decode()
        return last[0]

    async def _set_aside(self, row: _Pending, refused: Refused) -> None:
        await asyncio.to_thread(self._mark_dead, row, refused)
        # Error level: the event will never be on the log; the agency decides what now.
        _log.error(
            "outbox.dead_lettered",
            stream=self.stream,
            event_id=row.id,
            position=row.position,
            code=refused.code,
            field=refused.field,
        )

    async def _record_failure(self, row: _Pending, exc: Exception, *, published: int) -> None:
        transient = isinstance(exc, BusUnavailable) and not isinstance(exc, NatsClientClosed)
        log = _log.warning if transient else _log.error
        try:
            attempts = await asyncio.to_thread(self._mark_failed, row, _short(exc))
        except Exception as db_exc:  # the database may be down too: the publish error wins
            attempts = None
            _log.warning(
                "outbox.record_failure_failed", event_id=row.id, error=type(db_exc).__name__
            )
        log(
            "outbox.publish_failed",
            stream=self.stream,
            event_id=row.id,
            position=row.position,
            attempts=attempts,
            published_before=published,
            error=str(exc),
        )

    # -- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, riding out the bus or the database being down."""
        self._loop = asyncio.get_running_loop()
        failures = 0
        _log.info("outbox.relay_started", stream=self.stream)
        try:
            while not stop.is_set():
                self._wake.clear()  # a commit during the round wakes the next one
                try:
                    sent = await self.run_once()
                except Exception as exc:
                    failures += 1
                    delay = self._backoff(failures)
                    expected = _expected(exc) or isinstance(
                        exc, PublishRejected | Refused | GateRefused
                    )
                    (_log.warning if expected else _log.error)(
                        "outbox.retrying",
                        stream=self.stream,
                        failures=failures,
                        delay_s=round(delay, 3),
                        error=type(exc).__name__,
                        exc_info=not expected,
                    )
                    await self._pause(stop, delay, wakeable=False)
                    continue
                if failures:
                    _log.info("outbox.recovered", stream=self.stream, failures=failures)
                    failures = 0
                if sent < self.batch:
                    await self._pause(stop, self.poll_interval_s, wakeable=True)
        finally:
            self._loop = None
            _log.info("outbox.relay_stopped", stream=self.stream)

    def _backoff(self, failures: int) -> float:
        """Doubling from ``min_backoff_s``, capped, with jitter: relays of many agencies
        that lost one bus do not all come back at the same instant."""
        ceiling = min(self.max_backoff_s, self.min_backoff_s * 2.0 ** min(failures - 1, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _pause(self, stop: asyncio.Event, seconds: float, *, wakeable: bool) -> None:
        waiters = [asyncio.ensure_future(stop.wait())]
        if wakeable:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # -- housekeeping ------------------------------------------------------------------

    async def pending(self) -> int:
        """How many committed rows wait to be published."""
        return await asyncio.to_thread(self._count_pending)

    async def prune(self, *, sent_before: datetime) -> int:
        """Delete rows sent before ``sent_before``; return how many. Pending rows stay."""
        return await asyncio.to_thread(self._prune, sent_before)

    # -- database (sync; called through asyncio.to_thread) -----------------------------

    def _pending(self, limit: int) -> list[_Pending]:
        c = _TABLE.c
        query = (
            select(c.position, c.id, c.subject, c.body, c.attempts)
            .where(c.sent_at.is_(None))
            .order_by(c.position)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_Pending(*row) for row in conn.execute(query)]

    def _mark_sent(self, acked: list[tuple[_Pending, int]], sealed: dict[int, str]) -> None:
        c = _TABLE.c
        now = datetime.now(UTC)
        statement = (
            update(_TABLE)
            .where(c.position == bindparam("b_position"), c.sent_at.is_(None))
            .values(
                sent_at=bindparam("b_sent_at"),
                stream_seq=bindparam("b_stream_seq"),
                attempts=c.attempts + 1,
            )
        )
        with self.engine.begin() as conn:
            conn.execute(
                statement,
                [
                    {"b_position": row.position, "b_sent_at": now, "b_stream_seq": seq}
                    for row, seq in acked
                ],
            )
            for position, body in sealed.items():
                # What was published, sealed: the plaintext leaves the outbox with the event.
                conn.execute(update(_TABLE).where(c.position == position).values(body=body))

    def _mark_failed(self, row: _Pending, error: str) -> int | None:
        c = _TABLE.c
        with self.engine.begin() as conn:
            conn.execute(
                update(_TABLE)
                .where(c.position == row.position)
                .values(attempts=c.attempts + 1, last_error=error)
            )
            return conn.execute(select(c.attempts).where(c.position == row.position)).scalar()

    def _mark_dead(self, row: _Pending, refused: Refused) -> None:
        c = _TABLE.c
        with self.engine.begin() as conn:
            created = conn.execute(
                select(c.created_at, c.agency).where(c.position == row.position)
            ).one()
            conn.execute(
                insert(_DEAD).values(
                    position=row.position,
                    id=row.id,
                    agency=created.agency,
                    subject=row.subject,
                    created_at=created.created_at,
                    refused_at=datetime.now(UTC),
                    attempts=row.attempts + 1,
                    code=refused.code[:64],
                    field=refused.field[:255] if refused.field else None,
                )
            )
            conn.execute(delete(_TABLE).where(c.position == row.position))

    def _count_pending(self) -> int:
        query = select(func.count()).select_from(_TABLE).where(_TABLE.c.sent_at.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _prune(self, sent_before: datetime) -> int:
        c = _TABLE.c
        with self.engine.begin() as conn:
            result = conn.execute(delete(_TABLE).where(c.sent_at < sent_before))
            return int(result.rowcount)
