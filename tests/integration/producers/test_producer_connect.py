"""``lintas.producers.connect``: an agency's Publisher in one line, on a bus with permissions,
connected as the agency (its nkey), signing with its key, sealing a child's data with its
case keys and reading case heads through the read service, as a deployment requires."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.parser import BytesParser
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from lintas.contracts import decode, message_hash, new_case_id
from lintas.infra.bootstrap import Parts
from lintas.infra.keys.exchange import ensure_exchange_key
from lintas.infra.keys.signing import (
    Verifier,
    ensure_agency_key,
    load_registry,
    publish_registry,
)
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from lintas.infra.reads import ReadService, ServiceReads
from lintas.infra.settings import Settings
from lintas.producers import connect, publisher_for
from tests.support.secured import AGENCIES, Client, admission_running, secured_hub

NOW = datetime.now(UTC)

pytestmark = pytest.mark.nats

CHILD = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
    "risk_level": "high",
    "child": {"full_name": "Siti binti Ahmad", "birth_date": "2014-05-17", "sex": "f"},
}


async def test_an_agency_publishes_through_connect_and_reads_its_event_back(
    tmp_path: Path,
) -> None:
    async with secured_hub(tmp_path) as hub:
        settings = hub.settings
        for agency in AGENCIES:
            ensure_agency_key(settings, agency)
        ensure_exchange_key(settings, "kemlu")
        platform = await Client.open(hub.url, settings, "platform")
        js = platform.js()
        await declare_platform(js, settings, deployment_consumers(AGENCIES))
        await publish_registry(js, load_registry(settings))
        service = ReadService(
            platform.conn, js, settings.stream, verifier=Verifier(load_registry(settings))
        )
        await service.start()
        case_id = new_case_id()
        try:
            async with admission_running(hub), connect("kemlu", settings, hub.url) as publisher:
                # As kemlu, which may not read the stream: heads come from the read service.
                assert isinstance(publisher.reads, ServiceReads)
                opened = await publisher.publish(
                    "case.opened", CHILD, case_id=case_id, target="kp2mi", time=NOW
                )
                again = await publisher.publish(
                    "case.opened",
                    CHILD,
                    case_id=case_id,
                    target="kp2mi",
                    time=NOW,
                    event_id=opened.event.id,
                )
                head = await publisher.head(case_id)
                stored = await publisher.reads.message(opened.stream_seq)
        finally:
            await service.stop()
            await platform.close()
    assert (again.stream_seq, again.duplicate) == (opened.stream_seq, True)
    assert (head.seq, head.hash) == (opened.stream_seq, message_hash(stored))
    doc = json.loads(stored)
    assert (doc["id"], doc["source"], doc["subject"]) == (opened.event.id, "kemlu", case_id)
    # Signed with kemlu's key, as every consumer requires.
    Verifier(load_registry(settings)).verify(stored, decode(stored).envelope)
    # The child's identity went out sealed with the case's data key, never in the clear.
    assert "Siti" not in stored.decode()
    assert "child" in doc["data"]


async def test_a_publisher_on_a_connection_of_the_callers_reads_headers_fast(
    nats_server: EmbeddedNats, nats_client: NATS, settings: Settings
) -> None:
    # A connection made with plain nats-py reads headers with the email parser; the
    # Publisher's head reads are answered with headers, on every publish.
    assert isinstance(nats_client._hdr_parser, BytesParser)
    ensure_agency_key(settings, "kemlu")
    parts = Parts(settings, nats_server.url)
    try:
        await publisher_for(parts, nats_client, "kemlu")
    finally:
        await parts.close()
    assert type(nats_client._hdr_parser).__name__ == "_HeaderParser"
