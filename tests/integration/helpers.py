"""Small helpers for broker tests: publish demo-shaped events, run projections, await them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from lintas.consumers import Databases, OnCommit, attach_record, create_broker
from lintas.consumers.projections import Batch
from lintas.contracts import new_case_id
from lintas.infra.keys import Signer, Verifier, ensure_agency_key
from lintas.infra.platform import declare_platform
from lintas.infra.settings import Settings
from lintas.infra.topology import record_consumer
from lintas.producers import Publisher

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


class Applied:
    """Counts committed events; ``wait_for(n)`` returns once ``n`` are applied."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []
        self._changed = asyncio.Condition()
        self._loop = asyncio.get_running_loop()

    def __call__(self, batch: Batch) -> None:
        self.events.extend((seq, event.id) for seq, event in batch)
        self._loop.create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, count: int, within_s: float = 20.0) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: len(self.events) >= count)


def signed(js: JetStreamContext, settings: Settings, agency: str) -> Publisher:
    """A Publisher signing with ``agency``'s key in the settings' data dir (made if missing)."""
    ensure_agency_key(settings, agency)
    return Publisher(js, agency, stream=settings.stream, signer=Signer.load(settings, agency))


async def publish_case(
    publisher: Publisher,
    *,
    steps: int = 3,
    at: datetime = T0,
    kp2mi: Publisher | None = None,
) -> str:
    """A case opened by ``publisher`` (kemlu) for kp2mi, then ``steps`` document requests
    from kp2mi to kemlu (through ``kp2mi`` when given, else an unsigned publisher)."""
    case_id = new_case_id()
    await publisher.publish(
        "case.opened",
        {
            "situation": "undocumented_abroad",
            "location": {"country": "MY", "subdivision": "MY-12", "name": "Sabah"},
            "jurisdiction": {"country": "MY", "responsible_office": "KJRI Kota Kinabalu"},
            "risk_level": "high",
        },
        case_id=case_id,
        target="kp2mi",
        time=at,
    )
    kp2mi = kp2mi or Publisher(publisher._js, "kp2mi", stream=publisher.stream)
    for step in range(steps):
        await kp2mi.publish(
            "document.requested",
            {"request_id": f"doc-{step}", "kind": "nik"},
            case_id=case_id,
            target="kemlu",
            time=at + timedelta(minutes=step + 1),
        )
    return case_id


async def start_record(
    url: str, settings: Settings, on_commit: Sequence[OnCommit], verifier: Verifier | None = None
) -> tuple[Callable[[], object], Databases]:
    """Start a record projector on its own broker; returns (async stop, databases)."""
    databases = Databases(settings)
    broker = create_broker(url)
    attach_record(broker, databases, settings, on_commit=on_commit, verifier=verifier)
    await broker.start()

    async def stop() -> None:
        await broker.stop()

    return stop, databases


async def declare_record(js: JetStreamContext, settings: Settings) -> None:
    await declare_platform(js, settings, [record_consumer()])
