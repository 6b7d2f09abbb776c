"""Wiring the projections onto FastStream subscribers.

One FastStream application per agency (``create_agency_app``) for production, where
each agency runs its own process; ``attach_*`` put the same subscribers on any broker,
so ``lintas up`` and the demo can run every agency on one connection; ``agency_broker`` and
``record_broker`` do both as a process's :class:`~lintas.infra.bootstrap.Parts` say.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import nats.errors
import structlog
from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from faststream.nats.annotations import JsClient
from faststream.nats.security import NatsNKey, NatsSecurity
from nats.aio.client import Client
from opentelemetry.trace import TracerProvider
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url

from lintas.consumers._gaps import StreamGapReader
from lintas.consumers.projections import Projection, RecordProjection, WorklistProjection
from lintas.consumers.quarantine import QuarantineEntry, put
from lintas.consumers.rebuild import build_of, catch_up, prepare
from lintas.consumers.runner import BatchServices, OnCommit, ProjectionRunner
from lintas.infra.bootstrap import Parts
from lintas.infra.db import Release, create_db_engine, hold_tables
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import Registry, Verifier, load_registry
from lintas.infra.nats.bus import log_nats_error, servers
from lintas.infra.nats.credentials import connect_options, js_options
from lintas.infra.nats.headers import read_headers_fast
from lintas.infra.nats.outage import Outage
from lintas.infra.nats.topology import (
    ConsumerSpec,
    agency_consumer,
    agency_sent_consumer,
    consumer_config,
    record_consumer,
)
from lintas.infra.reads import ServiceReads, jetstream_api
from lintas.infra.settings import Settings

__all__ = [
    "BatchHandler",
    "Databases",
    "agency_broker",
    "app_of",
    "attach_agency",
    "attach_batches",
    "attach_record",
    "attach_runner",
    "catch_up_broker",
    "create_agency_app",
    "create_broker",
    "create_record_app",
    "record_broker",
    "runners_of",
]

_log = structlog.get_logger("lintas.rebuild")


class Databases:
    """One engine per database URL, and one write lock per SQLite file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, tuple[Engine, asyncio.Lock | None]] = {}
        self._held: dict[tuple[str, str], Release] = {}

    def for_consumer(self, name: str) -> tuple[Engine, asyncio.Lock | None]:
        url = self.settings.database_url_for(name)
        if url not in self._engines:
            is_sqlite = make_url(url).get_backend_name() == "sqlite"
            self._engines[url] = (create_db_engine(url), asyncio.Lock() if is_sqlite else None)
        return self._engines[url]

    def hold(self, database: str, projection: str) -> None:
        """Hold ``projection``'s tables in ``database`` shared (:func:`hold_tables`) until
        :meth:`dispose`: no rebuild drops them under this process's writers meanwhile.
        :class:`~lintas.infra.db.TablesBusy` while one runs."""
        url = self.settings.database_url_for(database)
        if (url, projection) not in self._held:
            engine, _ = self.for_consumer(database)
            self._held[(url, projection)] = hold_tables(engine, projection, exclusive=False)

    def dispose(self) -> None:
        for release in self._held.values():
            release()
        self._held.clear()
        for engine, _ in self._engines.values():
            engine.dispose()
        self._engines.clear()


async def _raw_body(_msg: Any) -> None:
    """Skip FastStream's decoding: the runner decodes, and rejects bad bodies itself."""
    return None


# The first connection of a long-running process's broker: as many tries as
# lintas.infra.nats.bus.connect makes, a few seconds in all.
_FIRST_CONNECT_ATTEMPTS = 3


class _ReconnectingBroker(NatsBroker):
    """A long-running process's broker: its first connection fails within seconds, as
    every connection :func:`lintas.infra.nats.bus.connect` makes does; once connected, it
    reconnects for ever.

    nats-py applies ``max_reconnect_attempts=-1`` to the first connection too: a process
    whose bus went away after it declared its consumers but before its broker connected
    (the moment it starts them) tried again for ever, and in silence: not disconnected, its
    :class:`Outage` never counted the time, and no log line said why it did nothing.
    """

    bus_url = ""

    async def connect(self) -> Client:
        try:
            nc = await super().connect()
        except nats.errors.NoServersError:  # every try refused or timed out
            raise BusUnavailable(f"cannot reach NATS at {self.bus_url} (NoServersError)") from None
        # nats-py reads the option afresh on every reconnect.
        nc.options["max_reconnect_attempts"] = -1
        return nc


def create_broker(
    url: str,
    settings: Settings | None = None,
    identity: str | None = None,
    *,
    outage: Outage | None = None,
) -> NatsBroker:
    """A broker connected as ``identity`` (its nkey, inbox prefix, JetStream API prefix,
    TLS) when ``settings`` say how; else as an anonymous client of an open bus.

    ``outage``: a long-running process's; the broker then reconnects forever once it has
    connected (its first connection fails within seconds, with :class:`BusUnavailable`),
    and the outage follows its connection (nats-py's default gives up after about two
    minutes, leaving a process that runs and does nothing)."""
    # FastStream logs every batch, and its task supervisor every callback, at INFO;
    # lintas logs what matters itself, through structlog.
    logger = logging.getLogger("lintas.faststream")
    logger.setLevel(logging.WARNING)
    options = connect_options(settings, identity) if settings is not None else {}
    tls = options.get("tls")
    seed = options.get("nkeys_seed")
    security = (
        NatsNKey(seed, ssl_context=tls)
        if seed
        else (NatsSecurity(ssl_context=tls) if tls is not None else None)
    )
    extra: dict[str, Any] = {}
    if "inbox_prefix" in options:
        extra["inbox_prefix"] = options["inbox_prefix"]
    kind = NatsBroker
    if outage is not None:
        extra |= outage.follow(f"lintas-{identity or 'anonymous'}")
        extra |= {"max_reconnect_attempts": _FIRST_CONNECT_ATTEMPTS, "reconnect_time_wait": 1}
        kind = _ReconnectingBroker
    broker = kind(
        servers(url),
        logger=logger,
        log_level=logging.DEBUG,
        security=security,
        js_options=js_options(identity),
        error_cb=log_nats_error(identity or "anonymous"),
        name=f"lintas-{identity}" if identity else "lintas",
        **extra,
    )
    if isinstance(broker, _ReconnectingBroker):
        broker.bus_url = url
    if "inbox_prefix" in options:
        _INBOXES[broker] = f"{options['inbox_prefix']}.".encode()
    if identity is not None:
        _IDENTITIES[broker] = identity
    return broker


# FastStream gives each pull subscriber its own inbox prefix (default "_INBOX."), not the
# connection's: a subscriber of a broker connected as an identity must use that identity's,
# the only one its permissions let it subscribe to.
_INBOXES: weakref.WeakKeyDictionary[NatsBroker, bytes] = weakref.WeakKeyDictionary()
# Who a broker connects as, and the runners on it with their consumers and whose read
# service fills their gaps: what catch_up_broker needs before the broker starts, and what
# its process's metrics report on.
_IDENTITIES: weakref.WeakKeyDictionary[NatsBroker, str] = weakref.WeakKeyDictionary()
_RUNNERS: weakref.WeakKeyDictionary[
    NatsBroker, list[tuple[ProjectionRunner, ConsumerSpec, str | None]]
] = weakref.WeakKeyDictionary()


def runners_of(broker: NatsBroker) -> list[ProjectionRunner]:
    """The projection runners attached to ``broker`` (:func:`attach_runner`), in order."""
    return [runner for runner, _, _ in _RUNNERS.get(broker, ())]


# A pulled batch of nats-py messages, and the JetStream context of the subscriber's broker.
BatchHandler = Callable[[list[Any], Any], Awaitable[None]]


def attach_batches(
    broker: NatsBroker,
    spec: ConsumerSpec,
    settings: Settings,
    handler: BatchHandler,
    *,
    in_schema: bool = True,
) -> None:
    """Bind ``handler`` to the declared durable ``spec``: pulled batches of nats-py messages,
    acknowledged by the handler itself (FastStream's own policy would terminate failures)."""
    subscriber = broker.subscriber(
        config=consumer_config(spec, settings),
        stream=JStream(settings.stream, declare=False),
        durable=spec.name,
        pull_sub=PullSub(
            batch_size=settings.batch_size, timeout=settings.fetch_timeout_s, batch=True
        ),
        ack_policy=AckPolicy.MANUAL,
        decoder=_raw_body,
        title=spec.name,
        description=spec.description,
        include_in_schema=in_schema,
        inbox_prefix=_INBOXES.get(broker, b"_INBOX."),
    )

    async def handle(message: NatsMessage, js: JsClient) -> None:
        # The broker's client, which FastStream connects, reads the next batches' headers
        # fast (infra.headers): a no-op once it does.
        api = jetstream_api(js)
        if api is not None:
            read_headers_fast(api[0])
        # A batch subscriber's raw message is the pulled list of nats-py messages.
        msgs = cast("list[Any]", message.raw_message)
        if msgs:
            await handler(msgs, js)

    subscriber(handle)


def attach_runner(
    broker: NatsBroker,
    runner: ProjectionRunner,
    spec: ConsumerSpec,
    settings: Settings,
    *,
    reads_as: str | None = None,
) -> None:
    """``reads_as``: the agency whose read service requests close gaps (a secured bus);
    None reads the stream directly."""

    async def handle(msgs: list[Any], js: Any) -> None:
        async def quarantine(entry: QuarantineEntry) -> int:
            return await put(js, settings, entry)

        # The JetStream context FastStream hands over keeps its core client as ``_nc``
        # (nats-py 2.x): the read service is asked over core request/reply.
        reads = ServiceReads(js._nc, reads_as) if reads_as else None
        gaps = StreamGapReader(js, settings.stream, spec.filter_subjects, reads)
        await runner.handle(msgs, BatchServices(gaps=gaps, quarantine=quarantine))

    attach_batches(broker, spec, settings, handle)
    _RUNNERS.setdefault(broker, []).append((runner, spec, reads_as))


async def catch_up_broker(parts: Parts, broker: NatsBroker) -> None:
    """Before ``broker`` starts: bring each of its projections up to what its durable has
    delivered, reading the stream as the broker's identity (through the read service for
    an agency that may not read it). After a rebuild (a projection found stale when it was
    attached, or one another process of a shared database rebuilt) that is the whole log
    from sequence 1, logged as it goes; otherwise, usually nothing."""
    attached = _RUNNERS.get(broker, [])
    if not attached:
        return
    identity = _IDENTITIES.get(broker, "platform")
    nc = await parts.connect(identity, name=f"lintas-catch-up-{identity}")
    try:
        js = parts.jetstream(nc, identity)
        for runner, spec, reads_as in attached:
            reads = ServiceReads(nc, reads_as) if reads_as else None
            await catch_up(
                runner, js, spec, parts.settings, reads=reads, progress=_logged(spec.name)
            )
    finally:
        await nc.close()


def _logged(consumer: str) -> Callable[[int, int], None]:
    """A progress callback that logs each tenth of the way (a rebuild can take a while)."""
    told = [0]

    def progress(position: int, through: int) -> None:
        tenth = position * 10 // max(through, 1)
        if tenth > told[0]:
            told[0] = tenth
            _log.info(
                "projection.catch_up_progress",
                consumer=consumer,
                position=position,
                through=through,
                percent=tenth * 10,
            )

    return progress


def _runner(
    databases: Databases,
    settings: Settings,
    spec: ConsumerSpec,
    database: str,
    projection: Projection,
    on_commit: Sequence[OnCommit],
    lock: asyncio.Lock | None = None,
    verifier: Verifier | None = None,
    agency: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ProjectionRunner:
    engine, sqlite_lock = databases.for_consumer(database)
    lock = sqlite_lock or lock
    databases.hold(database, projection.name)  # before anything is read or made
    # Tables older code made are dropped here, and the consumer catches up from sequence 1
    # (catch_up_broker) before it takes a delivery.
    prepare(engine, projection, settings.stream, [spec.name])
    return ProjectionRunner(
        consumer=spec.name,
        stream=settings.stream,
        projection=projection,
        engine=engine,
        lock=lock,
        on_commit=on_commit,
        max_deliver=settings.max_deliver,
        verifier=verifier,
        agency=agency,
        tracer_provider=tracer_provider,
        build=build_of(engine, spec.name, settings.stream),
    )


def attach_agency(
    broker: NatsBroker,
    databases: Databases,
    settings: Settings,
    agency: str,
    *,
    on_commit: Sequence[OnCommit] = (),
    verifier: Verifier | None = None,
    tracer_provider: TracerProvider | None = None,
    via_read_service: bool = False,
) -> list[ProjectionRunner]:
    """The agency's worklist, fed by what is addressed to it and by its own answers.

    With a ``verifier``, an event not signed by its source agency is quarantined. Process
    spans go to ``tracer_provider`` (default: the global one). With ``via_read_service``
    (a secured bus, where the agency may not read the stream), gaps after a crash are read
    through the platform's read service."""
    projection = WorklistProjection(agency)
    # Both consumers write the same rows: one at a time, or two inserts of one item race.
    lock = asyncio.Lock()
    runners = []
    for spec in (agency_consumer(agency), agency_sent_consumer(agency)):
        runner = _runner(
            databases,
            settings,
            spec,
            f"worklist-{agency}",
            projection,
            on_commit,
            lock,
            verifier,
            agency,
            tracer_provider,
        )
        attach_runner(broker, runner, spec, settings, reads_as=agency if via_read_service else None)
        runners.append(runner)
    return runners


def attach_record(
    broker: NatsBroker,
    databases: Databases,
    settings: Settings,
    *,
    on_commit: Sequence[OnCommit] = (),
    verifier: Verifier | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ProjectionRunner:
    """The coordination record: every event of every case (signed ones, with a verifier)."""
    spec = record_consumer()
    runner = _runner(
        databases,
        settings,
        spec,
        "record",
        RecordProjection(),
        on_commit,
        verifier=verifier,
        tracer_provider=tracer_provider,
    )
    attach_runner(broker, runner, spec, settings)
    return runner


def agency_broker(
    parts: Parts,
    databases: Databases,
    agency: str,
    verifier: Verifier,
    *,
    on_commit: Sequence[OnCommit] = (),
    outage: Outage | None = None,
) -> NatsBroker:
    """A broker connected as ``agency`` with its worklist attached (:func:`attach_agency`):
    spans to ``parts.tracer_provider``, gaps read through the read service where the bus
    does not let the agency read the stream."""
    broker = create_broker(parts.url, parts.settings, agency, outage=outage)
    attach_agency(
        broker,
        databases,
        parts.settings,
        agency,
        on_commit=on_commit,
        verifier=verifier,
        tracer_provider=parts.tracer_provider,
        via_read_service=parts.secured(agency),
    )
    return broker


def record_broker(
    parts: Parts,
    databases: Databases,
    verifier: Verifier,
    *,
    on_commit: Sequence[OnCommit] = (),
    outage: Outage | None = None,
) -> NatsBroker:
    """A broker connected as the platform with the coordination record attached
    (:func:`attach_record`), spans to ``parts.tracer_provider``."""
    broker = create_broker(parts.url, parts.settings, "platform", outage=outage)
    attach_record(
        broker,
        databases,
        parts.settings,
        on_commit=on_commit,
        verifier=verifier,
        tracer_provider=parts.tracer_provider,
    )
    return broker


def app_of(broker: NatsBroker, databases: Databases, parts: Parts) -> FastStream:
    """A FastStream app of ``broker`` that, after shutdown, disposes of ``databases`` and
    writes the last spans of a tracer provider ``parts`` built."""
    # FastStream's own app logger writes to stdout past any configuration; this one goes
    # through the process's logging (structlog's format, the personal-data filter).
    app = FastStream(broker, logger=logging.getLogger("lintas.app"))

    async def caught_up() -> None:
        await catch_up_broker(parts, broker)

    app.on_startup(caught_up)
    app.after_shutdown(databases.dispose)
    app.after_shutdown(parts.close)
    return app


def create_agency_app(
    parts: Parts, agency: str, registry: Registry | None = None, *, outage: Outage | None = None
) -> FastStream:
    """One agency's consumer app, connected as the agency; it trusts ``registry`` (default:
    the registry files), refreshed from the bus as ``agency``. ``outage``: the process's
    (:func:`create_broker`)."""
    databases = Databases(parts.settings)
    verifier = parts.trust(registry or load_registry(parts.settings), agency)
    broker = agency_broker(parts, databases, agency, verifier, outage=outage)
    return app_of(broker, databases, parts)


def create_record_app(
    parts: Parts, registry: Registry | None = None, *, outage: Outage | None = None
) -> FastStream:
    """The record projector's app, connected as the platform; it trusts ``registry``
    (default: the registry files), refreshed from the bus as the platform. ``outage``: the
    process's (:func:`create_broker`)."""
    databases = Databases(parts.settings)
    verifier = parts.trust(registry or load_registry(parts.settings))
    return app_of(record_broker(parts, databases, verifier, outage=outage), databases, parts)
