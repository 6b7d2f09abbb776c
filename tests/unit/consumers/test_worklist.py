"""An agency's worklist: pure apply(agency, item, event) -> item."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from itertools import permutations

import pytest

from lintas.consumers.worklist import WorkItem, apply, item_key
from lintas.contracts import Event
from tests.support.events import CASE, at, ev

ASKED = "kemenpppa"
REQUESTER = "kp2mi"


def requested(minutes: float = 0, referral_id: str = "ref-psy") -> Event:
    return ev(
        "referral.requested",
        {
            "referral_id": referral_id,
            "service": "psychosocial_assessment",
            "due": at(7 * 24 * 60).isoformat(),
        },
        source=REQUESTER,
        target=ASKED,
        case_id=CASE,
        time=at(minutes),
    )


def accepted(minutes: float = 10, referral_id: str = "ref-psy") -> Event:
    return ev(
        "referral.accepted",
        {"referral_id": referral_id},
        source=ASKED,
        target=REQUESTER,
        case_id=CASE,
        time=at(minutes),
    )


def completed(minutes: float = 20, referral_id: str = "ref-psy") -> Event:
    return ev(
        "referral.completed",
        {"referral_id": referral_id, "outcome": "served"},
        source=ASKED,
        target=REQUESTER,
        case_id=CASE,
        time=at(minutes),
    )


def rejected(minutes: float = 15) -> Event:
    return ev(
        "referral.rejected",
        {"referral_id": "ref-psy", "reason": "no capacity"},
        source=ASKED,
        target=REQUESTER,
        case_id=CASE,
        time=at(minutes),
    )


def revoked(minutes: float = 5) -> Event:
    return ev(
        "referral.revoked",
        {"referral_id": "ref-psy", "reason": "served elsewhere"},
        source=REQUESTER,
        target=ASKED,
        case_id=CASE,
        time=at(minutes),
    )


def overdue(minutes: float = 30) -> Event:
    return ev(
        "referral.overdue",
        {"referral_id": "ref-psy", "due": at(7 * 24 * 60).isoformat()},
        source=REQUESTER,
        target=ASKED,
        case_id=CASE,
        time=at(minutes),
    )


def fold(events: list[Event], agency: str = ASKED) -> WorkItem | None:
    return reduce(lambda item, event: apply(agency, item, event), events, None)


def test_a_request_creates_an_item() -> None:
    item = apply(ASKED, None, requested())
    assert item == WorkItem(
        agency=ASKED,
        case_id=CASE,
        requester=REQUESTER,
        request_id="ref-psy",
        handoff="referral",
        what="psychosocial_assessment",
        status="requested",
        requested_at=at(0),
        updated_at=at(0),
        due=at(7 * 24 * 60),
        overdue=False,
        last_event="referral.requested",
    )
    assert item.age_seconds(at(90)) == 90 * 60


def test_own_answers_advance_the_item() -> None:
    item = fold([requested()])
    item = apply(ASKED, item, accepted())
    assert item is not None
    assert (item.status, item.updated_at, item.last_event) == (
        "accepted",
        at(10),
        "referral.accepted",
    )
    item = apply(ASKED, item, completed())
    assert item is not None
    assert (item.status, item.updated_at, item.last_event) == (
        "completed",
        at(20),
        "referral.completed",
    )
    assert item.requested_at == at(0)
    assert item.what == "psychosocial_assessment"


def test_status_never_moves_back() -> None:
    item = fold([requested(), completed(), accepted()])
    assert item is not None
    assert item.status == "completed"
    assert item.last_event == "referral.completed"
    assert item.updated_at == at(20)


def test_an_answer_before_the_request_makes_a_partial_item() -> None:
    item = apply(ASKED, None, accepted())
    assert item is not None
    assert item.status == "accepted"
    assert item.requested_at is None
    assert item.handoff is None
    assert item.age_seconds(at(60)) is None


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_request_and_answers_converge_in_any_order(order: tuple[int, ...]) -> None:
    events = [requested(), accepted(), completed()]
    item = fold([events[i] for i in order])
    assert item is not None
    assert item.status == "completed"
    assert item.requested_at == at(0)
    assert item.updated_at == at(20)
    assert item.due == at(7 * 24 * 60)
    assert item.last_event == "referral.completed"
    assert (item.handoff, item.what) == ("referral", "psychosocial_assessment")
    assert item == fold(events)


def test_revoked_by_the_requester() -> None:
    item = fold([requested(), revoked()])
    assert item is not None
    assert item.status == "revoked"
    assert item.last_event == "referral.revoked"


def test_rejected_by_the_agency() -> None:
    item = fold([requested(), rejected()])
    assert item is not None
    assert item.status == "rejected"


def test_overdue_flags_without_changing_status() -> None:
    item = fold([requested(), accepted(), overdue()])
    assert item is not None
    assert item.overdue is True
    assert item.status == "accepted"
    assert item.due == at(7 * 24 * 60)


@pytest.mark.parametrize(("answer", "final"), [(completed, "completed"), (rejected, "rejected")])
def test_a_revoke_racing_an_answer_converges(answer: Callable[[], Event], final: str) -> None:
    # revoked reaches the worklist through the inbox consumer, the answer through the
    # agency's sent consumer: whichever runs first, what the agency did wins.
    events = [requested(0), revoked(5), answer()]
    statuses = {}
    for order in permutations(events):
        item = fold(list(order))
        assert item is not None
        statuses[tuple(e.type for e in order)] = item.status
    assert set(statuses.values()) == {final}, statuses


def test_events_of_other_agencies_leave_the_item_unchanged() -> None:
    item = fold([requested()])
    other = ev(
        "referral.requested",
        {"referral_id": "ref-cp", "service": "community_parenting"},
        source=REQUESTER,
        target="kemnaker",
        case_id=CASE,
        time=at(30),
    )
    assert apply(ASKED, item, other) is item
    assert apply(ASKED, None, other) is None
    # the requester's worklist is not fed by its own requests nor by the answers it gets
    assert apply(REQUESTER, None, requested()) is None
    assert apply(REQUESTER, None, completed()) is None


def test_non_handoff_events_leave_the_item_unchanged() -> None:
    item = fold([requested()])
    closed = ev(
        "case.closed",
        {"reason": "reintegrated"},
        source=REQUESTER,
        target="all",
        case_id=CASE,
        time=at(40),
    )
    assessed = ev(
        "case.assessed",
        {"risk_level": "low", "needs": ["education"]},
        source=ASKED,
        target=REQUESTER,
        case_id=CASE,
        time=at(12),
    )
    assert apply(ASKED, item, closed) is item
    assert apply(ASKED, item, assessed) is item
    assert apply(ASKED, None, closed) is None


def test_document_issued_without_request_is_ignored() -> None:
    issued = ev(
        "document.issued",
        {
            "kind": "kia",
            "number": "KIA-1",
            "issuing_office": "35.25",
            "issued_on": "2024-03-01",
        },
        source="dukcapil",
        target=REQUESTER,
        case_id=CASE,
        time=at(5),
    )
    assert apply("dukcapil", None, issued) is None
    assert item_key("dukcapil", issued) is None


def test_document_request_and_issue() -> None:
    request = ev(
        "document.requested",
        {"request_id": "doc-nik", "kind": "nik"},
        source=REQUESTER,
        target="dukcapil",
        case_id=CASE,
        time=at(0),
    )
    issued = ev(
        "document.issued",
        {
            "request_id": "doc-nik",
            "kind": "nik",
            "number": "3525000000000001",
            "issuing_office": "35.25",
            "issued_on": "2024-03-01",
        },
        source="dukcapil",
        target=REQUESTER,
        case_id=CASE,
        time=at(45),
    )
    item = fold([issued, request], agency="dukcapil")
    assert item is not None
    assert (item.handoff, item.what, item.status) == ("document", "nik", "completed")
    assert item.due is None
    assert item.requested_at == at(0)
    assert "3525000000000001" not in item.model_dump_json()


def test_item_key() -> None:
    assert item_key(ASKED, requested()) == (ASKED, CASE, REQUESTER, "ref-psy")
    assert item_key(ASKED, completed()) == (ASKED, CASE, REQUESTER, "ref-psy")
    assert item_key(REQUESTER, requested()) is None


def test_two_referrals_are_two_items() -> None:
    assert item_key(ASKED, requested(referral_id="ref-a")) != item_key(
        ASKED, requested(referral_id="ref-b")
    )
    first = fold([requested(referral_id="ref-a")])
    assert first is not None
    assert first.request_id == "ref-a"
