"""What operators see in ``lintas status`` and ``lintas watch``: one snapshot of the platform.

Read from two places, never written: the bus (JetStream stream and consumer info, the
quarantine stream) and the projections (each agency's worklist, the watchdog's
deadlines). :class:`Status` is the documented JSON shape of ``lintas status --json``
(``schema`` names its version; fields are only ever added to it).

Per agency, from its durable consumers ``agency-<a>`` and ``sent-<a>``:

* ``pending``: messages for it not yet delivered; ``ack_pending``: delivered, not yet
  acknowledged (a consumer acknowledges after its transaction commits);
* ``lag_s``: how long ago the oldest message it has not acknowledged was stored (0 when
  caught up; None when that could not be read: ``problems`` says why);
* ``events_per_second``: messages its consumers acknowledged per second between two
  samples (None from a single sample);

and from its worklist: open hand-offs (requested or accepted) by age, and how many of
them are overdue; from the watchdog: how many of them were escalated to KPAI; from the
quarantine: how many of its messages are held there.

A lag needs the time a message was stored, which only a read of the stream tells, and the
stream's own numbers (message count, bytes, first and last sequence) its info. The operator
may do neither (``lintas.infra.nats.access``: a stream info request with a subjects filter
lists who wrote what to whom about which case): on a secured bus it asks the platform's read
service (``oldest-unacked``: a time, nothing of the message; ``stream-state``: four
numbers). When no read service answers, the snapshot is still taken, with the stream's
numbers and those lags unknown and one line of ``problems`` saying so: ``lintas status``
is wanted most when something is wrong. The quarantine's counts per consumer come from its
own stream info, which the operator may ask: its subjects name consumers only.

Errors::

    NothingRunYet   (permanent) no stream on the bus, or no store in the data dir
    BusUnavailable  (transient, infra.errors) the bus does not answer
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import nats.js.errors
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlmodel import Session, col, select

from lintas.consumers.projections import WorklistRow
from lintas.consumers.watchdog import DeadlineRow
from lintas.contracts import PermanentError, agency_name
from lintas.infra.db import Tracking
from lintas.infra.errors import BusUnavailable, NotPermitted, bus_errors
from lintas.infra.nats.credentials import uses_credentials
from lintas.infra.nats.topology import agency_of, quarantine_stream
from lintas.infra.reads import OPERATOR, DirectReads, ReadRefused, ServiceReads, StreamState
from lintas.infra.settings import Settings

__all__ = [
    "AGE_BUCKETS",
    "SCHEMA",
    "AgencyStatus",
    "BusSample",
    "ConsumerSample",
    "ConsumerStatus",
    "NothingRunYet",
    "OpenHandoffs",
    "Projections",
    "Status",
    "StatusReads",
    "StreamStatus",
    "WatchdogStatus",
    "build_status",
    "read_projections",
    "sample_bus",
    "status_reads",
]

SCHEMA = "lintas.status/1"

# Open hand-offs by how long ago they were requested: (name, up to this age).
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("under_1d", timedelta(days=1)),
    ("1d_to_7d", timedelta(days=7)),
    ("7d_to_30d", timedelta(days=30)),
    ("over_30d", None),
)


class NothingRunYet(PermanentError):
    """There is nothing to show: lintas has not run on this bus or data directory yet."""


# -- the JSON shape ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConsumerStatus(_Model):
    pending: int
    ack_pending: int
    lag_s: float | None
    events_per_second: float | None


class OpenHandoffs(_Model):
    total: int
    by_age: dict[str, int]


class AgencyStatus(_Model):
    name: str
    consumers: list[str]
    pending: int | None
    ack_pending: int | None
    lag_s: float | None
    events_per_second: float | None
    open: OpenHandoffs | None
    overdue: int | None
    escalated: int | None
    quarantined: int


class StreamStatus(_Model):
    name: str
    # None: not read (``problems`` says why), as when no read service answers the operator.
    messages: int | None
    last_seq: int | None
    events_per_second: float | None
    first_seq: int | None = None
    bytes: int | None = None


class WatchdogStatus(_Model):
    followed: int
    open: int
    overdue: int
    escalated: int


class Status(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["lintas.status/1"] = Field(default="lintas.status/1", alias="schema")
    at: datetime
    sample_s: float | None
    stream: StreamStatus
    quarantined: int
    agencies: dict[str, AgencyStatus]
    consumers: dict[str, ConsumerStatus]
    watchdog: WatchdogStatus | None
    # What could not be read (the stream's numbers, a lag, when no read service answers):
    # the rest still is.
    problems: list[str] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# -- the bus ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerSample:
    name: str
    pending: int
    ack_pending: int
    acknowledged: int  # the consumer sequence of its ack floor: deliveries acknowledged
    lag_s: float | None  # None: not read (BusSample.problems says why)


@dataclass(frozen=True, slots=True)
class BusSample:
    monotonic: float
    stream: StreamState | None  # None: not read (``problems`` says why)
    consumers: dict[str, ConsumerSample]
    quarantined: dict[str, int]  # by consumer
    problems: tuple[str, ...] = ()


class StatusReads(Protocol):
    """Where the stream's numbers and a consumer's lag are read: the stream itself
    (``DirectReads``), or the read service as the operator (``ServiceReads(nc,
    "operator")``)."""

    async def stream_state(self) -> StreamState: ...

    async def oldest_unacknowledged(self, consumer: str) -> datetime | None: ...


class _Reads:
    """The stream's numbers and each consumer's lag, read once each. Once the read service
    does not answer, nothing more is asked of it (the same failure, each after its own
    timeout); after a lag is refused (by the service or the bus), no other lag is asked.
    What was not read is told in one line per failure: ``stream state and lag not read
    (<why>)``."""

    def __init__(self, reads: StatusReads, now: datetime) -> None:
        self._reads, self._now = reads, now
        self._away: str | None = None  # why the read service (or stream) did not answer
        self._lag_refused: str | None = None
        self._missed: dict[str, list[str]] = {}  # why -> what was not read

    def _miss(self, what: str, why: str) -> None:
        missed = self._missed.setdefault(why, [])
        if what not in missed:
            missed.append(what)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f"{' and '.join(what)} not read ({why})" for why, what in self._missed.items())

    async def stream(self) -> StreamState | None:
        if self._away is not None:
            self._miss("stream state", self._away)
            return None
        try:
            return await self._reads.stream_state()
        except BusUnavailable as exc:
            self._away = str(exc)
            self._miss("stream state", self._away)
        except (ReadRefused, NotPermitted) as exc:
            # Refused: by the service, or by the bus (an authorization rendered before the
            # operator could ask for it). Lags are other requests: they are still asked.
            self._miss("stream state", str(exc))
        return None

    async def lag(self, info: Any) -> float | None:
        if not (info.num_pending or info.num_ack_pending):
            return 0.0
        if (why := self._away or self._lag_refused) is not None:
            self._miss("lag", why)
            return None
        try:
            stored = await self._reads.oldest_unacknowledged(info.name)
        except BusUnavailable as exc:
            self._away = str(exc)
            self._miss("lag", self._away)
            return None
        except (ReadRefused, NotPermitted) as exc:
            self._lag_refused = str(exc)
            self._miss("lag", self._lag_refused)
            return None
        except nats.js.errors.NotFoundError:
            return 0.0  # deleted since it was listed
        return 0.0 if stored is None else max(0.0, (self._now - stored).total_seconds())


def status_reads(nc: Any, js: Any, settings: Settings) -> StatusReads:
    """Where the operator, connected as ``nc``, reads the stream's numbers and lags: the
    read service when it logs in with its own nkey (the bus then keeps it off the stream
    and its info), else the stream."""
    if uses_credentials(settings, OPERATOR):
        return ServiceReads(nc, OPERATOR)
    return DirectReads(js, settings.stream)


async def sample_bus(
    js: Any, settings: Settings, now: datetime, reads: StatusReads | None = None
) -> BusSample:
    """The event stream, every durable consumer on it, and the quarantine, once; the
    stream's numbers and lags read through ``reads`` (default: the stream, for an identity
    that may read it)."""
    stream = settings.stream
    asked = _Reads(reads if reads is not None else DirectReads(js, stream), now)
    nothing = NothingRunYet(
        f"there is no stream {stream} on the bus: nothing has run yet "
        "(start `lintas up`, or try `lintas demo`)"
    )
    with bus_errors(f"reading the state of {stream}", js):
        try:
            state = await asked.stream()
        except nats.js.errors.NotFoundError:  # read on the stream itself
            raise nothing from None
        consumers: dict[str, ConsumerSample] = {}
        offset = 0
        while True:
            try:
                # Asked of the bus whoever reads the stream's numbers: the read service
                # answers "no stream" as a refusal like any other.
                page = await js.consumers_info(stream, offset=offset or None)
            except nats.js.errors.NotFoundError:
                raise nothing from None
            for info in page:
                consumers[info.name] = ConsumerSample(
                    name=info.name,
                    pending=int(info.num_pending or 0),
                    ack_pending=int(info.num_ack_pending or 0),
                    acknowledged=int(info.ack_floor.consumer_seq or 0),
                    lag_s=await asked.lag(info),
                )
            if len(page) < 256:
                break
            offset += len(page)
        quarantined: dict[str, int] = {}
        prefix = f"{settings.stream.lower()}_quarantine."
        try:
            held = await js.stream_info(quarantine_stream(settings), subjects_filter=f"{prefix}>")
        except nats.js.errors.NotFoundError:
            pass
        else:
            for subject, count in (held.state.subjects or {}).items():
                consumer = subject.removeprefix(prefix)
                quarantined[consumer] = quarantined.get(consumer, 0) + int(count)
    return BusSample(
        monotonic=time.monotonic(),
        stream=state,
        consumers=consumers,
        quarantined=quarantined,
        problems=asked.problems,
    )


# -- the projections ----------------------------------------------------------------------------


@dataclass(slots=True)
class Projections:
    """What the read models say: per agency, open hand-offs and the overdue among them (None:
    no worklist yet), and the watchdog's deadlines (None: it never ran)."""

    open: dict[str, OpenHandoffs | None] = field(default_factory=dict)
    overdue: dict[str, int | None] = field(default_factory=dict)
    escalated: dict[str, int] = field(default_factory=dict)
    watchdog: WatchdogStatus | None = None


def _bucket(age: timedelta) -> str:
    for name, limit in AGE_BUCKETS:
        if limit is None or age < limit:
            return name
    raise AssertionError("the last bucket has no limit")  # pragma: no cover


def _exists(url: str) -> bool:
    """A SQLite projection that was never written is absent, not empty: do not create it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return True
    return Path(parsed.database).exists()


def _has_run(engine: Engine, table: str, consumers: Sequence[str]) -> bool:
    """Whether one of ``consumers`` ever applied anything here (with PostgreSQL every
    projection shares one database: an existing table says nothing of one agency)."""
    tables = inspect(engine)
    if not (tables.has_table(table) and tables.has_table(Tracking.__tablename__)):
        return False
    with Session(engine) as session:
        found = session.exec(
            select(Tracking.consumer).where(col(Tracking.consumer).in_(consumers)).limit(1)
        ).first()
    return found is not None


def read_projections(
    engine_for: Callable[[str], Engine],
    settings: Settings,
    agencies: Iterable[str],
    now: datetime,
) -> Projections:
    """``engine_for(database)`` gives the engine of a projection database."""
    projections = Projections()
    for agency in agencies:
        database = f"worklist-{agency}"
        projections.open[agency] = None
        projections.overdue[agency] = None
        if not _exists(settings.database_url_for(database)):
            continue
        engine = engine_for(database)
        if not _has_run(engine, WorklistRow.__tablename__, [f"agency-{agency}", f"sent-{agency}"]):
            continue
        by_age = {name: 0 for name, _ in AGE_BUCKETS}
        overdue = 0
        with Session(engine) as session:
            rows = session.exec(
                select(WorklistRow.requested_at, WorklistRow.updated_at, WorklistRow.overdue).where(
                    WorklistRow.agency == agency,
                    col(WorklistRow.status).in_(("requested", "accepted")),
                )
            )
            for requested_at, updated_at, is_overdue in rows:
                by_age[_bucket(now - (requested_at or updated_at))] += 1
                overdue += bool(is_overdue)
        projections.open[agency] = OpenHandoffs(total=sum(by_age.values()), by_age=by_age)
        projections.overdue[agency] = overdue
    if _exists(settings.database_url_for("watchdog")):
        engine = engine_for("watchdog")
        if _has_run(engine, DeadlineRow.__tablename__, ["watchdog"]):
            followed = open_ = overdue = escalated = 0
            with Session(engine) as session:
                deadlines = session.exec(
                    select(
                        DeadlineRow.asked,
                        DeadlineRow.status,
                        DeadlineRow.overdue_seq,
                        DeadlineRow.escalated_seq,
                    )
                )
                for asked, status, overdue_seq, escalated_seq in deadlines:
                    followed += 1
                    if status != "open":
                        continue
                    open_ += 1
                    overdue += overdue_seq is not None
                    if escalated_seq is not None:
                        escalated += 1
                        projections.escalated[asked] = projections.escalated.get(asked, 0) + 1
            projections.watchdog = WatchdogStatus(
                followed=followed, open=open_, overdue=overdue, escalated=escalated
            )
    return projections


# -- together ---------------------------------------------------------------------------------


def _rate(now: float, before: float, seconds: float) -> float:
    return round(max(0.0, now - before) / seconds, 3) if seconds > 0 else 0.0


def build_status(
    settings: Settings,
    current: BusSample,
    previous: BusSample | None,
    projections: Projections,
    agencies: Sequence[str],
    now: datetime,
) -> Status:
    """One snapshot from a bus sample (and the one before it, for rates) and the projections.

    Agencies: those asked for, and any other with a consumer on the bus."""
    seconds = current.monotonic - previous.monotonic if previous is not None else None

    def rate(name: str) -> float | None:
        if previous is None or seconds is None or name not in previous.consumers:
            return None
        return _rate(
            current.consumers[name].acknowledged, previous.consumers[name].acknowledged, seconds
        )

    consumers = {
        name: ConsumerStatus(
            pending=sample.pending,
            ack_pending=sample.ack_pending,
            lag_s=round(sample.lag_s, 3) if sample.lag_s is not None else None,
            events_per_second=rate(name),
        )
        for name, sample in sorted(current.consumers.items())
    }
    seen = [a for c in current.consumers if (a := agency_of(c)) is not None]
    everyone = list(dict.fromkeys([*agencies, *sorted(seen)]))
    statuses: dict[str, AgencyStatus] = {}
    for agency in everyone:
        names = (f"agency-{agency}", f"sent-{agency}")
        own = [c for c in names if c in consumers]
        rates = [consumers[c].events_per_second for c in own]
        statuses[agency] = AgencyStatus(
            name=agency_name(agency),
            consumers=own,
            pending=sum(consumers[c].pending for c in own) if own else None,
            ack_pending=sum(consumers[c].ack_pending for c in own) if own else None,
            lag_s=_max_lag(consumers[c].lag_s for c in own) if own else None,
            events_per_second=(
                round(sum(r for r in rates if r is not None), 3)
                if own and all(r is not None for r in rates)
                else None
            ),
            open=projections.open.get(agency),
            overdue=projections.overdue.get(agency),
            escalated=(
                projections.escalated.get(agency, 0) if projections.watchdog is not None else None
            ),
            quarantined=sum(
                current.quarantined.get(c, 0) for c in (f"agency-{agency}", f"sent-{agency}")
            ),
        )
    state, before = current.stream, previous.stream if previous is not None else None
    return Status(
        at=now,
        sample_s=round(seconds, 3) if seconds is not None else None,
        stream=StreamStatus(
            name=settings.stream,
            messages=state.messages if state is not None else None,
            last_seq=state.last_seq if state is not None else None,
            events_per_second=(
                _rate(state.last_seq, before.last_seq, seconds)
                if state is not None and before is not None and seconds is not None
                else None
            ),
            first_seq=state.first_seq if state is not None else None,
            bytes=state.bytes if state is not None else None,
        ),
        quarantined=sum(current.quarantined.values()),
        agencies=statuses,
        consumers=consumers,
        watchdog=projections.watchdog,
        problems=list(current.problems),
    )


def _max_lag(lags: Iterable[float | None]) -> float | None:
    """An agency's lag: its consumers' longest, unknown if any one's is."""
    known = list(lags)
    return (
        None if any(lag is None for lag in known) else max(lag for lag in known if lag is not None)
    )
