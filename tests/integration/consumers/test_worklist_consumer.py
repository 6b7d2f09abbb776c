"""An agency's worklist on a real bus: fed by its inbox and by its own answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from nats.js import JetStreamContext
from sqlmodel import Session

from lintas.consumers.app import Databases, attach_agency, create_broker
from lintas.consumers.projections import Batch, load_worklist
from lintas.contracts import new_case_id
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import agency_consumer, agency_sent_consumer, declare_platform
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.support.helpers import T0, Applied, consent, signed

pytestmark = pytest.mark.nats


async def test_worklist_tracks_requests_addressed_to_the_agency(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, database_url: str | None
) -> None:
    settings = settings.model_copy(update={"database_url": database_url})
    agency = "kemenpppa"
    await declare_platform(js, settings, [agency_consumer(agency), agency_sent_consumer(agency)])
    kp2mi = signed(js, settings, "kp2mi")
    pppa = Publisher(js, agency, stream=settings.stream)
    kemnaker = Publisher(js, "kemnaker", stream=settings.stream)
    done, waiting, elsewhere = new_case_id(), new_case_id(), new_case_id()
    due = T0 + timedelta(days=7)
    for case_id, covered in ((done, agency), (waiting, agency), (elsewhere, "kemnaker")):
        await consent(kp2mi, case_id, [covered], scopes=["services"], at=T0)

    def ref(rid: str) -> dict[str, str]:
        return {"referral_id": rid}

    await kp2mi.publish(
        "referral.requested",
        {**ref("r1"), "service": "psychosocial_assessment", "due": due.isoformat()},
        case_id=done,
        target=agency,
        time=T0,
    )
    await pppa.publish(
        "referral.accepted", ref("r1"), case_id=done, target="kp2mi", time=T0 + timedelta(hours=1)
    )
    await pppa.publish(
        "referral.completed",
        {**ref("r1"), "outcome": "served"},
        case_id=done,
        target="kp2mi",
        time=T0 + timedelta(hours=2),
    )
    await kp2mi.publish(
        "referral.requested",
        {**ref("r2"), "service": "protection_services"},
        case_id=waiting,
        target=agency,
        time=T0 + timedelta(hours=3),
    )
    # Neither addressed to nor answered by kemenpppa: not on its worklist.
    await kp2mi.publish(
        "referral.requested",
        {**ref("r3"), "service": "community_parenting"},
        case_id=elsewhere,
        target="kemnaker",
        time=T0,
    )
    await kemnaker.publish(
        "referral.accepted", ref("r3"), case_id=elsewhere, target="kp2mi", time=T0
    )

    applied = Applied()
    databases = Databases(settings)
    broker = create_broker(nats_server.url)
    attach_agency(broker, databases, settings, agency, on_commit=[applied])
    await broker.start()
    try:
        await applied.wait_for(7)  # 3 consents (broadcast), r1 x3 (inbox 1, sent 2), r2 x1
    finally:
        await broker.stop()
    engine, _ = databases.for_consumer(f"worklist-{agency}")
    with Session(engine) as session:
        items = {item.case_id: item for item in load_worklist(session, agency)}
    databases.dispose()
    assert set(items) == {done, waiting}
    first = items[done]
    assert (first.requester, first.request_id, first.handoff, first.what) == (
        "kp2mi",
        "r1",
        "referral",
        "psychosocial_assessment",
    )
    assert (first.status, first.requested_at, first.due) == ("completed", T0, due)
    assert items[waiting].status == "requested"
    assert items[waiting].age_seconds(T0 + timedelta(hours=4)) == 3600


async def test_two_consumers_share_one_sqlite_file_without_lock_errors(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    """The inbox and sent consumers of an agency write one SQLite file concurrently."""
    agency = "dukcapil"
    await declare_platform(js, settings, [agency_consumer(agency), agency_sent_consumer(agency)])
    kp2mi = Publisher(js, "kp2mi", stream=settings.stream)
    dukcapil = signed(js, settings, agency)
    cases = [new_case_id() for _ in range(40)]
    for case_id in cases:
        await kp2mi.publish(
            "document.requested", {"request_id": "d", "kind": "nik"}, case_id=case_id, target=agency
        )
        # The number goes to kp2mi sealed: a consent must cover kp2mi.
        await consent(dukcapil, case_id, ["kp2mi"], scopes=["disclosure_to_agencies"])
        await dukcapil.publish(
            "document.issued",
            {
                "request_id": "d",
                "kind": "nik",
                "number": "3525000000000001",
                "issuing_office": "35.25",
                "issued_on": "2025-03-01",
            },
            case_id=case_id,
            target="kp2mi",
        )
    applied = Applied()
    seen: list[Batch] = []
    databases = Databases(settings)
    broker = create_broker(nats_server.url)
    attach_agency(broker, databases, settings, agency, on_commit=[applied, seen.append])
    await broker.start()
    try:
        await applied.wait_for(160)  # request and consent (inbox), consent and issued (sent)
    finally:
        await broker.stop()
    engine, _ = databases.for_consumer(f"worklist-{agency}")
    with Session(engine) as session:
        items = load_worklist(session, agency)
    databases.dispose()
    assert len(items) == 40
    assert {item.status for item in items} == {"completed"}
