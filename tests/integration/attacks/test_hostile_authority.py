"""Attacks on what admission's authority policy and time checks let through, on a secured
bus, each sender connected as its own identity (the watchdog as ``watchdog``): each event
here is one admission should refuse, and nothing of it should enter ``LINTAS``.

One hub for the module (its tests share one event loop): each test opens its own cases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.attack import Case, Platform, platform_running
from tests.support.samples import SAMPLES

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.nats]

CONSENT = {**SAMPLES["consent.recorded"], "agencies": ["kp2mi", "dukcapil"]}
REFERRAL = {"referral_id": "ref-1", "service": "shelter"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with platform_running(Path(tmp_path_factory.mktemp("authority"))) as platform:
        yield platform


async def owned_by_kp2mi(bus: Platform) -> Case:
    """kemlu opens, records the parent's consent, and hands the case to kp2mi."""
    case = await bus.opened("kemlu")
    await bus.say(case, "consent.recorded", "kemlu", data=CONSENT)
    await bus.say(case, "case.assigned", "kemlu", data={"owner": "kp2mi", "officer_ref": "P2MI-1"})
    return case


async def test_the_watchdog_cannot_make_an_agency_a_party_by_escalating_to_it(
    bus: Platform,
) -> None:
    case = await bus.opened("kemlu")
    await bus.refuse(case, "consent.recorded", "dukcapil", "not_party", data=CONSENT)
    escalation = {
        "escalation_id": "esc-forged",
        "concern": "overdue_handoff",
        "overdue": {
            "handoff": "referral",
            "request_id": "never-asked",
            "requester": "kemlu",
            "asked": "dukcapil",
            "due": "2024-03-08T08:00:00Z",
        },
    }
    forged = bus.event(case, "oversight.escalated", "watchdog", target="dukcapil", data=escalation)
    answer = await bus.send(forged)
    assert (answer.admitted, answer.code) == (False, "not_to_kpai"), answer
    if answer.admitted:
        case.head = answer.hash
    # Whatever admission answered, dukcapil must not have become a party of the case.
    await bus.refuse(case, "consent.recorded", "dukcapil", "not_party", data=CONSENT)


async def test_an_answer_dated_before_its_request_is_refused(bus: Platform) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.say(case, "referral.requested", "kp2mi", target="dukcapil", data=REFERRAL)
    backdated = bus.event(
        case,
        "referral.accepted",
        "dukcapil",
        target="kp2mi",
        data={"referral_id": "ref-1"},
        time=datetime.now(UTC) - timedelta(days=20),
    )
    before = await bus.log_size()
    answer = await bus.send(backdated)
    assert (answer.admitted, answer.code, answer.field) == (False, "before_request", "time")
    assert await bus.log_size() == before


async def test_an_overdue_notice_for_a_hand_off_already_answered_is_refused(
    bus: Platform,
) -> None:
    case = await owned_by_kp2mi(bus)
    await bus.say(case, "referral.requested", "kp2mi", target="dukcapil", data=REFERRAL)
    await bus.say(
        case, "referral.completed", "dukcapil", target="kp2mi", data=SAMPLES["referral.completed"]
    )
    notice = SAMPLES["referral.overdue"]
    await bus.refuse(
        case, "referral.overdue", "watchdog", "no_such_request", target="dukcapil", data=notice
    )


async def test_a_resent_event_gets_the_receipt_of_its_first_admission(bus: Platform) -> None:
    case = Case()
    event = bus.event(case, "case.opened", "kemlu")
    first = await bus.send(event)
    assert first.admitted, first
    assert first.receipt is not None
    again = await bus.send(event)
    assert (again.admitted, again.duplicate) == (True, True), again
    assert again.receipt is not None
    assert again.receipt == first.receipt
