"""The deadline watchdog: a projection of hand-off deadlines, and a ticker that publishes
overdue notices and escalations to KPAI, each exactly once.

Two halves, as any consumer that acts:

* :class:`WatchdogProjection` is an ordinary projection behind the consumer edge (durable
  ``watchdog`` on ``lintas.>``): it folds every event into ``watchdog_deadline`` rows
  (:mod:`.deadlines`), in the same transaction as its tracking position. It also records
  the notices themselves when they come back from the stream (``overdue_seq``,
  ``escalated_seq``), whoever sent them. Before it folds an event it asks the authority
  policy (:mod:`lintas.contracts.authority`) on the case's state, kept in
  ``watchdog_case``: a refused event (a referral of a case never opened, an answer from
  an agency not asked, a notice from another than the watchdog) raises
  :class:`~lintas.contracts.AuthorityRefused` and is quarantined, so the watchdog never
  follows, notices or escalates a hand-off the policy refuses.
* :class:`Watchdog` ticks on an injected clock. Each tick reads the tracked position,
  *then* the open deadlines that are due; for each, it reads the case's head (its last
  stored event) and acts only if the projection has applied the case up to that head
  (tracked position >= head): the projection then knows everything the case holds, and
  says no notice was sent. It publishes the notice **conditional on that head**
  (``Nats-Expected-Last-Subject-Sequence`` over the case's subjects, the same check that
  keeps the hash chain). If anything else of the case was stored meanwhile (another
  replica's notice, an answer) JetStream refuses, and the next tick decides again on a
  fresh view. After a publish, it notes the sequence in its row, so that it never sends
  again even if its own consumer could not apply the notice.

Why not deduplication alone: notice ids are derived from the hand-off, so two replicas
publish the same id, but ``Nats-Msg-Id`` deduplication holds only within the stream's
duplicate window (two minutes by default); a replica restarted from an old projection, or
one whose consumer lags, could publish again hours later. The compare-and-set on the
case's log holds for any time span, and the projection (written with its position) is
what makes the decision repeatable after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker
from opentelemetry.trace import TracerProvider
from pydantic import TypeAdapter
from sqlalchemy import BigInteger, and_, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from lintas.consumers import deadlines
from lintas.consumers.app import Databases, _runner, app_of, attach_runner, create_broker
from lintas.consumers.deadlines import Action, Deadline, DeadlinePolicy, Key
from lintas.consumers.projections import Batch
from lintas.consumers.runner import OnCommit, ProjectionRunner
from lintas.contracts import WATCHDOG, ContractError, TransientError, authority
from lintas.contracts.handoffs import classify
from lintas.infra.bootstrap import Parts
from lintas.infra.clock import Clock, SystemClock
from lintas.infra.db import Tracking, UTCDateTime
from lintas.infra.keys.signing import Registry, Verifier, load_registry
from lintas.infra.nats.background import Background
from lintas.infra.nats.outage import Outage
from lintas.infra.nats.topology import ConsumerSpec, watchdog_consumer
from lintas.infra.settings import Settings
from lintas.producers import HeadMoved, Publisher, PublishRejected, Refused, publisher_for

__all__ = [
    "DeadlineRow",
    "RunningTicker",
    "Tick",
    "Watchdog",
    "WatchdogCaseRow",
    "WatchdogProjection",
    "attach_watchdog",
    "create_watchdog_app",
    "load_deadlines",
    "start_ticker",
    "watchdog_ticker",
]

_log = structlog.get_logger("lintas.watchdog")


class DeadlineRow(SQLModel, table=True):
    __tablename__ = "watchdog_deadline"

    case_id: str = Field(primary_key=True, max_length=32)
    requester: str = Field(primary_key=True, max_length=64)
    request_id: str = Field(primary_key=True, max_length=64)
    handoff: str = Field(max_length=32)
    what: str | None = Field(default=None, max_length=120)
    asked: str = Field(max_length=64, index=True)
    requested_at: datetime = Field(sa_type=UTCDateTime)
    due: datetime = Field(sa_type=UTCDateTime, index=True)
    escalate_at: datetime = Field(sa_type=UTCDateTime, index=True)
    status: str = Field(max_length=16, index=True)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    overdue_seq: int | None = Field(default=None, sa_type=BigInteger)
    escalated_seq: int | None = Field(default=None, sa_type=BigInteger)


class WatchdogCaseRow(SQLModel, table=True):
    """What the authority policy knows of a case, as the watchdog folded it."""

    __tablename__ = "watchdog_case"

    case_id: str = Field(primary_key=True, max_length=32)
    state: str = Field(description="the case's authority.CaseState as JSON")


_STATE: TypeAdapter[authority.CaseState] = TypeAdapter(authority.CaseState)


def _item(row: DeadlineRow) -> Deadline:
    return Deadline.model_validate(row, from_attributes=True)


class WatchdogProjection:
    name: ClassVar[str] = "watchdog"
    schema_version: ClassVar[int] = 1
    tables: ClassVar[tuple[type[SQLModel], ...]] = (DeadlineRow, WatchdogCaseRow)

    @staticmethod
    def feeds(consumer: str) -> bool:
        return consumer.startswith("watchdog")

    def __init__(self, policy: DeadlinePolicy) -> None:
        self.policy = policy

    def _judge(self, session: Session, batch: Batch) -> None:
        """Fold the batch into its cases' authority states; raise the first refusal (before
        anything of the batch is written: the runner then applies it event by event)."""
        wanted = sorted({event.case_id for _, event in batch})
        stored = {
            row.case_id: row
            for row in session.exec(
                select(WatchdogCaseRow).where(col(WatchdogCaseRow.case_id).in_(wanted))
            )
        }
        # A case the watchdog tracked before it kept states (deadlines, no state row) is
        # not judged: its state would start before its opening. New cases all are.
        legacy = set(
            session.exec(
                select(DeadlineRow.case_id).where(
                    col(DeadlineRow.case_id).in_(sorted(set(wanted) - stored.keys()))
                )
            ).all()
        )
        states = {cid: _STATE.validate_json(row.state) for cid, row in stored.items()}
        changed: set[str] = set()
        for _seq, event in batch:
            if event.case_id in legacy:
                continue
            before = states.get(event.case_id, authority.start())
            after = authority.check(before, event)
            if after != before:
                states[event.case_id] = after
                changed.add(event.case_id)
        for case_id in sorted(changed):
            doc = _STATE.dump_json(states[case_id]).decode()
            row = stored.get(case_id)
            if row is None:
                session.add(WatchdogCaseRow(case_id=case_id, state=doc))
            else:
                row.state = doc

    def apply_batch(self, session: Session, batch: Batch) -> int:
        self._judge(session, batch)
        rows: dict[Key, DeadlineRow | None] = {}

        def row_of(key: Key) -> DeadlineRow | None:
            if key not in rows:
                rows[key] = session.get(DeadlineRow, key)
            return rows[key]

        changed = 0
        for seq, event in batch:
            if event.type == "case.closed":
                # Rows added in this batch are flushed first (autoflush), so they close too.
                for open_row in session.exec(
                    select(DeadlineRow).where(
                        DeadlineRow.case_id == event.case_id, DeadlineRow.status == "open"
                    )
                ):
                    closed = deadlines.close(_item(open_row), event)
                    open_row.status, open_row.answered_at = closed.status, closed.answered_at
                    rows[closed.key] = open_row
                    changed += 1
                continue
            key = deadlines.escalated_key(event)
            if key is None:
                step = classify(event)
                if step is None:
                    continue
                key = (event.case_id, step.requester, step.request_id)
            row = row_of(key)
            before = None if row is None else _item(row)
            after = deadlines.apply(before, event, seq, self.policy)
            if after is None or after == before:
                continue
            if row is None:
                row = DeadlineRow(**after.model_dump())
                session.add(row)
                rows[key] = row
            else:
                for name, value in after.model_dump().items():
                    setattr(row, name, value)
            changed += 1
        return changed


def load_deadlines(session: Session, *, status: str | None = None) -> list[Deadline]:
    query = select(DeadlineRow).order_by(col(DeadlineRow.due))
    if status is not None:
        query = query.where(DeadlineRow.status == status)
    return [_item(row) for row in session.exec(query)]


@dataclass(slots=True)
class Tick:
    """What one tick did: the notices it published (kind, hand-off key, stream sequence),
    and how many due actions it left for a later tick."""

    at: datetime
    published: list[tuple[str, Key, int]] = field(default_factory=list)
    lagging: int = 0  # the projection had not applied the case up to its head yet
    contended: int = 0  # the case's head moved between the decision and the publish
    failed: int = 0  # refused for good (logged); tried again next tick
    moot: int = 0  # admission says the hand-off is answered: noted, never tried again


class Watchdog:
    """Evaluates the deadlines at ``clock.now()`` on each :meth:`tick`; publishes as the
    ``watchdog`` participant, through a Publisher signing with its key."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        engine: Engine,
        stream: str,
        consumer: str = "watchdog",
        lock: asyncio.Lock | None = None,
        clock: Clock | None = None,
        limit: int = 256,
    ) -> None:
        if publisher.agency != WATCHDOG:
            raise ValueError(f"the watchdog publishes as {WATCHDOG!r}, not {publisher.agency!r}")
        self.publisher = publisher
        self.engine = engine
        self.stream = stream
        self.consumer = consumer
        self.lock = lock or asyncio.Lock()
        self.clock = clock or SystemClock()
        self.limit = limit

    async def tick(self) -> Tick:
        now = self.clock.now()
        tick = Tick(at=now)
        async with self.lock:
            position, due = await asyncio.to_thread(self._due, now)
        for action in due:
            await self._act(action, position, tick)
        if tick.published or tick.failed or tick.moot:
            _log.info(
                "watchdog.tick",
                published=len(tick.published),
                lagging=tick.lagging,
                contended=tick.contended,
                failed=tick.failed,
                moot=tick.moot,
            )
        return tick

    async def run(self, interval_s: float) -> None:
        """Tick every ``interval_s`` seconds until cancelled; a failed tick is logged and
        the next one tries again."""
        while True:
            try:
                await self.tick()
            except TransientError as exc:
                _log.warning("watchdog.tick_failed", error=str(exc))
            except Exception:
                _log.error("watchdog.tick_failed", exc_info=True)
            await asyncio.sleep(interval_s)

    # -- one action ----------------------------------------------------------------------

    async def _act(self, action: Action, position: int, tick: Tick) -> None:
        item = action.item
        head = await self.publisher.head(item.case_id)
        if head.seq > position:
            tick.lagging += 1
            return
        notice = (
            deadlines.overdue_notice(item)
            if action.kind == "overdue"
            else deadlines.escalation(item)
        )
        try:
            published = await self.publisher.publish(
                notice.event_type,
                notice.data,
                case_id=item.case_id,
                target=notice.target,
                event_id=notice.event_id,
                time=tick.at,
                expected_head=head,
            )
        except HeadMoved:
            tick.contended += 1
            return
        except Refused as exc:
            if exc.code != "no_such_request" or action.kind != "overdue":
                raise
            # The log holds an answer this projection has not folded as one (it raced the
            # notice, or the projection set it aside): nothing is owed, so nothing to send,
            # now or at a later tick; the answer, once folded, changes nothing more.
            tick.moot += 1
            _log.info(
                "watchdog.notice_moot",
                case_id=item.case_id,
                handoff=item.handoff,
                request_id=item.request_id,
                event_type=notice.event_type,
            )
            async with self.lock:
                await asyncio.to_thread(self._answered, item.key)
            return
        except (ContractError, PublishRejected) as exc:
            tick.failed += 1
            _log.error(
                "watchdog.notice_refused",
                case_id=item.case_id,
                handoff=item.handoff,
                request_id=item.request_id,
                event_type=notice.event_type,
                reason=str(exc),
            )
            return
        async with self.lock:
            await asyncio.to_thread(self._note, item.key, action.kind, published.stream_seq)
        tick.published.append((action.kind, item.key, published.stream_seq))
        _log.info(
            "watchdog.overdue" if action.kind == "overdue" else "watchdog.escalated",
            case_id=item.case_id,
            handoff=item.handoff,
            request_id=item.request_id,
            requester=item.requester,
            asked=item.asked,
            event_type=notice.event_type,
            stream_seq=published.stream_seq,
        )

    # -- the projection's side -------------------------------------------------------------

    def _due(self, now: datetime) -> tuple[int, list[Action]]:
        """The tracked position, then the due actions: in this order, so that every row read
        is at least as new as the position (PostgreSQL reads each statement afresh)."""
        with Session(self.engine) as session:
            tracking = session.exec(
                select(Tracking).where(
                    Tracking.consumer == self.consumer, Tracking.stream == self.stream
                )
            ).first()
            position = tracking.position if tracking is not None else 0
            rows = session.exec(
                select(DeadlineRow)
                .where(
                    DeadlineRow.status == "open",
                    or_(
                        and_(col(DeadlineRow.overdue_seq).is_(None), col(DeadlineRow.due) <= now),
                        and_(
                            col(DeadlineRow.overdue_seq).is_not(None),
                            col(DeadlineRow.escalated_seq).is_(None),
                            col(DeadlineRow.escalate_at) <= now,
                        ),
                    ),
                )
                .order_by(col(DeadlineRow.due))
                .limit(self.limit)
            ).all()
            items = [_item(row) for row in rows]
        return position, deadlines.actions(items, now)

    def _answered(self, key: Key) -> None:
        """The hand-off is answered as far as the log's policy goes (when, this projection
        does not know: ``answered_at`` stays empty)."""
        self._update(key, col(DeadlineRow.status) == "open", {"status": "answered"})

    def _note(self, key: Key, kind: str, seq: int) -> None:
        column = DeadlineRow.overdue_seq if kind == "overdue" else DeadlineRow.escalated_seq
        self._update(key, col(column).is_(None), {column: seq})

    def _update(self, key: Key, unless_done: Any, values: dict[Any, Any]) -> None:
        """Set ``values`` on one hand-off's row, where ``unless_done`` still holds."""
        case_id, requester, request_id = key
        with Session(self.engine) as session:
            session.exec(
                update(DeadlineRow)
                .where(
                    col(DeadlineRow.case_id) == case_id,
                    col(DeadlineRow.requester) == requester,
                    col(DeadlineRow.request_id) == request_id,
                    unless_done,
                )
                .values(values)
            )
            session.commit()


# -- wiring ----------------------------------------------------------------------------------


def attach_watchdog(
    broker: NatsBroker,
    databases: Databases,
    settings: Settings,
    *,
    on_commit: Sequence[OnCommit] = (),
    verifier: Verifier | None = None,
    spec: ConsumerSpec | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ProjectionRunner:
    """The watchdog's projection on ``broker`` (durable ``watchdog`` unless ``spec`` says)."""
    spec = spec or watchdog_consumer()
    projection = WatchdogProjection(DeadlinePolicy.from_settings(settings))
    runner = _runner(
        databases,
        settings,
        spec,
        spec.name,
        projection,
        on_commit,
        verifier=verifier,
        tracer_provider=tracer_provider,
    )
    # Deadlines are hours or days away: the watchdog can wait for fuller batches (fewer
    # transactions) where agencies' consumers answer in a tenth of a second.
    pulled = settings.model_copy(update={"fetch_timeout_s": max(settings.fetch_timeout_s, 1.0)})
    attach_runner(broker, runner, spec, pulled)
    return runner


def watchdog_ticker(
    databases: Databases,
    settings: Settings,
    publisher: Publisher,
    *,
    clock: Clock | None = None,
    consumer: str = "watchdog",
) -> Watchdog:
    """The ticker over the projection ``attach_watchdog`` keeps (same database, same lock)."""
    engine, lock = databases.for_consumer(consumer)
    return Watchdog(
        publisher=publisher,
        engine=engine,
        stream=settings.stream,
        consumer=consumer,
        lock=lock,
        clock=clock,
    )


class RunningTicker(Background):
    """A watchdog ticking in the background on its own connection; :meth:`stop` ends both."""


async def start_ticker(
    parts: Parts,
    databases: Databases,
    *,
    clock: Clock | None = None,
    verifier: Verifier | None = None,
) -> RunningTicker:
    """Tick every ``watchdog_tick_s`` over the projection ``attach_watchdog`` keeps in
    ``databases``, publishing as the watchdog (with its key from the data directory; its
    gate counts what ``verifier`` finds signed, as :class:`~lintas.producers.Publisher`
    says)."""
    # Its own connection, reconnecting forever: the ticker outlives outages of the bus.
    # As itself where it has credentials: it may publish only as the watchdog, and asks
    # the read service for its cases' heads, as an agency does.
    nc = await parts.connect(WATCHDOG, name="lintas-watchdog", reconnect_forever=True)
    try:
        publisher = await publisher_for(parts, nc, WATCHDOG, verifier)
    except BaseException:
        await nc.close()
        raise
    ticker = watchdog_ticker(databases, parts.settings, publisher, clock=clock)
    return RunningTicker(nc, asyncio.create_task(ticker.run(parts.settings.watchdog_tick_s)))


def create_watchdog_app(
    parts: Parts,
    registry: Registry | None = None,
    *,
    clock: Clock | None = None,
    outage: Outage | None = None,
) -> FastStream:
    """The watchdog's app: its projection, and its ticker every ``watchdog_tick_s``."""
    parts.signer(WATCHDOG)  # no key, no app: before anything connects
    databases = Databases(parts.settings)
    verifier = parts.trust(registry or load_registry(parts.settings))
    # It reads every event, as the platform.
    broker = create_broker(parts.url, parts.settings, "platform", outage=outage)
    attach_watchdog(
        broker, databases, parts.settings, verifier=verifier, tracer_provider=parts.tracer_provider
    )
    app = app_of(broker, databases, parts)
    running: list[RunningTicker] = []

    async def start() -> None:
        running.append(await start_ticker(parts, databases, clock=clock, verifier=verifier))

    async def stop() -> None:
        while running:
            await running.pop().stop()

    app.after_startup(start)
    app.on_shutdown(stop)
    return app
