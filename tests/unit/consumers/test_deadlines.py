"""The deadline fold and the watchdog's decisions, without broker or database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lintas.consumers import deadlines
from lintas.consumers.deadlines import Deadline, DeadlinePolicy, actions, apply
from lintas.contracts import build_data
from tests.support.events import CASE, T0, at, ev

POLICY = DeadlinePolicy(
    due_after={
        "referral": timedelta(days=7),
        "document": timedelta(days=14),
        "rehabilitation": timedelta(days=3),
    },
    escalate_after={
        "referral": timedelta(days=2),
        "document": timedelta(days=5),
        "rehabilitation": timedelta(days=1),
    },
)


def _fold(*events: tuple[str, dict[str, object], str, str, int]) -> Deadline | None:
    item: Deadline | None = None
    for seq, (event_type, data, source, target, minutes) in enumerate(events, start=1):
        event = ev(event_type, data, source=source, target=target, case_id=CASE, time=at(minutes))
        item = apply(item, event, seq, POLICY)
    return item


REFER = ("referral.requested", {"referral_id": "r1", "service": "shelter"}, "kp2mi", "kemensos", 0)


def test_a_request_without_due_date_gets_its_kinds_default() -> None:
    item = _fold(REFER)
    assert item is not None
    assert (item.handoff, item.asked, item.what) == ("referral", "kemensos", "shelter")
    assert item.due == T0 + timedelta(days=7)
    assert item.escalate_at == T0 + timedelta(days=9)
    document = _fold(
        ("document.requested", {"request_id": "d1", "kind": "kk"}, "kp2mi", "dukcapil", 0)
    )
    assert document is not None
    assert document.due == T0 + timedelta(days=14)


def test_a_due_date_in_the_request_wins_and_is_kept_in_utc() -> None:
    data = {"referral_id": "r1", "service": "shelter", "due": "2024-03-02T15:00:00+07:00"}
    item = _fold(("referral.requested", data, "kp2mi", "kemensos", 0))
    assert item is not None
    assert item.due == T0 + timedelta(hours=24)  # 15:00 WIB is 08:00 UTC
    assert item.due.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "answer",
    [
        ("referral.accepted", {"referral_id": "r1"}, "kemensos", "kp2mi", 5),
        ("referral.rejected", {"referral_id": "r1", "reason": "full"}, "kemensos", "kp2mi", 5),
        ("referral.completed", {"referral_id": "r1", "outcome": "served"}, "kemensos", "kp2mi", 5),
        ("referral.revoked", {"referral_id": "r1", "reason": "moved"}, "kp2mi", "kemensos", 5),
    ],
)
def test_any_answer_from_the_agency_asked_or_a_revocation_answers_it(
    answer: tuple[str, dict[str, object], str, str, int],
) -> None:
    item = _fold(REFER, answer)
    assert item is not None
    assert (item.status, item.answered_at) == ("answered", at(5))


def test_nobody_else_answers_for_the_agency_asked() -> None:
    other = ("referral.accepted", {"referral_id": "r1"}, "dukcapil", "kp2mi", 5)
    item = _fold(REFER, other)
    assert item is not None
    assert item.status == "open"


def test_untracked_handoffs_are_not_followed() -> None:
    for event_type, data in (
        ("repatriation.requested", {"repatriation_id": "p1", "from_country": "MY"}),
        ("tracing.requested", {"tracing_id": "t1", "countries": ["MY"]}),
        ("oversight.escalated", {"escalation_id": "e1", "concern": "other", "reason": "x"}),
    ):
        assert _fold((event_type, data, "kp2mi", "kemlu", 0)) is None


def test_notices_are_recorded_once_whoever_sent_them() -> None:
    overdue = {"referral_id": "r1", "requester": "kp2mi", "due": at(60).isoformat()}
    item = _fold(REFER, ("referral.overdue", overdue, "watchdog", "kemensos", 60))
    assert item is not None
    assert item.overdue_seq == 2
    again = apply(
        item,
        ev(
            "referral.overdue",
            overdue,
            source="watchdog",
            target="kemensos",
            case_id=CASE,
            time=at(61),
        ),
        3,
        POLICY,
    )
    assert again == item


def test_actions_at_a_given_time() -> None:
    item = _fold(REFER)
    assert item is not None
    assert actions([item], item.due - timedelta(seconds=1)) == []
    (due,) = actions([item], item.due)
    assert (due.kind, due.item) == ("overdue", item)
    # No escalation before the overdue notice is on the log, however late it is.
    assert [a.kind for a in actions([item], item.escalate_at + timedelta(days=9))] == ["overdue"]
    noticed = item.model_copy(update={"overdue_seq": 7})
    assert actions([noticed], noticed.escalate_at - timedelta(seconds=1)) == []
    assert [a.kind for a in actions([noticed], noticed.escalate_at)] == ["escalate"]
    escalated = noticed.model_copy(update={"escalated_seq": 9})
    assert actions([escalated], escalated.escalate_at + timedelta(days=365)) == []
    answered = item.model_copy(update={"status": "answered"})
    assert actions([answered], answered.escalate_at) == []


def test_notices_are_the_same_on_every_replica() -> None:
    item = _fold(REFER)
    assert item is not None
    first, second = deadlines.overdue_notice(item), deadlines.overdue_notice(item)
    assert first == second
    assert (first.event_type, first.target) == ("referral.overdue", "kemensos")
    build_data(first.event_type, first.data)  # a valid referral.overdue
    escalation = deadlines.escalation(item)
    assert escalation == deadlines.escalation(item)
    assert (escalation.event_type, escalation.target) == ("oversight.escalated", "kpai")
    assert escalation.event_id != first.event_id
    data = build_data(escalation.event_type, escalation.data).model_dump()
    assert data["escalation_id"] == deadlines.escalation_id(item)
    assert data["overdue"]["asked"] == "kemensos"


def test_a_closed_case_answers_what_is_still_open() -> None:
    item = _fold(REFER)
    assert item is not None
    closed = ev(
        "case.closed",
        {"reason": "reintegrated"},
        source="kp2mi",
        target="all",
        case_id=CASE,
        time=at(9),
    )
    assert deadlines.close(item, closed).status == "closed"
    answered = item.model_copy(update={"status": "answered"})
    assert deadlines.close(answered, closed) == answered
