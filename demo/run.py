"""The demo: the embedded bus, every agency's consumers, simulated staff, N cases.

Runs until every case it opened is closed in the coordination record (or the timeout),
then returns the records, read back from the record projection.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from lintas.consumers import (
    CaseRecord,
    Databases,
    attach_agency,
    attach_record,
    create_broker,
    load_record,
)
from lintas.consumers.projections import Batch
from lintas.contracts import PermanentError, TransientError
from lintas.infra.bus import connect, embedded_url, open_bus
from lintas.infra.keys import Signer, Verifier, ensure_agency_key, load_registry
from lintas.infra.platform import declare_platform
from lintas.infra.settings import Settings
from lintas.infra.topology import ConsumerSpec, deployment_consumers, staff_consumer
from lintas.producers import Publisher

from .desk import attach_desk
from .intake import open_case
from .pathways import agencies

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


def demo_consumers() -> list[ConsumerSpec]:
    return deployment_consumers(agencies()) + [staff_consumer(a) for a in agencies()]


async def run_demo(
    settings: Settings,
    cases: int,
    *,
    progress: Progress | None = None,
    timeout_s: float = 120.0,
    seed: int = 7,
) -> DemoResult:
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
    rng = random.Random(seed)
    started = time.perf_counter()
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-demo")
        databases = Databases(settings)
        try:
            js = nc.jetstream()
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

            broker = create_broker(url)
            # Every demo agency signs with its own key, and every consumer verifies.
            for agency in agencies():
                ensure_agency_key(settings, agency)
            verifier = Verifier(load_registry(settings))
            attach_record(broker, databases, settings, on_commit=[on_record], verifier=verifier)
            publishers = {
                a: Publisher(js, a, stream=settings.stream, signer=Signer.load(settings, a))
                for a in agencies()
            }
            for agency in agencies():
                attach_agency(broker, databases, settings, agency, verifier=verifier)
                attach_desk(broker, publishers[agency], settings)
            await broker.start()
            try:
                for index in range(cases):
                    wanted.add(await open_case(publishers, index, rng))
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
            finally:
                await broker.stop()
            engine, _ = databases.for_consumer("record")
            with Session(engine) as session:
                records = [r for cid in sorted(wanted) if (r := load_record(session, cid))]
            return DemoResult(records, counted[0], time.perf_counter() - started, url)
        finally:
            databases.dispose()
            await nc.close()
