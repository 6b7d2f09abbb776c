"""Outbox.add without a database: what it validates, and what it puts in the session.

An unbound ``Session`` holds added objects without ever touching a database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import Session

from lintas.contracts import (
    ContractError,
    InvalidEventData,
    SubjectError,
    UnknownEventType,
    decode,
    new_case_id,
    uuid7,
)
from lintas.producers import Outbox, OutboxRecord, OutboxRelay

REFERRAL = {"referral_id": "ref-1", "service": "psychosocial_assessment"}
CONSENT = {
    "consent_id": "consent-1",
    "given_by": "parent",
    "child_assent": True,
    "scopes": ["services"],
    "agencies": ["kemensos"],
}
ASSIGNMENT = {"owner": "kemensos", "officer_ref": "OFF-2"}
ERASURE = {
    "officer_role": "data_protection_officer",
    "requested_by": "parent",
    "legal_basis": ["UU 27/2022 Pasal 8"],
    "reason": "subject_request",
}
T = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _records(session: Session) -> list[OutboxRecord]:
    return [obj for obj in session.new if isinstance(obj, OutboxRecord)]


def test_add_puts_the_encoded_envelope_in_the_session_without_committing() -> None:
    case_id = new_case_id()
    with Session() as session:
        event = Outbox("kp2mi").add(
            session, "referral.requested", REFERRAL, case_id=case_id, target="kemenpppa", time=T
        )
        [record] = _records(session)
    assert record.id == event.id
    assert record.agency == "kp2mi"
    assert record.subject == f"lintas.kp2mi.kemenpppa.referral.requested.{case_id}"
    assert record.sent_at is None
    assert record.stream_seq is None
    assert record.attempts == 0
    assert record.position is None  # the database assigns it at insert
    # Exactly what the relay will publish: it decodes, on its subject, to the same event.
    again = decode(record.body.encode(), subject=record.subject)
    assert again.envelope == event.envelope
    assert again.time == T
    assert json.loads(record.body)["data"] == REFERRAL


def test_add_links_a_reaction_to_its_cause_like_the_publisher() -> None:
    case_id = new_case_id()
    event_id = str(uuid7())
    with Session() as session:
        cause = Outbox("kp2mi").add(
            session, "referral.requested", REFERRAL, case_id=case_id, target="kemenpppa"
        )
        reaction = Outbox("kemenpppa").add(
            session,
            "referral.accepted",
            {"referral_id": "ref-1"},
            case_id=case_id,
            target="kp2mi",
            caused_by=cause,
            event_id=event_id,
        )
        assert {r.id for r in _records(session)} == {cause.id, reaction.id}
    assert reaction.id == event_id
    assert reaction.envelope.causationid == cause.id
    assert reaction.envelope.correlationid == cause.id


@pytest.mark.parametrize(
    ("event_type", "data", "target", "error", "words"),
    [
        (
            "referral.requested",
            {"referral_id": "r", "service": "massage"},
            "kemenpppa",
            InvalidEventData,
            ["referral.requested v2", "'service'"],
        ),
        (
            "referral.requested",
            {"service": "psychosocial_assessment"},
            "kemenpppa",
            InvalidEventData,
            ["referral.requested v2", "'referral_id'"],
        ),
        ("referral.teleported", REFERRAL, "kemenpppa", UnknownEventType, ["referral.teleported"]),
        ("referral.requested", REFERRAL, "kp2mi", ContractError, ["referral.requested", "itself"]),
        ("referral.requested", REFERRAL, "Not An Agency", ContractError, ["referral.requested"]),
        # Every gate needs these: a row addressed to one agency could never be relayed, and
        # would hold every row after it.
        ("consent.recorded", CONSENT, "kemensos", ContractError, ["'target'", "'all'"]),
        ("case.erased", ERASURE, "kemensos", ContractError, ["case.erased", "'all'"]),
        ("case.assigned", ASSIGNMENT, "kemensos", ContractError, ["case.assigned"]),
    ],
)
def test_bad_input_names_type_and_field_and_adds_nothing(
    event_type: str,
    data: dict[str, str],
    target: str,
    error: type[ContractError],
    words: list[str],
) -> None:
    with Session() as session:
        with pytest.raises(error) as raised:
            Outbox("kp2mi").add(session, event_type, data, case_id=new_case_id(), target=target)
        assert not session.new
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("consent.recorded", CONSENT),
        ("case.erased", ERASURE),
        ("case.assigned", ASSIGNMENT),
    ],
)
def test_what_every_gate_needs_is_added_when_addressed_to_all(
    event_type: str, data: dict[str, object]
) -> None:
    with Session() as session:
        event = Outbox("kp2mi").add(session, event_type, data, case_id=new_case_id(), target="all")
        [record] = _records(session)
    assert record.subject.split(".")[2] == "all"
    assert event.type == event_type


def test_a_case_id_that_is_not_one_adds_nothing() -> None:
    with Session() as session:
        with pytest.raises(ContractError) as raised:
            Outbox("kp2mi").add(
                session, "referral.requested", REFERRAL, case_id="child-x", target="kemenpppa"
            )
        assert not session.new
    assert "referral.requested" in str(raised.value)


def test_an_outbox_for_no_agency_is_refused_at_once() -> None:
    with pytest.raises(SubjectError):
        Outbox("Kemensos!")


def test_relay_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    relay = OutboxRelay(None, None, min_backoff_s=1.0, max_backoff_s=8.0)  # type: ignore[arg-type]
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (500, 8.0)]:
        for _ in range(20):
            assert ceiling / 2 <= relay._backoff(failures) <= ceiling


def test_relay_wake_before_it_runs_is_harmless() -> None:
    relay = OutboxRelay(None, None)  # type: ignore[arg-type]
    relay.wake()


def test_relay_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="batch"):
        OutboxRelay(None, None, batch=0)  # type: ignore[arg-type]
