"""What a client bypassing the Publisher does, and the agencies' consumers that must catch it:
shared by the privacy and authority tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from nats.js import JetStreamContext

from lintas.consumers.app import Databases, attach_agency, create_broker
from lintas.consumers.quarantine import QuarantineEntry
from lintas.contracts import (
    encode,
)
from lintas.infra.keys.signing import Signer, Verifier, load_registry
from lintas.infra.settings import Settings
from tests.support.helpers import Applied

CHILD = {
    "full_name": "Putri Kinanti-PRIVACY-TEST",
    "birth_date": "2016-04-09",
    "mother_name": "Sumiati-PRIVACY-TEST",
    "address": "Dusun Krajan RT 03-PRIVACY-TEST",
}
OPENED = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
    "risk_level": "high",
    "child": CHILD,
}
REFERRAL = {"referral_id": "ref-1", "service": "shelter"}


@asynccontextmanager
async def consumers(
    url: str, settings: Settings, agencies: Sequence[str], applied: Applied
) -> AsyncIterator[Databases]:
    """The agencies' consumers (verifying signatures), until the block ends."""
    databases = Databases(settings)
    broker = create_broker(url)
    verifier = Verifier(load_registry(settings))
    for agency in agencies:
        attach_agency(broker, databases, settings, agency, on_commit=[applied], verifier=verifier)
    await broker.start()
    try:
        yield databases
    finally:
        await broker.stop()


async def raw_publish(js: JetStreamContext, settings: Settings, event: Any) -> int:
    """What a client bypassing the Publisher does: a valid, signed envelope straight onto
    the subject, no gate (no chain either; the consumer does not check it)."""
    envelope = Signer.load(settings, event.source).sign(event.envelope)
    ack = await js.publish(
        envelope.nats_subject,
        encode(envelope),
        stream=settings.stream,
        headers={"Nats-Msg-Id": envelope.id},
    )
    return int(ack.seq)


def quarantined(entries: Sequence[QuarantineEntry], consumer: str) -> dict[int, str]:
    return {e.stream_seq: e.reason for e in entries if e.consumer == consumer}
