"""An agency system not written in Python: events built from the committed JSON Schemas
alone, as plain dicts, published with raw nats-py. lintas' consumers must accept them.

Nothing from lintas is used to build or publish the events; lintas only runs the
consumers (as the platform would) and is asked afterwards what they applied.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import nats
import pytest

from tests.support.paths import REPO

SCHEMAS = REPO / "contracts" / "schemas"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

pytestmark = pytest.mark.nats


def uuid7() -> str:
    """RFC 9562 UUIDv7 from the standard library, as any client would write it."""
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
    value |= 0b10 << 62 | secrets.randbits(62)
    return str(uuid.UUID(int=value))


def case_id() -> str:
    value = uuid.UUID(uuid7()).int
    return "C" + "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def schema(relpath: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / relpath).read_text())
    return loaded


def envelope(
    source: str, target: str, event_type: str, version: int, case: str, data: dict[str, Any]
) -> dict[str, Any]:
    data_schema = schema(f"{event_type}/v{version}.json")
    doc = {
        "specversion": "1.0",
        "id": uuid7(),
        "source": source,
        "type": event_type,
        "time": datetime.now(UTC).isoformat(),
        "subject": case,
        "datacontenttype": "application/json",
        "dataschema": data_schema["$id"],
        "dataversion": version,
        "target": target,
        "data": data,
    }
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(data_schema, format_checker=checker).validate(data)
    jsonschema.Draft202012Validator(schema("envelope.json"), format_checker=checker).validate(doc)
    return doc


async def test_events_built_from_schemas_alone_are_accepted(
    nats_server: Any, settings: Any
) -> None:
    case = case_id()
    events = [
        envelope(
            "my-jkm",
            "kemlu",
            "case.opened",
            2,
            case,
            {
                "situation": "undocumented_abroad",
                "location": {"country": "MY", "subdivision": "MY-12", "name": "Tawau"},
                "jurisdiction": {"country": "MY", "responsible_office": "KJRI Tawau"},
                "risk_level": "high",
            },
        ),
        # An older client still on v1 of case.opened, for another case.
        envelope(
            "my-jkm",
            "kemlu",
            "case.opened",
            1,
            case_id(),
            {
                "situation": "stateless_risk",
                "jurisdiction": "MY",
                "location": "Sarawak",
                "risk_level": "medium",
            },
        ),
        # The parent's consent, recorded where the child was found, for everyone to see:
        # without it kemlu's consumer would quarantine the referral.
        envelope(
            "my-jkm",
            "all",
            "consent.recorded",
            1,
            case,
            {
                "consent_id": "jkm-consent-1",
                "given_by": "parent",
                "child_assent": True,
                "scopes": ["services", "disclosure_to_agencies"],
                "agencies": ["kemlu", "kp2mi", "my-jkm"],
            },
        ),
        envelope(
            "my-jkm",
            "kemlu",
            "referral.requested",
            1,
            case,
            {
                "referral_id": "jkm-77",
                "service": "shelter",
                "due": "2030-01-31T00:00:00+08:00",
            },
        ),
        envelope("kemlu", "my-jkm", "referral.accepted", 1, case, {"referral_id": "jkm-77"}),
        envelope(
            "kemlu",
            "kp2mi",
            "document.issued",
            2,
            case,
            {
                "kind": "citizenship_confirmation",
                "number": "KK-2030-001",
                "issuing_office": "KJRI Tawau",
                "issuing_office_code": "KJRI-TWU",
                "issued_on": "2030-01-10",
                "valid_until": "2030-07-10",
            },
        ),
    ]

    # The platform is up: stream and consumers declared, consumers running (lintas code).
    from sqlmodel import Session

    from lintas.consumers.app import Databases, attach_agency, attach_record, create_broker
    from lintas.consumers.projections import load_record, load_records, load_worklist
    from lintas.infra.nats.topology import declare_platform, deployment_consumers
    from tests.support.helpers import Applied

    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await declare_platform(js, settings, deployment_consumers(["kemlu"]))
    for doc in events:
        family, action = doc["type"].split(".")
        subject = f"lintas.{doc['source']}.{doc['target']}.{family}.{action}.{doc['subject']}"
        ack = await js.publish(
            subject, json.dumps(doc).encode(), headers={"Nats-Msg-Id": doc["id"]}
        )
        assert not ack.duplicate
    await nc.close()

    record_applied, worklist_applied = Applied(), Applied()
    databases = Databases(settings)
    broker = create_broker(nats_server.url)
    attach_record(broker, databases, settings, on_commit=[record_applied])
    attach_agency(broker, databases, settings, "kemlu", on_commit=[worklist_applied])
    await broker.start()
    try:
        await record_applied.wait_for(len(events))
        # kemlu's inbox: both case.opened, the consent and the referral; its sent:
        # accepted, issued.
        await worklist_applied.wait_for(6)
    finally:
        await broker.stop()

    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        records = {r.case_id: r for r in load_records(session)}
        main = load_record(session, case)
    engine, _ = databases.for_consumer("worklist-kemlu")
    with Session(engine) as session:
        items = load_worklist(session, "kemlu")
    databases.dispose()
    assert len(records) == 2
    assert main is not None
    assert (main.situation, main.jurisdiction, main.whereabouts) == (
        "undocumented_abroad",
        "MY",
        "Tawau, MY",
    )
    assert [e.type for e in main.timeline] == [
        "case.opened",
        "consent.recorded",
        "referral.requested",
        "referral.accepted",
        "document.issued",
    ]
    assert [e.refused for e in main.timeline] == [None] * 5  # every disclosure consented
    assert [(d.kind, d.issuing_office_code, d.valid_until) for d in main.documents] == [
        ("citizenship_confirmation", "KJRI-TWU", "2030-07-10")
    ]
    old = next(r for r in records.values() if r.case_id != case)
    assert (old.situation, old.whereabouts) == ("stateless_risk", "Sarawak, MY")
    assert [(i.requester, i.request_id, i.status) for i in items] == [
        ("my-jkm", "jkm-77", "accepted")
    ]
