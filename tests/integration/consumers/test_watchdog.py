"""The deadline watchdog on a real nats-server and a real database: overdue notices and
escalations fire once, at the right logical time, across restarts and two replicas.

Time is a ManualClock: a deadline days away passes by setting the clock; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from sqlmodel import Session

from lintas.admission import AdmissionService
from lintas.consumers.app import Databases
from lintas.consumers.watchdog import load_deadlines, watchdog_ticker
from lintas.contracts import Event
from lintas.contracts import gate as gate_rules
from lintas.infra.db import Tracking
from lintas.infra.keys.signing import Signer, Verifier, ensure_agency_key, load_registry
from lintas.infra.nats.topology import declare_platform, intake_stream, watchdog_consumer
from lintas.producers import Admission, Publisher
from tests.support.helpers import T0
from tests.support.samples import SAMPLES
from tests.support.watchdog import DUE, ESCALATE, Platform, Replica

pytestmark = pytest.mark.nats


async def _stream_len(platform: Platform) -> int:
    return int((await platform.js.stream_info(platform.settings.stream)).state.last_seq)


async def _caught_up(platform: Platform, replica: Replica) -> None:
    """Until the replica's projection has applied everything in the stream."""
    await replica.applied.wait_for_seq(await _stream_len(platform))


def _types(notices: list[Event]) -> list[str]:
    return [n.type for n in notices]


async def test_overdue_then_escalation_fire_once_at_their_logical_time(
    platform: Platform,
) -> None:
    replica = await platform.start()
    case_id = await platform.open_case()
    await platform.refer(case_id)
    await _caught_up(platform, replica)

    platform.clock.set(DUE - timedelta(seconds=1))
    assert (await replica.ticker.tick()).published == []

    platform.clock.set(DUE)
    tick = await replica.ticker.tick()
    assert [(kind, key) for kind, key, _ in tick.published] == [
        ("overdue", (case_id, "kp2mi", "ref-psy"))
    ]
    # Ticking again at once, before the consumer has even seen the notice: nothing more.
    platform.clock.advance(timedelta(hours=1))
    assert (await replica.ticker.tick()).published == []
    await _caught_up(platform, replica)
    assert (await replica.ticker.tick()).published == []

    platform.clock.set(ESCALATE - timedelta(seconds=1))
    assert (await replica.ticker.tick()).published == []
    platform.clock.set(ESCALATE)
    assert [k for k, _, _ in (await replica.ticker.tick()).published] == ["escalate"]
    await _caught_up(platform, replica)
    platform.clock.advance(timedelta(days=30))
    assert (await replica.ticker.tick()).published == []

    overdue, escalated = await platform.notices()
    assert (overdue.type, overdue.target, overdue.time) == ("referral.overdue", "kemenpppa", DUE)
    assert overdue.data.model_dump() == {
        "referral_id": "ref-psy",
        "requester": "kp2mi",
        "due": DUE,
        "escalates_at": ESCALATE,
    }
    assert (escalated.type, escalated.target, escalated.time) == (
        "oversight.escalated",
        "kpai",
        ESCALATE,
    )
    data = escalated.data.model_dump()
    assert data["concern"] == "overdue_handoff"
    assert data["overdue"] == {
        "handoff": "referral",
        "request_id": "ref-psy",
        "requester": "kp2mi",
        "asked": "kemenpppa",
        "due": DUE,
    }
    # Nothing of the child: no reason (v3 needs none when ``overdue`` names the hand-off),
    # so the watchdog, which holds no case key, seals nothing and no consent is needed.
    assert escalated.envelope.dataversion == 3
    assert data["reason"] is None
    assert "reason" not in escalated.envelope.data
    assert not gate_rules.carries_personal(escalated)
    assert not gate_rules.carries_personal(overdue)
    # Signed by the watchdog's own key, chained into the case like any event.
    verifier = Verifier(load_registry(platform.settings))
    for seq, event, raw in await platform.events():
        if event.source == "watchdog":
            verifier.verify(raw, event.envelope)
            assert event.envelope.keyid is not None
            assert event.envelope.keyid.startswith("watchdog:")
            assert event.envelope.prevhash is not None, seq
    with Session(replica.ticker.engine) as session:
        (item,) = load_deadlines(session)
    assert (item.status, item.overdue_seq is not None, item.escalated_seq is not None) == (
        "open",
        True,
        True,
    )


async def test_nothing_fires_for_handoffs_answered_in_time(platform: Platform) -> None:
    replica = await platform.start()
    answered = await platform.open_case()
    await platform.refer(answered)
    await platform.kemenpppa.publish(
        "referral.accepted",
        {"referral_id": "ref-psy"},
        case_id=answered,
        target="kp2mi",
        time=DUE - timedelta(hours=1),
    )
    revoked = await platform.open_case()
    await platform.refer(revoked)
    await platform.kp2mi.publish(
        "referral.revoked",
        {"referral_id": "ref-psy", "reason": "served elsewhere"},
        case_id=revoked,
        target="kemenpppa",
        time=T0 + timedelta(hours=5),
    )
    # Someone else's answer does not count: only the agency asked answers (the watchdog
    # quarantines it: the authority policy; an event it applies follows, so that it is
    # seen caught up).
    wrong = await platform.open_case()
    await platform.refer(wrong)
    await platform.dukcapil.publish(
        "referral.accepted", {"referral_id": "ref-psy"}, case_id=wrong, target="kp2mi", time=T0
    )
    closed = await platform.open_case()
    await platform.kp2mi.publish(
        "document.requested",
        {"request_id": "doc-nik", "kind": "nik"},
        case_id=closed,
        target="dukcapil",
        time=T0,
    )
    # Closed by its owner (kemlu opened it; the authority policy refuses anyone else's).
    await platform.kemlu.publish(
        "case.closed", {"reason": "no_longer_needed"}, case_id=closed, target="all", time=T0
    )
    await _caught_up(platform, replica)
    for days in (3, 10, 60):
        platform.clock.set(T0 + timedelta(days=days))
        await replica.ticker.tick()
        await _caught_up(platform, replica)
    notices = await platform.notices()
    assert [(n.type, n.case_id) for n in notices] == [
        ("referral.overdue", wrong),
        ("oversight.escalated", wrong),
    ]


async def test_default_due_dates_per_kind_and_an_override(platform: Platform) -> None:
    replica = await platform.start()
    case_id = await platform.open_case()
    # No due date: settings.due_document (5 days) after the request.
    await platform.kp2mi.publish(
        "document.requested",
        {"request_id": "doc-akta", "kind": "akta_kelahiran"},
        case_id=case_id,
        target="dukcapil",
        time=T0,
    )
    # Its own due date (12 hours) rather than settings.due_rehabilitation (1 day).
    await platform.kp2mi.publish(
        "rehabilitation.handoff_requested",
        {"handoff_id": "rehab-1", "placement": "SENTRA-32.01", "due": (T0 + timedelta(hours=12))},
        case_id=case_id,
        target="kemensos",
        time=T0,
    )
    await _caught_up(platform, replica)

    platform.clock.set(T0 + timedelta(hours=12))
    tick = await replica.ticker.tick()
    assert [key[2] for _, key, _ in tick.published] == ["rehab-1"]
    await _caught_up(platform, replica)
    platform.clock.set(T0 + timedelta(days=5) - timedelta(seconds=1))
    tick = await replica.ticker.tick()
    # The hand-off's escalation: 30 hours after its due date.
    assert [(k, key[2]) for k, key, _ in tick.published] == [("escalate", "rehab-1")]
    await _caught_up(platform, replica)
    platform.clock.set(T0 + timedelta(days=5))
    tick = await replica.ticker.tick()
    assert [(k, key[2]) for k, key, _ in tick.published] == [("overdue", "doc-akta")]

    rehab, escalation, document = await platform.notices()
    assert (rehab.type, rehab.target) == ("rehabilitation.handoff_overdue", "kemensos")
    assert rehab.data.model_dump()["escalates_at"] == T0 + timedelta(hours=42)
    assert escalation.type == "oversight.escalated"
    assert (document.type, document.target) == ("document.overdue", "dukcapil")
    assert document.data.model_dump() == {
        "request_id": "doc-akta",
        "requester": "kp2mi",
        "kind": "akta_kelahiran",
        "due": T0 + timedelta(days=5),
        "escalates_at": T0 + timedelta(days=9),
    }


async def test_a_restarted_watchdog_sends_nothing_twice(platform: Platform) -> None:
    first = await platform.start()
    case_id = await platform.open_case()
    await platform.refer(case_id)
    await _caught_up(platform, first)
    platform.clock.set(DUE + timedelta(minutes=1))
    assert len((await first.ticker.tick()).published) == 1
    # Stopped before its consumer saw its own notice: the next process learns it from
    # the stream.
    await platform.stop(first)

    second = await platform.start()
    await platform.kp2mi.publish(
        "case.assessed",
        {"risk_level": "medium", "needs": ["protection"]},
        case_id=case_id,
        target="kemenpppa",
        time=DUE + timedelta(minutes=2),
    )
    await _caught_up(platform, second)
    assert (await second.ticker.tick()).published == []
    platform.clock.set(ESCALATE + timedelta(hours=1))
    assert [k for k, _, _ in (await second.ticker.tick()).published] == ["escalate"]
    await platform.stop(second)

    third = await platform.start()
    await platform.kp2mi.publish(
        "case.assessed",
        {"risk_level": "high", "needs": ["protection"]},
        case_id=case_id,
        target="kemenpppa",
        time=ESCALATE + timedelta(hours=2),
    )
    await _caught_up(platform, third)
    platform.clock.advance(timedelta(days=60))
    assert (await third.ticker.tick()).published == []
    assert _types(await platform.notices()) == ["referral.overdue", "oversight.escalated"]


async def _race(platform: Platform, replicas: list[Replica], rounds: int = 3) -> None:
    """Every replica ticks at once, several times; the first round before their consumers
    could see any notice, the others after."""
    for _ in range(rounds):
        await asyncio.gather(*(r.ticker.tick() for r in replicas))
        await asyncio.gather(*(_caught_up(platform, r) for r in replicas))


async def test_two_replicas_send_one_of_each(platform: Platform) -> None:
    # One durable, one database: what two processes on one deployment share.
    a = await platform.start()
    b = await platform.start(applied=a.applied)
    cases = [await platform.open_case() for _ in range(4)]
    for case_id in cases:
        await platform.refer(case_id)
    await asyncio.gather(_caught_up(platform, a), _caught_up(platform, b))
    platform.clock.set(DUE)
    await _race(platform, [a, b])
    platform.clock.set(ESCALATE)
    await _race(platform, [a, b])
    platform.clock.advance(timedelta(days=30))
    await _race(platform, [a, b])
    notices = await platform.notices()
    assert sorted((n.case_id, n.type) for n in notices) == sorted(
        (case_id, kind) for case_id in cases for kind in ("oversight.escalated", "referral.overdue")
    )


async def test_two_replicas_with_their_own_projections_send_one_of_each(
    platform: Platform, tmp_path: Path
) -> None:
    """The worst case: two replicas that share nothing but the bus (each its own durable and
    database). The conditional publish alone keeps one notice per hand-off."""
    other = platform.settings.model_copy(
        update={"data_dir": tmp_path / "other", "database_url": None}
    )
    await declare_platform(platform.js, other, [watchdog_consumer("watchdog-b")])
    a = await platform.start()
    b = await platform.start(other, durable="watchdog-b")
    cases = [await platform.open_case() for _ in range(4)]
    for case_id in cases:
        await platform.refer(case_id)
    await asyncio.gather(_caught_up(platform, a), _caught_up(platform, b))
    platform.clock.set(ESCALATE)  # both deadlines passed: overdue first, escalation after
    for _ in range(4):
        ticks = await asyncio.gather(a.ticker.tick(), b.ticker.tick())
        await asyncio.gather(_caught_up(platform, a), _caught_up(platform, b))
    assert ticks[0].published == ticks[1].published == []
    notices = await platform.notices()
    assert sorted((n.case_id, n.type) for n in notices) == sorted(
        (case_id, kind) for case_id in cases for kind in ("oversight.escalated", "referral.overdue")
    )


async def test_a_projection_behind_its_case_does_not_act(platform: Platform) -> None:
    replica = await platform.start()
    case_id = await platform.open_case()
    await platform.refer(case_id)
    await _caught_up(platform, replica)
    await platform.stop(replica)
    # Answered while the watchdog was away: its projection does not know yet.
    await platform.kemenpppa.publish(
        "referral.accepted",
        {"referral_id": "ref-psy"},
        case_id=case_id,
        target="kp2mi",
        time=DUE - timedelta(hours=1),
    )
    databases = Databases(platform.settings)
    try:
        ticker = watchdog_ticker(
            databases, platform.settings, platform.watchdog, clock=platform.clock
        )
        platform.clock.set(DUE + timedelta(days=1))
        tick = await ticker.tick()
    finally:
        databases.dispose()
    assert (tick.published, tick.lagging) == ([], 1)
    assert await platform.notices() == []


async def test_an_answer_after_the_overdue_notice_stops_the_escalation(platform: Platform) -> None:
    replica = await platform.start()
    case_id = await platform.open_case()
    await platform.refer(case_id)
    await _caught_up(platform, replica)
    platform.clock.set(DUE + timedelta(hours=1))
    assert len((await replica.ticker.tick()).published) == 1
    await platform.kemenpppa.publish(
        "referral.rejected",
        {"referral_id": "ref-psy", "reason": "no capacity in the region"},
        case_id=case_id,
        target="kp2mi",
        time=DUE + timedelta(hours=2),
    )
    await _caught_up(platform, replica)
    platform.clock.set(ESCALATE + timedelta(days=1))
    assert (await replica.ticker.tick()).published == []
    assert _types(await platform.notices()) == ["referral.overdue"]


async def test_an_overdue_notice_admission_finds_answered_is_nothing_to_do(
    platform: Platform, nats_client: NATS
) -> None:
    """The watchdog's projection holds the referral open while the log holds its answer
    (the race of a notice with an answer, forced: its position is moved past the answer
    without folding it). Admission refuses the notice (``no_such_request``); the watchdog
    takes that as nothing to do: no notice, the row answered, no retry at the next tick."""
    replica = await platform.start()
    case_id = await platform.open_case()
    await platform.refer(case_id)
    await _caught_up(platform, replica)
    await platform.stop(replica)
    await platform.kemenpppa.publish(
        "referral.completed",
        SAMPLES["referral.completed"] | {"referral_id": "ref-psy"},
        case_id=case_id,
        target="kp2mi",
        time=DUE - timedelta(hours=1),
    )
    settings = platform.settings
    databases = Databases(settings)
    engine, _ = databases.for_consumer("watchdog")
    with Session(engine) as session:
        tracking = session.get(Tracking, ("watchdog", settings.stream))
        assert tracking is not None
        tracking.position = await _stream_len(platform)
        session.commit()
    ensure_agency_key(settings, "admission")
    admission = AdmissionService(
        nats_client,
        platform.js,
        settings,
        verifier=Verifier(load_registry(settings)),
        signer=Signer.load(settings, "admission"),
        clock=platform.clock.now,  # the tests' logical time, days past T0
    )
    await admission.start()
    publisher = Publisher(
        platform.js,
        "watchdog",
        stream=settings.stream,
        signer=platform.watchdog.signer,
        admission=Admission(nats_client, platform.js, intake_stream(settings), wait_s=20),
    )
    try:
        ticker = watchdog_ticker(databases, settings, publisher, clock=platform.clock)
        platform.clock.set(DUE + timedelta(days=1))
        first = await ticker.tick()
        platform.clock.set(ESCALATE + timedelta(days=1))
        second = await ticker.tick()
        with Session(engine) as session:
            (row,) = load_deadlines(session)
    finally:
        await admission.stop()
        databases.dispose()
    assert (first.published, first.moot, first.failed) == ([], 1, 0)
    assert (second.published, second.moot, second.failed) == ([], 0, 0)
    assert row.status == "answered"
    assert await platform.notices() == []
