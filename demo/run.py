"""The demo: the embedded bus, every agency's consumers, simulated staff, N cases.

Runs until every case it opened is closed in the coordination record (or the timeout),
then returns the records, read back from the record projection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from opentelemetry.trace import NoOpTracerProvider, TracerProvider
from sqlmodel import Session

from lintas.consumers import CaseRecord
from lintas.consumers.app import Databases, agency_broker, record_broker
from lintas.consumers.deadlines import Deadline
from lintas.consumers.projections import Batch, load_record
from lintas.consumers.watchdog import attach_watchdog, load_deadlines, start_ticker
from lintas.contracts import WATCHDOG, ConsentMissing, PermanentError, TransientError
from lintas.demo.desk import attach_desk
from lintas.demo.intake import open_case, pathway_for
from lintas.demo.pathways import agencies
from lintas.infra.bootstrap import Parts
from lintas.infra.keys.exchange import ensure_exchange_key
from lintas.infra.keys.signing import (
    ensure_agency_key,
    ensure_sealer_key,
    load_registry,
    register_keys,
)
from lintas.infra.nats.bus import embedded_url, open_bus
from lintas.infra.nats.topology import (
    ConsumerSpec,
    declare_platform,
    deployment_consumers,
    staff_consumer,
)
from lintas.infra.observability.tracing import tracer_for
from lintas.infra.settings import Settings
from lintas.producers import Publisher, publisher_for

__all__ = ["DemoRefused", "DemoResult", "DemoTimeout", "demo_consumers", "run_demo"]

Progress = Callable[[int, int, int], None]  # cases closed, cases wanted, events recorded


class DemoTimeout(TransientError):
    """The demo's cases did not all close in time."""


class DemoRefused(PermanentError):
    """The demo would share its bus with something real."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    records: list[CaseRecord]
    events: int
    elapsed_s: float
    url: str
    deadlines: list[Deadline]  # the hand-offs the watchdog followed in the demo's cases
    gate_refusal: str | None = None
    """What the consent gate said to a referral no consent covers (the demo tries one)."""


async def _drained(js: Any, settings: Settings, deadline: float) -> None:
    """Wait until every demo consumer has nothing pending: the worklists lag the record."""
    names = [spec.name for spec in demo_consumers()]
    while True:
        infos = [await js.consumer_info(settings.stream, name) for name in names]
        behind = [i.name for i in infos if i.num_pending or i.num_ack_pending]
        if not behind:
            return
        if time.perf_counter() > deadline:
            raise DemoTimeout(f"consumers still behind at the timeout: {', '.join(behind)}")
        await asyncio.sleep(0.02)  # the server has no "drained" notification to await


async def _try_without_consent(probe: Publisher, opened: list[tuple[int, str]]) -> str | None:
    """Refer one case to an agency its consent does not cover: the gate refuses it."""
    for index, case_id in opened:
        pathway = pathway_for(index)
        outsider = next(
            (a for a in agencies() if a not in (*pathway.shared_with, pathway.opener)), None
        )
        if outsider is None or pathway.override is not None:
            continue
        try:
            await probe.publish(
                "referral.requested",
                {"referral_id": "demo-gate", "service": "shelter"},
                case_id=case_id,
                target=outsider,
            )
        except ConsentMissing as refused:
            return str(refused)
        return None  # published: the gate let it through, which the CLI reports
    return None


async def _dismiss_staff(js: Any, settings: Settings) -> None:
    """Delete the simulated staff's durable consumers: `lintas status` on the demo's data
    dir then lists only the platform's and agencies' own, and no stranger holds messages
    pending for staff who have left. The next demo declares them afresh."""
    for agency in agencies():
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(settings.stream, staff_consumer(agency).name)


def demo_consumers() -> list[ConsumerSpec]:
    return deployment_consumers(agencies()) + [staff_consumer(a) for a in agencies()]


async def run_demo(
    settings: Settings,
    cases: int,
    *,
    progress: Progress | None = None,
    timeout_s: float = 120.0,
    seed: int = 7,
    tracer_provider: TracerProvider | None = None,
) -> DemoResult:
    """Run ``cases`` demo cases. Spans go to ``tracer_provider``; without one the demo
    builds its own from the settings (the span file, or the OTLP collector) and flushes it
    before returning."""
    if cases < 1:
        raise ValueError("the demo needs at least one case")
    # Invented cases must never land in a real stream (it denies delete and purge), and
    # simulated staff must never answer real requests.
    if settings.nats_url:
        raise DemoRefused(
            "lintas demo runs only on its embedded bus; unset LINTAS_NATS_URL "
            f"({settings.nats_url}) or it would publish invented cases there"
        )
    running = await embedded_url(settings.data_dir)
    if running:
        raise DemoRefused(
            f"another lintas process (lintas up?) is serving {settings.data_dir} on {running}; "
            "stop it, or give the demo its own LINTAS_DATA_DIR"
        )
    return await _run(settings, cases, progress, timeout_s, seed, tracer_provider)


async def _run(
    settings: Settings,
    cases: int,
    progress: Progress | None,
    timeout_s: float,
    seed: int,
    tracer_provider: TracerProvider | None,
) -> DemoResult:
    rng = random.Random(seed)
    started = time.perf_counter()
    # Every agency on the embedded bus connects as itself, with the permissions a deployment
    # gives it: it publishes only as itself, reads only its own consumers, and asks the
    # read service for its cases' heads. The platform declares and runs the record.
    async with open_bus(settings, agencies=agencies()) as url:
        # Spans of the demo's own tracer provider (built from the settings when none is
        # given) are flushed at the end; the probe of the consent gate is untraced: it is
        # the demo's, not work on a case, and stays out of the case's trace.
        parts = Parts(settings, url, service="lintas-demo", tracer_provider=tracer_provider)
        untraced = Parts(settings, url, tracer_provider=NoOpTracerProvider())
        nc = await parts.connect("platform", name="lintas-demo")
        databases = Databases(settings)
        own: dict[str, Any] = {}
        brokers = []
        try:
            js = parts.jetstream(nc, "platform")
            await declare_platform(js, settings, demo_consumers())
            wanted: set[str] = set()
            closed: set[str] = set()
            counted = [0]
            intake_done = False
            all_closed = asyncio.Event()

            def on_record(batch: Batch) -> None:
                counted[0] += len(batch)
                closed.update(e.case_id for _, e in batch if e.type == "case.closed")
                if progress:
                    progress(len(wanted & closed), cases, counted[0])
                if intake_done and wanted <= closed:
                    all_closed.set()

            # Every demo agency signs with its own key, and every consumer verifies; each
            # agency holds an X25519 key pair, so a case's data key can be wrapped for it
            # (the watchdog holds none: it never sees a child's data).
            for agency in (*agencies(), WATCHDOG):
                ensure_agency_key(settings, agency)
            # The sealer's key too, and every key in the bus's registry, as `lintas up` keeps it.
            ensure_sealer_key(settings)
            await register_keys(settings, js)
            for agency in agencies():
                ensure_exchange_key(settings, agency)
            # Every agency's recipients as the platform reads them (files and bucket).
            for each in (parts, untraced):
                await each.recipients(js)
            verifier = parts.trust(load_registry(settings))
            record = record_broker(parts, databases, verifier, on_commit=[on_record])
            # The deadline watchdog runs as in `lintas up`: on real time, the demo's staff
            # answer long before any deadline, so it sends nothing unless something stalls.
            attach_watchdog(
                record,
                databases,
                settings,
                verifier=verifier,
                tracer_provider=parts.tracer_provider,
            )
            brokers.append(record)
            publishers = {}
            for agency in agencies():
                own[agency] = anc = await parts.connect(agency, name=f"lintas-demo-{agency}")
                publishers[agency] = await publisher_for(parts, anc, agency, verifier)
                broker = agency_broker(parts, databases, agency, verifier)
                attach_desk(broker, publishers[agency], settings)
                brokers.append(broker)
            probe = await publisher_for(untraced, own["kp2mi"], "kp2mi", verifier)
            intake = tracer_for(parts.tracer_provider, "lintas.demo")
            for broker in brokers:
                await broker.start()
            ticker = await start_ticker(parts, databases, verifier=verifier)
            try:
                opened: list[tuple[int, str]] = []
                for index in range(cases):
                    case_id = await open_case(publishers, index, rng, intake)
                    opened.append((index, case_id))
                    wanted.add(case_id)
                intake_done = True
                if wanted <= closed:
                    all_closed.set()
                deadline = time.perf_counter() + timeout_s
                try:
                    await asyncio.wait_for(all_closed.wait(), timeout_s)
                except TimeoutError:
                    raise DemoTimeout(
                        f"{len(wanted & closed)} of {cases} cases closed after {timeout_s:.0f} s"
                    ) from None
                await _drained(js, settings, deadline)
                refusal = await _try_without_consent(probe, opened)
            finally:
                await ticker.stop()
                for broker in brokers:
                    await broker.stop()
                await _dismiss_staff(js, settings)
            engine, _ = databases.for_consumer("record")
            with Session(engine) as session:
                records = [r for cid in sorted(wanted) if (r := load_record(session, cid))]
            engine, _ = databases.for_consumer("watchdog")
            with Session(engine) as session:
                followed = [d for d in load_deadlines(session) if d.case_id in wanted]
            return DemoResult(
                records, counted[0], time.perf_counter() - started, url, followed, refusal
            )
        finally:
            databases.dispose()
            for agency_nc in own.values():
                await agency_nc.close()
            await nc.close()
            await parts.close()  # writes the last spans (a collector may take a moment)
