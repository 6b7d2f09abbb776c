"""classify(): which events open a hand-off, which answer it, and which are neither."""

from __future__ import annotations

import pytest

from lintas.contracts import Event
from lintas.contracts.handoffs import RANK, TERMINAL, Step, classify
from tests.support.events import CASE, T0, ev
from tests.support.samples import SAMPLES

# event type -> (hand-off kind, what) for the events that open a hand-off
OPENS = {
    "referral.requested": ("referral", "psychosocial_assessment", "ref-1"),
    "document.requested": ("document", "akta_kelahiran", "doc-1"),
    "repatriation.requested": ("repatriation", "repatriation", "rep-1"),
    "rehabilitation.handoff_requested": ("rehabilitation", "SENTRA-32.01", "rehab-1"),
    "rehabilitation.reintegration_handoff": ("reintegration", "community_parenting", "reint-1"),
    "oversight.escalated": ("oversight", "overdue_handoff", "esc-1"),
    "tracing.requested": ("tracing", "tracing", "tr-1"),
}

# event type -> (step kind, request id) for answers from the agency asked
ANSWERS = {
    "referral.accepted": ("accepted", "ref-1"),
    "referral.rejected": ("rejected", "ref-1"),
    "referral.completed": ("completed", "ref-1"),
    "document.issued": ("completed", "doc-1"),
    "document.rejected": ("rejected", "doc-1"),
    "repatriation.scheduled": ("accepted", "rep-1"),
    "repatriation.completed": ("completed", "rep-1"),
    "repatriation.failed": ("rejected", "rep-1"),
    "rehabilitation.handoff_accepted": ("accepted", "rehab-1"),
    "rehabilitation.progress_reported": ("progress", "rehab-1"),
    "rehabilitation.completed": ("completed", "rehab-1"),
    "oversight.reviewed": ("completed", "esc-1"),
    "tracing.match_found": ("accepted", "tr-1"),
    "tracing.reunified": ("completed", "tr-1"),
}

FROM_REQUESTER = {
    "referral.revoked": ("revoked", "ref-1"),
    "referral.overdue": ("overdue", "ref-1"),
    "document.overdue": ("overdue", "doc-1"),
    "rehabilitation.handoff_overdue": ("overdue", "rehab-1"),
}

NEITHER = sorted(set(SAMPLES) - set(OPENS) - set(ANSWERS) - set(FROM_REQUESTER))


def _sample(event_type: str, source: str, target: str) -> Event:
    return ev(event_type, SAMPLES[event_type], source=source, target=target, case_id=CASE, time=T0)


def test_the_tables_cover_every_event_type() -> None:
    assert NEITHER == [
        "case.assessed",
        "case.assigned",
        "case.closed",
        "case.erased",
        "case.opened",
        "case.reopened",
        "consent.overridden",
        "consent.recorded",
        "consent.withdrawn",
    ]


@pytest.mark.parametrize("event_type", sorted(OPENS))
def test_requests_open_a_handoff(event_type: str) -> None:
    handoff, what, request_id = OPENS[event_type]
    step = classify(_sample(event_type, "kp2mi", "kemensos"))
    assert step == Step(
        requester="kp2mi",
        request_id=request_id,
        kind="requested",
        handoff=handoff,
        what=what,
        asked="kemensos",
    )
    assert step.key == f"kp2mi/{request_id}"


@pytest.mark.parametrize("event_type", sorted(ANSWERS))
def test_answers_come_from_the_asked_to_the_requester(event_type: str) -> None:
    kind, request_id = ANSWERS[event_type]
    step = classify(_sample(event_type, "kemensos", "kp2mi"))
    assert step == Step(requester="kp2mi", request_id=request_id, kind=kind, asked="kemensos")
    assert step.handoff is None
    assert step.key == f"kp2mi/{request_id}"


@pytest.mark.parametrize("event_type", sorted(FROM_REQUESTER))
def test_revoked_and_overdue_come_from_the_requester(event_type: str) -> None:
    kind, request_id = FROM_REQUESTER[event_type]
    step = classify(_sample(event_type, "kp2mi", "kemenpppa"))
    assert step == Step(requester="kp2mi", request_id=request_id, kind=kind, asked="kemenpppa")


@pytest.mark.parametrize(
    "event_type", ["referral.overdue", "document.overdue", "rehabilitation.handoff_overdue"]
)
def test_the_watchdogs_overdue_notice_is_keyed_by_the_requester_it_names(event_type: str) -> None:
    # The samples name kp2mi as the requester; the watchdog sends them on its behalf.
    kind, request_id = FROM_REQUESTER[event_type]
    step = classify(_sample(event_type, "watchdog", "kemenpppa"))
    assert step == Step(requester="kp2mi", request_id=request_id, kind=kind, asked="kemenpppa")


def test_a_v1_referral_overdue_is_keyed_by_its_source() -> None:
    data = {"referral_id": "ref-1", "due": "2024-03-08T08:00:00Z"}
    event = ev("referral.overdue", data, source="kemlu", target="kemenpppa", case_id=CASE, time=T0)
    step = classify(event)
    assert step is not None
    assert (step.requester, step.request_id, step.kind) == ("kemlu", "ref-1", "overdue")


@pytest.mark.parametrize("event_type", NEITHER)
def test_other_events_are_not_handoffs(event_type: str) -> None:
    assert classify(_sample(event_type, "kp2mi", "kemensos")) is None


def test_a_document_issued_without_request_is_not_a_handoff() -> None:
    data = {k: v for k, v in SAMPLES["document.issued"].items() if k != "request_id"}
    event = ev("document.issued", data, source="dukcapil", target="kp2mi", case_id=CASE, time=T0)
    assert classify(event) is None


def test_request_and_answer_share_a_key() -> None:
    request = classify(_sample("document.requested", "kp2mi", "dukcapil"))
    answer = classify(_sample("document.issued", "dukcapil", "kp2mi"))
    assert request is not None
    assert answer is not None
    assert request.key == answer.key == "kp2mi/doc-1"
    assert request.asked == answer.asked == "dukcapil"


def test_same_request_id_from_two_requesters_are_two_handoffs() -> None:
    first = classify(_sample("referral.requested", "kp2mi", "kemenpppa"))
    second = classify(_sample("referral.requested", "kemlu", "kemenpppa"))
    assert first is not None
    assert second is not None
    assert first.key != second.key


def test_rank_orders_requested_accepted_and_terminal_states() -> None:
    # What the asked agency did (completed, rejected) outranks a crossing revoke.
    assert RANK["requested"] < RANK["accepted"] < RANK["revoked"]
    assert RANK["revoked"] < RANK["rejected"] < RANK["completed"]
    assert set(RANK) == {"requested", "accepted", "revoked", "rejected", "completed"}
    assert {"revoked", "rejected", "completed"} == TERMINAL
    assert all(RANK[t] > RANK["accepted"] for t in TERMINAL)


def test_events_addressed_to_everyone_are_no_handoff() -> None:
    from tests.support.events import CASE, at, ev

    for event_type, data in (
        ("referral.requested", {"referral_id": "r1", "service": "shelter"}),
        ("referral.completed", {"referral_id": "r1", "outcome": "served"}),
        ("referral.revoked", {"referral_id": "r1", "reason": "duplicate"}),
    ):
        event = ev(event_type, data, source="kp2mi", target="all", case_id=CASE, time=at(0))
        assert classify(event) is None
