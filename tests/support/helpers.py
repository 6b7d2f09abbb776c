"""Small helpers for broker tests: publish demo-shaped events, run projections, await them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext
from opentelemetry.trace import TracerProvider

from lintas.consumers.app import Databases, attach_record, create_broker
from lintas.consumers.projections import Batch
from lintas.consumers.runner import OnCommit
from lintas.contracts import (
    BROADCAST,
    PLATFORM_SERVICES,
    build_data,
    encode,
    make_event,
    new_case_id,
)
from lintas.infra.keys.exchange import ensure_exchange_key, load_recipients
from lintas.infra.keys.signing import Signer, Verifier, ensure_agency_key, load_registry
from lintas.infra.nats.topology import declare_platform, record_consumer
from lintas.infra.privacy.casekeys import case_keys_for
from lintas.infra.settings import Settings
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

    async def wait_for_seq(self, seq: int, within_s: float = 20.0) -> None:
        """Until the event at stream sequence ``seq`` (or a later one) is applied: a consumer
        applies in stream order, so everything of its up to ``seq`` is then applied."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: any(s >= seq for s, _ in self.events))


AGENCIES = (
    "kp2mi",
    "kemlu",
    "dukcapil",
    "kemensos",
    "kemenpppa",
    "kemnaker",
    "kpai",
    "desa-3525012001",
    "my-jkm",
)


def signed(
    js: JetStreamContext,
    settings: Settings,
    agency: str,
    tracer_provider: TracerProvider | None = None,
    *,
    verify: bool = False,
) -> Publisher:
    """A Publisher signing with ``agency``'s key in the settings' data dir (made if missing),
    holding its case keys (every test agency gets an X25519 key pair, so any can be given
    a case's data key; a platform service, the watchdog, holds none). ``verify``: its gate
    checks signatures against the data dir's registry as it is now."""
    ensure_agency_key(settings, agency)
    for each in AGENCIES:
        ensure_exchange_key(settings, each)
    keys = (
        None
        if agency in PLATFORM_SERVICES
        else case_keys_for(js, settings, agency, load_recipients(settings))
    )
    return Publisher(
        js,
        agency,
        stream=settings.stream,
        signer=Signer.load(settings, agency),
        keys=keys,
        tracer_provider=tracer_provider,
        verifier=Verifier(load_registry(settings)) if verify else None,
    )


async def forge_consent(
    js: JetStreamContext, settings: Settings, case_id: str, agencies: Sequence[str]
) -> None:
    """A consent covering ``agencies`` in KemLu's name, signed with a key no registry
    holds, put straight on the stream: what a verifying gate must not count."""
    forged = make_event(
        build_data(
            "consent.recorded",
            {
                "consent_id": "consent-1",
                "given_by": "parent",
                "child_assent": True,
                "scopes": ["services"],
                "agencies": list(agencies),
            },
        ),
        source="kemlu",
        target=BROADCAST,
        case_id=case_id,
        time=T0,
    )
    envelope = Signer("kemlu", Ed25519PrivateKey.generate()).sign(forged.envelope)
    await js.publish(
        envelope.nats_subject,
        encode(envelope),
        stream=settings.stream,
        headers={"Nats-Msg-Id": envelope.id},
    )


async def consent(
    publisher: Publisher,
    case_id: str,
    agencies: Sequence[str],
    *,
    scopes: Sequence[str] = ("services", "disclosure_to_agencies"),
    consent_id: str = "consent-1",
    at: datetime | None = None,
) -> int:
    """A parent's consent covering ``agencies``, recorded by ``publisher``; its stream seq."""
    published = await publisher.publish(
        "consent.recorded",
        {
            "consent_id": consent_id,
            "given_by": "parent",
            "child_assent": True,
            "scopes": list(scopes),
            "agencies": list(agencies),
        },
        case_id=case_id,
        target=BROADCAST,
        time=at,
    )
    return published.stream_seq


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
            "location": {"country": "MY", "subdivision": "MY-12"},
            "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
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
    url: str,
    settings: Settings,
    on_commit: Sequence[OnCommit],
    verifier: Verifier | None = None,
    tracer_provider: TracerProvider | None = None,
) -> tuple[Callable[[], object], Databases]:
    """Start a record projector on its own broker; returns (async stop, databases)."""
    databases = Databases(settings)
    broker = create_broker(url)
    attach_record(
        broker,
        databases,
        settings,
        on_commit=on_commit,
        verifier=verifier,
        tracer_provider=tracer_provider,
    )
    await broker.start()

    async def stop() -> None:
        await broker.stop()

    return stop, databases


async def declare_record(js: JetStreamContext, settings: Settings) -> None:
    await declare_platform(js, settings, [record_consumer()])


async def line_with(stream: asyncio.StreamReader, text: str, within_s: float) -> str:
    """The first line of a process's output holding ``text``, within ``within_s``."""
    async with asyncio.timeout(within_s):
        while line := (await stream.readline()).decode():
            if text in line:
                return line
    raise AssertionError(f"process ended without printing {text!r}")
