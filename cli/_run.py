"""``lintas demo | up | run``: the demo, the whole platform, or one part of it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import nats.errors
from faststream import FastStream
from faststream.nats import NatsBroker
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lintas.audit.checkpointer import start_checkpointer
from lintas.cli._errors import fail
from lintas.cli._signals import Stop, stop_on_signals
from lintas.cli.render import case_view, summary_tables
from lintas.consumers.app import (
    Databases,
    agency_broker,
    catch_up_broker,
    create_agency_app,
    create_record_app,
    record_broker,
)
from lintas.consumers.metrics import consumer_probes
from lintas.consumers.watchdog import attach_watchdog, create_watchdog_app, start_ticker
from lintas.contracts import WATCHDOG, LintasError, is_agency_id
from lintas.infra.bootstrap import Parts
from lintas.infra.errors import BusUnavailable
from lintas.infra.keys.signing import (
    Registry,
    Signer,
    ensure_sealer_key,
    ensure_signing_key,
    register_keys,
    trusted_registry,
)
from lintas.infra.nats.bus import open_bus, platform_services, read_service
from lintas.infra.nats.outage import EXIT_BUS_LOST, Outage, run_to_end
from lintas.infra.nats.topology import (
    ConsumerSpec,
    agency_consumer,
    agency_sent_consumer,
    check_consumer,
    declare_platform,
    deployment_consumers,
    record_consumer,
    watchdog_consumer,
)
from lintas.infra.observability.metrics import (
    MetricsServer,
    Probes,
    connected,
    metrics_endpoint,
    streams_present,
)
from lintas.infra.reads import ReadService
from lintas.infra.settings import Settings


async def _until_stopped_or_lost(stop: Stop, outage: Outage) -> int:
    """0 once SIGINT or SIGTERM arrives; :data:`EXIT_BUS_LOST` once the bus has been away
    for too long (the process then stops cleanly, and its supervisor starts it again)."""
    stopped = asyncio.ensure_future(stop.wait())
    lost = asyncio.ensure_future(outage.lost())
    try:
        await asyncio.wait([stopped, lost], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        lost.cancel()
    outage.stopping()
    if stop.is_set() or not lost.done() or lost.cancelled():
        return 0
    fail(f"[red]{lost.result()}: stopping, for a supervisor to start this process again[/red]")
    return EXIT_BUS_LOST


# With the bus away, a broker cannot drain: nats-py refuses while it reconnects, or its
# subscribers' last requests time out. Nor can it start.
_UNDRAINABLE = (nats.errors.Error, TimeoutError, OSError)


async def _started(app: FastStream, stop: Stop) -> bool:
    """Start ``app``: True once it runs, False if SIGINT or SIGTERM came first (its start
    is abandoned). The bus going away while it starts raises :class:`BusUnavailable`."""
    starting = asyncio.ensure_future(app.start())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([starting, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, BusUnavailable, *_UNDRAINABLE):
                await starting
    if stop.is_set():
        if starting.done() and not starting.cancelled():
            starting.exception()  # retrieved: a start the signal made moot failing says nothing
        return False
    try:
        starting.result()
    except _UNDRAINABLE as exc:  # its subscribers asked a bus that had just gone
        raise BusUnavailable(f"the bus went away while starting ({type(exc).__name__})") from None
    return True


async def _serve(
    app: FastStream, stop: Stop, outage: Outage, parts: Parts, ready: Callable[[], None]
) -> int:
    """Run ``app`` until a signal or the bus is lost; stopped cleanly either way, also if
    the signal comes while it starts. ``ready`` says it runs, once its consumers do: said
    before they started, it would be untrue whenever the bus went away meanwhile."""
    try:
        if not await _started(app, stop):
            return 0
        ready()
        return await _until_stopped_or_lost(stop, outage)
    finally:
        outage.stopping()
        await _stop(app, parts)


async def _close(broker: NatsBroker) -> None:
    """Close a broker's connection that cannot drain, with nothing in flight to lose: what
    was not acknowledged is delivered again."""
    # FastStream keeps the client there, and offers no close without a drain.
    nc = getattr(broker, "_connection", None)
    if nc is not None:
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.close()


async def _stop_broker(broker: NatsBroker) -> None:
    try:
        await broker.stop()
    except _UNDRAINABLE:
        await _close(broker)


async def _stop(app: FastStream, parts: Parts) -> None:
    """Stop ``app``; with the bus away, its connections closed instead, and the spans
    still written."""
    try:
        await app.stop()
    except _UNDRAINABLE:
        for broker in app.brokers:
            await _close(broker)  # type: ignore[arg-type]
        await parts.close()


async def _declare(
    parts: Parts, specs: Sequence[ConsumerSpec], identity: str = "platform"
) -> Registry:
    """Declare what the consumers need, as the platform (or ``identity``, on an open bus);
    return the public keys they are to trust."""
    nc = await parts.connect(identity, name="lintas-declare")
    try:
        js = parts.jetstream(nc, identity)
        await declare_platform(js, parts.settings, specs)
        # The platform keeps the registry in the bus from its first start: the trust anchor
        # an auditor exports (`lintas keys export`) and keeps.
        await register_keys(parts.settings, js)
        return await trusted_registry(parts.settings, js)
    finally:
        await nc.close()


async def _bind(parts: Parts, agency: str, specs: Sequence[ConsumerSpec]) -> Registry:
    """As ``agency``, which may not declare anything: check its consumers exist as they
    should; return the public keys to trust."""
    nc = await parts.connect(agency)
    try:
        js = parts.jetstream(nc, agency)
        for spec in specs:
            await check_consumer(js, parts.settings.stream, spec, parts.settings)
        return await trusted_registry(parts.settings, js)
    finally:
        await nc.close()


def _announce(console: Console, server: MetricsServer | None) -> None:
    if server is not None:
        console.print(
            f"metrics on {server.url}/metrics (probes /healthz, /readyz)", highlight=False
        )


def _with_reads(
    build: Callable[[Any], Probes], reads: ReadService | None
) -> Callable[[Any], Probes]:
    """``build``'s probes, and the read service's connection when this process runs it."""

    def probes(js: Any) -> Probes:
        found = build(js)
        if reads is not None:
            found.checks.append(connected("read service", reads))
        return found

    return probes


def _serve_metrics(
    app: FastStream,
    parts: Parts,
    identity: str,
    console: Console,
    *,
    worklists: Sequence[str] = (),
    watchdog: bool = False,
    reads: ReadService | None = None,
) -> None:
    """Serve the app's metrics and probes (``LINTAS_METRICS_PORT``) while it runs, asking
    the bus as ``identity``."""
    databases = Databases(parts.settings)  # its own engines: reads only
    brokers = [cast("NatsBroker", broker) for broker in app.brokers]
    probes = _with_reads(
        consumer_probes(parts.settings, brokers, databases, worklists=worklists, watchdog=watchdog),
        reads,
    )

    running = contextlib.AsyncExitStack()

    async def start() -> None:
        running.callback(databases.dispose)
        _announce(
            console, await running.enter_async_context(metrics_endpoint(parts, identity, probes))
        )

    app.after_startup(start)
    app.on_shutdown(running.aclose)


async def _demo(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from lintas.demo import PATHWAYS, DemoTimeout, check_record, run_demo

    if args.cases < 1:
        fail("[red]--cases must be at least 1[/red]")
        return 2
    with Progress(
        TextColumn("[bold]cases closed"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("· {task.fields[events]} events recorded"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("demo", total=args.cases, events=0)

        def update(closed: int, wanted: int, events: int) -> None:
            progress.update(task, completed=closed, total=wanted, events=events)

        try:
            result = await run_demo(
                settings, args.cases, progress=update, timeout_s=args.timeout, seed=args.seed
            )
        except DemoTimeout as exc:
            fail(f"[red]demo did not finish: {exc}[/red]")
            return 1
    titles = {p.situation: p.title for p in PATHWAYS}
    richest = max(result.records, key=lambda r: len(r.timeline))
    console.print(case_view(richest))
    console.print(summary_tables(result.records, titles))
    problems = [p for record in result.records for p in check_record(record)]
    for problem in problems:
        fail(f"[red]{problem}[/red]")
    if result.gate_refusal:
        console.print(
            f"consent gate: a referral no consent covers was refused: {result.gate_refusal}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        problems.append("the consent gate did not refuse a referral no consent covers")
        fail(f"[red]{problems[-1]}[/red]")
    overdue = [d for d in result.deadlines if d.overdue_seq is not None]
    escalated = [d for d in result.deadlines if d.escalated_seq is not None]
    console.print(
        f"watchdog: {len(result.deadlines)} hand-offs with deadlines followed, "
        f"{sum(d.status == 'open' for d in result.deadlines)} still open, "
        f"{len(overdue)} overdue, {len(escalated)} escalated to KPAI",
        highlight=False,
    )
    for item in overdue:
        console.print(
            f"  overdue: {item.handoff} {item.request_id} of {item.case_id}, asked of "
            f"{item.asked}, due {item.due:%Y-%m-%d %H:%M} UTC",
            highlight=False,
        )
    verdict = (
        "[red]records differ from their pathways[/red]"
        if problems
        else (f"[green]all {len(result.records)} coordination records match their pathways[/green]")
    )
    console.print(
        f"{verdict}  ·  {result.events} events in {result.elapsed_s:.1f} s  ·  bus {result.url}\n"
        f"look again with: lintas case show {richest.case_id}"
    )
    return 1 if problems or len(result.records) != args.cases else 0


def _watchdog_key(settings: Settings, console: Console) -> Signer:
    """The watchdog's signing key, made here on first use: ``lintas up`` is one data dir,
    whose registry every consumer it runs trusts."""
    signer, made = ensure_signing_key(settings, WATCHDOG)
    if made is not None:
        console.print(
            f"made the watchdog's signing key {made.keyid} (`lintas keys publish` shares it "
            "with consumers running elsewhere)",
            highlight=False,
        )
    return signer


def _sealer_key(settings: Settings, console: Console) -> Signer:
    """The sealer's key (checkpoints, archive manifests), made here on first use and put
    into the bus's registry with the others when the platform declares."""
    signer, made = ensure_sealer_key(settings)
    if made is not None:
        console.print(
            f"made the sealer's signing key {made.keyid} (checkpoints and archive manifests; "
            "`lintas keys export` writes the registry to publish)",
            highlight=False,
        )
    return signer


async def _up(settings: Settings, console: Console) -> int:
    """The platform (declarations, record, read service) and every agency's consumers, each
    connected as itself.

    A signal while it starts (the bus, declarations, consumers catching up, brokers
    connecting) abandons the start, stops what had started, and ends with 0, as ``lintas
    run`` does: a start that then fails (the bus away, say) says nothing more. Once up, it
    ends on the signal by itself."""
    with stop_on_signals() as stop:
        up = asyncio.Event()
        running = asyncio.ensure_future(_up_until(settings, console, stop, up))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([running, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not running.done() and not up.is_set():
            running.cancel()  # its async with blocks stop what had started
        try:
            return await running
        except (asyncio.CancelledError, LintasError, *_UNDRAINABLE):
            if stop.is_set() and not up.is_set():
                return 0
            raise


async def _up_until(settings: Settings, console: Console, stop: Stop, up: asyncio.Event) -> int:
    outage = Outage(settings.bus_lost_exit_s)
    async with open_bus(settings) as url:
        parts = Parts(settings, url, service="lintas-up")
        _watchdog_key(settings, console)
        sealer = _sealer_key(settings, console)
        registry = await _declare(parts, deployment_consumers(settings.agencies))
        databases = Databases(settings)
        verifier = parts.trust(registry)
        record = record_broker(parts, databases, verifier, outage=outage)
        # The watchdog reads every event, as the platform does; it publishes as itself.
        attach_watchdog(
            record, databases, settings, verifier=verifier, tracer_provider=parts.tracer_provider
        )
        brokers = [record]
        for agency in settings.agencies:
            brokers.append(agency_broker(parts, databases, agency, verifier, outage=outage))
        # The embedded bus runs the read service and admission already; a configured
        # cluster gets them here. Whatever started is stopped, in reverse, even if stopping
        # something else fails.
        async with (
            platform_services(settings, url, run=bool(settings.nats_url)) as reads,
            contextlib.AsyncExitStack() as running,
        ):
            running.push_async_callback(parts.close)
            running.callback(databases.dispose)
            for broker in brokers:
                await catch_up_broker(parts, broker)  # a rebuilt projection: from sequence 1
                await broker.start()
                running.push_async_callback(_stop_broker, broker)
            ticker = await start_ticker(parts, databases, verifier=verifier)
            running.push_async_callback(ticker.stop)
            probes = consumer_probes(
                settings, brokers, databases, worklists=settings.agencies, watchdog=True
            )
            metrics = await running.enter_async_context(
                metrics_endpoint(parts, "platform", _with_reads(probes, reads))
            )
            checkpointing = ""
            if settings.checkpoint_interval_s:
                # Checkpoints are the sealer's alone: no agency's key, not even the watchdog's.
                running.push_async_callback((await start_checkpointer(parts, sealer)).stop)
                checkpointing = f", checkpoints every {settings.checkpoint_interval_s:g} s"
            console.print(
                f"lintas is up on {url}: record + watchdog + {len(settings.agencies)} agencies "
                f"({', '.join(settings.agencies)}){checkpointing}. Ctrl-C stops.",
                soft_wrap=True,
            )
            _announce(console, metrics)
            up.set()
            return await _until_stopped_or_lost(stop, outage)


async def _run_reads(settings: Settings, console: Console) -> int:
    # Reconnects forever, and exits EXIT_BUS_LOST once the bus stays away too long, as
    # lintas run AGENCY does: a supervisor restarts a process that serves nothing.
    outage = Outage(settings.bus_lost_exit_s)
    with stop_on_signals() as stop:
        async with (
            open_bus(settings) as url,
            read_service(settings, url, run=bool(settings.nats_url), outage=outage) as service,
        ):
            parts = Parts(settings, url, service="lintas-reads")

            def probes(js: Any) -> Probes:
                found = Probes(checks=[streams_present(js, [settings.stream])])
                if service is not None:
                    found.checks.append(connected("read service", service))
                return found

            async with metrics_endpoint(parts, "platform", probes) as metrics:
                console.print(f"read service up on {url} (lintas_read.<agency>.*). Ctrl-C stops.")
                _announce(console, metrics)
                return await _until_stopped_or_lost(stop, outage)


async def _run_admission(settings: Settings, console: Console) -> int:
    from lintas.admission.metrics import admission_probes
    from lintas.admission.running import admission_service

    outage = Outage(settings.bus_lost_exit_s)  # as lintas run reads
    with stop_on_signals() as stop:
        async with (
            open_bus(settings) as url,
            admission_service(settings, url, run=bool(settings.nats_url), outage=outage) as service,
        ):
            parts = Parts(settings, url, service="lintas-admission")
            console.print(
                f"admission up on {url} (the intake: lintas_intake.<agency>.<case>). Ctrl-C stops."
            )
            if service is None:  # the embedded bus runs it already, in this process too
                await stop.wait()
                return 0
            probes = admission_probes(service, service.nc, settings)
            async with metrics_endpoint(parts, "admission", probes) as metrics:
                _announce(console, metrics)
                return await _until_stopped_or_lost(stop, outage)


async def _run_platform(settings: Settings, console: Console, stop: Stop) -> int:
    """What a deployment's platform host runs: the stream and every agency's consumers
    declared, the coordination record, the read service, and admission when this host holds
    admission's own seed (or the bus asks for none). Admission runs as its own identity: a
    platform host without its seed leaves it to ``lintas run admission`` on another (the
    compose file's way). No agency's consumers."""
    from lintas.admission.running import admission_service

    outage = Outage(settings.bus_lost_exit_s)
    async with open_bus(settings) as url:
        parts = Parts(settings, url, service="lintas-record")
        registry = await _declare(parts, deployment_consumers(settings.agencies))
        app = create_record_app(parts, registry, outage=outage)
        # The embedded bus runs both already (open_bus).
        admits = bool(settings.nats_url) and (
            parts.secured("admission") or not parts.secured("platform")
        )
        async with (
            read_service(settings, url, run=bool(settings.nats_url)) as service,
            admission_service(settings, url, run=admits),
        ):
            _serve_metrics(app, parts, "platform", console, reads=service)
            where = (
                "admission running"
                if admits or not settings.nats_url
                else "admission: `lintas run admission` where its seed is"
            )

            def ready() -> None:
                console.print(
                    f"platform up on {url}: consumers of {len(settings.agencies)} agencies "
                    f"declared, record, read service and {where}",
                    highlight=False,
                )

            return await _serve(app, stop, outage, parts, ready)


async def _run(settings: Settings, agency: str, console: Console) -> int:
    if agency == "reads":
        return await _run_reads(settings, console)
    if agency == "admission":
        return await _run_admission(settings, console)
    # The handlers first: a SIGTERM while it starts, or while the bus is away, ends it cleanly.
    with stop_on_signals() as stop:
        if agency == "platform":
            return await _run_platform(settings, console, stop)
        return await _run_part(settings, agency, console, stop)


async def _run_part(settings: Settings, agency: str, console: Console, stop: Stop) -> int:
    if agency != "record" and not is_agency_id(agency):
        fail(f"[red]{agency!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)[/red]")
        return 2
    # The watchdog signs what it publishes: no key, no start (before touching the bus).
    if agency == WATCHDOG:
        Signer.load(settings, WATCHDOG)
    platform_part = agency in ("record", WATCHDOG)
    outage = Outage(settings.bus_lost_exit_s)
    async with open_bus(settings, agencies=[] if platform_part else [agency]) as url:
        parts = Parts(settings, url, service=f"lintas-{agency}")
        if agency == "record":
            registry = await _declare(parts, [record_consumer()])
            app = create_record_app(parts, registry, outage=outage)
            _serve_metrics(app, parts, "platform", console)
        elif agency == WATCHDOG:
            registry = await _declare(parts, [watchdog_consumer()])
            app = create_watchdog_app(parts, registry, outage=outage)
            _serve_metrics(app, parts, "platform", console, watchdog=True)
        else:
            specs = [agency_consumer(agency), agency_sent_consumer(agency)]
            # An agency's own host holds its seed, not the platform's: it may bind to its
            # consumers, not declare them. Here (or on an open bus) the platform declares.
            if parts.secured("platform"):
                registry = await _declare(parts, specs)
            elif parts.secured(agency):
                registry = await _bind(parts, agency, specs)
            else:  # no credentials at all: an open bus, where anyone may declare
                registry = await _declare(parts, specs, identity=agency)
            app = create_agency_app(parts, agency, registry, outage=outage)
            _serve_metrics(app, parts, agency, console, worklists=[agency])

        def ready() -> None:
            console.print(f"lintas runs {agency}'s consumers on {url}. Ctrl-C stops.")

        return await _serve(app, stop, outage, parts, ready)


def run_command(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    if args.command == "demo":
        return run_to_end(_demo(settings, args, console))
    if args.command == "up":
        return run_to_end(_up(settings, console))
    return run_to_end(_run(settings, args.agency, console))
