"""The authority policy at the readers, on a real nats-server and a real database.

Signed, valid events that their sources may not say (published straight onto their
subjects, as a client bypassing the Publisher would): a non-owner's erasure, a third
party's withdrawal of a consent, a referral of a case never opened, an overdue notice not
from the watchdog. The record's consumer quarantines each and folds the rest; the agency
asked quarantines what it can tell on its own; the watchdog never follows (so never
escalates) the unopened case's referral.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlmodel import Session

from lintas.consumers.projections import load_record
from lintas.consumers.quarantine import list_entries
from lintas.consumers.watchdog import load_deadlines
from lintas.contracts import BROADCAST, build_data, make_event, new_case_id
from lintas.infra.keys.signing import Verifier, load_registry
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import (
    agency_consumer,
    agency_sent_consumer,
    declare_platform,
    record_consumer,
)
from lintas.infra.settings import Settings
from tests.support.bypass import OPENED, consumers
from tests.support.bypass import quarantined as _quarantined
from tests.support.bypass import raw_publish as _raw_publish
from tests.support.helpers import T0, Applied, consent, signed, start_record
from tests.support.watchdog import DUE, ESCALATE, Platform

pytestmark = pytest.mark.nats

ERASURE = {
    "officer_role": "data_protection_officer",
    "requested_by": "parent",
    "legal_basis": ["UU 27/2022 Pasal 8"],
    "reason": "subject_request",
}


async def _bypass(
    js: JetStreamContext,
    settings: Settings,
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    target: str,
    case_id: str,
) -> int:
    """A signed, valid event straight onto its subject (no Publisher, no gate)."""
    event = make_event(
        build_data(event_type, data), source=source, target=target, case_id=case_id, time=T0
    )
    return await _raw_publish(js, settings, event)


async def test_the_record_and_the_agency_quarantine_what_the_policy_refuses(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings, database_url: str | None
) -> None:
    settings = settings.model_copy(update={"database_url": database_url})
    await declare_platform(
        js,
        settings,
        [record_consumer(), agency_consumer("kemensos"), agency_sent_consumer("kemensos")],
    )
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    for other in ("dukcapil", "kemensos"):
        signed(js, settings, other)  # their keys, which the events below are signed with
    case_id = new_case_id()
    await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kp2mi", time=T0)
    await consent(kemlu, case_id, ["kp2mi", "kemensos"], at=T0)
    await kp2mi.publish(
        "case.assigned",
        {"owner": "kp2mi", "officer_ref": "P2MI-1"},
        case_id=case_id,
        target=BROADCAST,
    )
    referral = await kp2mi.publish(
        "referral.requested",
        {"referral_id": "ref-1", "service": "shelter"},
        case_id=case_id,
        target="kemensos",
    )
    erased = await _bypass(
        js, settings, "case.erased", ERASURE, source="dukcapil", target=BROADCAST, case_id=case_id
    )
    withdrawn = await _bypass(
        js,
        settings,
        "consent.withdrawn",
        {"consent_id": "consent-1", "notified": ["kemensos"]},
        source="kemensos",
        target=BROADCAST,
        case_id=case_id,
    )
    not_watchdog = await _bypass(
        js,
        settings,
        "referral.overdue",
        {"referral_id": "ref-1", "requester": "kp2mi", "due": T0.isoformat()},
        source="kp2mi",
        target="kemensos",
        case_id=case_id,
    )
    never_opened = new_case_id()
    unopened = await _bypass(
        js,
        settings,
        "referral.requested",
        {"referral_id": "ref-x", "service": "shelter"},
        source="kp2mi",
        target="kemensos",
        case_id=never_opened,
    )
    closed = await kp2mi.publish(
        "case.closed", {"reason": "reintegrated"}, case_id=case_id, target=BROADCAST
    )

    verifier = Verifier(load_registry(settings))
    record_applied, agency_applied = Applied(), Applied()
    stop, databases = await start_record(nats_server.url, settings, [record_applied], verifier)
    try:
        await record_applied.wait_for_seq(closed.stream_seq)
        async with consumers(nats_server.url, settings, ["kemensos"], agency_applied) as agency:
            await agency_applied.wait_for_seq(closed.stream_seq)
        agency.dispose()
    finally:
        await stop()
    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        record = load_record(session, case_id)
        assert load_record(session, never_opened) is None
    databases.dispose()

    entries = [e async for e in list_entries(js, settings)]
    by_record = _quarantined(entries, "record")
    assert sorted(by_record) == [erased, withdrawn, not_watchdog, unopened]
    assert "(not_owner, field 'source')" in by_record[erased]
    assert "(not_recorder, field 'source')" in by_record[withdrawn]
    assert "(watchdog_only, field 'source')" in by_record[not_watchdog]
    assert "never opened" in by_record[unopened]
    # The record folded everything else, and nothing of what it refused.
    assert record is not None
    assert (record.owner, record.status, record.erasure) == ("kp2mi", "closed", None)
    assert [c.withdrawn_seq for c in record.consents] == [None]
    assert referral.stream_seq in {e.seq for e in record.timeline}
    assert {erased, withdrawn, not_watchdog}.isdisjoint(e.seq for e in record.timeline)
    # The agency asked tells a notice not from the watchdog on its own.
    by_agency = _quarantined(entries, "agency-kemensos")
    assert "(watchdog_only, field 'source')" in by_agency[not_watchdog]


async def test_the_watchdog_never_escalates_a_referral_of_a_case_never_opened(
    platform: Platform,
) -> None:
    replica = await platform.start()
    case_id = await platform.open_case()
    never_opened = new_case_id()
    stray = await _bypass(
        platform.js,
        platform.settings,
        "referral.requested",
        {"referral_id": "ref-x", "service": "shelter", "due": DUE.isoformat()},
        source="kp2mi",
        target="kemenpppa",
        case_id=never_opened,
    )
    await platform.refer(case_id)
    info = await platform.js.stream_info(platform.settings.stream)
    await replica.applied.wait_for_seq(info.state.last_seq)

    for now in (DUE, ESCALATE, ESCALATE + timedelta(days=1)):
        platform.clock.set(now)
        await replica.ticker.tick()
        info = await platform.js.stream_info(platform.settings.stream)
        await replica.applied.wait_for_seq(info.state.last_seq)
    notices = await platform.notices()
    assert [(n.type, n.case_id) for n in notices] == [
        ("referral.overdue", case_id),
        ("oversight.escalated", case_id),
    ]
    with Session(replica.ticker.engine) as session:
        assert {d.case_id for d in load_deadlines(session)} == {case_id}
    entries = [e async for e in list_entries(platform.js, platform.settings)]
    reason = _quarantined(entries, "watchdog")[stray]
    assert "(case_not_opened, field 'subject')" in reason
