"""Stored events of older versions still decode, upcast and project as they should."""

from __future__ import annotations

from datetime import date

import pytest

from lintas.consumers import record as record_fold
from lintas.consumers import worklist
from lintas.contracts import InvalidEventData, decode, encode, registry
from lintas.contracts.families.case import CaseOpenedV3, ChildIdentity, case_opened_v1_to_v2
from lintas.contracts.families.document import DocumentIssuedV3, DocumentRequestedV2
from lintas.contracts.families.oversight import OversightEscalatedV3
from lintas.contracts.families.referral import ReferralOverdueV2, ReferralRequestedV2
from lintas.contracts.families.rehabilitation import RehabilitationHandoffRequestedV2
from tests.support.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "events"


def _stored(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def test_a_stored_v1_case_opened_reads_as_v3_with_codes() -> None:
    event = decode(_stored("case.opened.v1.sabah"))
    assert event.envelope.dataversion == 1, "the stored version is kept"
    assert isinstance(event.data, CaseOpenedV3)
    assert event.data.location.model_dump() == {
        "country": "MY",
        "subdivision": "MY-12",
        "regency": None,
        "name": "Sabah",
    }
    assert event.data.jurisdiction.model_dump() == {"country": "MY", "responsible_office": None}
    # Published in the clear before sealing: read as it was stored, never lost.
    assert isinstance(event.data.child, ChildIdentity)
    assert event.data.child.birth_date == date(2015, 6, 1)
    assert event.data.clear_fields() == ["child"]


def test_a_v1_place_that_cannot_be_coded_keeps_its_text() -> None:
    event = decode(_stored("case.opened.v1.free-text"))
    assert isinstance(event.data, CaseOpenedV3)
    assert (event.data.location.subdivision, event.data.location.name) == (None, "Kampung Baru")


def test_a_stored_v1_document_issued_reads_as_v3_with_unknowns() -> None:
    event = decode(_stored("document.issued.v1"))
    assert isinstance(event.data, DocumentIssuedV3)
    assert event.data.number == "FIXTURE-SPLP-1"
    assert (event.data.issuing_office_code, event.data.valid_until) == (None, None)
    assert (event.data.kind, event.data.issuing_office) == ("splp", "KJRI Kota Kinabalu")


def test_stored_v1_events_project_into_the_record() -> None:
    opened = decode(_stored("case.opened.v1.sabah"))
    issued = decode(_stored("document.issued.v1"))
    # The record folds an answer only after its request (the authority policy).
    asked = issued.envelope.model_copy(
        update={
            "type": "document.requested",
            "source": issued.target,
            "target": issued.source,
            "dataschema": "lintas:schemas/document.requested/v1.json",
            "data": {"request_id": "doc-splp", "kind": "splp"},
        }
    )
    requested = decode(encode(asked))
    record = record_fold.apply(record_fold.apply(None, opened, 1), requested, 2)
    record = record_fold.apply(record, issued, 3)
    assert (record.situation, record.jurisdiction, record.whereabouts) == (
        "undocumented_abroad",
        "MY",
        "Sabah, MY",
    )
    assert [(d.kind, d.issuing_office_code, d.valid_until) for d in record.documents] == [
        ("splp", None, None)
    ]
    # The record keeps where personal data was, never its value: in the clear here.
    assert [(p.type, p.field, p.state) for p in record.personal] == [
        ("case.opened", "child", "clear"),
        ("document.issued", "number", "clear"),
    ]
    assert "Fixture Child" not in record.model_dump_json()
    assert "FIXTURE-SPLP-1" not in record.model_dump_json()
    # An answer without a request on the worklist still lands, keyed by the requester.
    item = worklist.apply("kemlu", None, issued)
    assert item is not None
    assert (item.requester, item.request_id, item.status) == ("kp2mi", "doc-splp", "completed")


def test_upcasters_are_pure_and_run_in_order() -> None:
    original = {
        "situation": "neglected",
        "jurisdiction": "MY",
        "location": "Jeddah",  # a Saudi city reported in Malaysia: not coded, kept as text
        "risk_level": "low",
    }
    before = dict(original)
    upgraded = case_opened_v1_to_v2(original)
    assert original == before
    assert upgraded["location"] == {"country": "MY", "subdivision": None, "name": "Jeddah"}
    assert registry.upcast("case.opened", 1, original) == upgraded
    assert registry.upcast("case.opened", 2, {"x": 1}) == {"x": 1}


def test_a_stored_event_is_validated_against_its_own_version_first() -> None:
    broken = _stored("case.opened.v1.sabah").replace(b'"location":"Sabah"', b'"location":7')
    with pytest.raises(InvalidEventData) as caught:
        decode(broken)
    assert (caught.value.event_type, caught.value.version, caught.value.field) == (
        "case.opened",
        1,
        "data.location",
    )


def test_stored_v2_and_earlier_personal_fields_upcast_to_the_sealed_versions_unchanged() -> None:
    opened = decode(_stored("case.opened.v2.jeddah"))
    assert opened.envelope.dataversion == 2
    assert isinstance(opened.data, CaseOpenedV3)
    assert isinstance(opened.data.child, ChildIdentity)
    assert opened.data.child.full_name == "Fixture Child Two"
    referral = decode(_stored("referral.requested.v1"))
    assert isinstance(referral.data, ReferralRequestedV2)
    assert referral.data.notes == "Fixture note: afraid of the dark"
    assert registry.upcast("referral.requested", 1, {"notes": "x"}) == {"notes": "x"}


def test_plaintext_at_a_sealed_version_is_refused_even_if_an_older_one_allowed_it() -> None:
    raw = _stored("case.opened.v2.jeddah")
    forged = raw.replace(b"case.opened/v2.json", b"case.opened/v3.json").replace(
        b'"dataversion":2', b'"dataversion":3'
    )
    with pytest.raises(InvalidEventData) as caught:
        decode(forged)
    assert (caught.value.version, caught.value.field) == (3, "data.child")


def test_stored_v1_requests_read_as_v2_with_no_due_date() -> None:
    document_requested = decode(_stored("document.requested.v1"))
    assert isinstance(document_requested.data, DocumentRequestedV2)
    assert (document_requested.data.kind, document_requested.data.due) == ("nik", None)
    handoff = decode(_stored("rehabilitation.handoff_requested.v1"))
    assert isinstance(handoff.data, RehabilitationHandoffRequestedV2)
    assert (handoff.data.handoff_id, handoff.data.due) == ("rehab-1", None)


def test_a_stored_v1_referral_overdue_is_the_requesters_own_notice() -> None:
    event = decode(_stored("referral.overdue.v1"))
    assert isinstance(event.data, ReferralOverdueV2)
    assert (event.data.requester, event.data.escalates_at) == (None, None)
    # v1 came from the requester itself: the hand-off is keyed by the event's source.
    item = worklist.apply("kemenpppa", None, event)
    assert item is not None
    assert (item.requester, item.request_id, item.overdue) == ("kp2mi", "ref-psy", True)


def test_a_stored_v1_escalation_names_no_handoff() -> None:
    event = decode(_stored("oversight.escalated.v1"))
    assert isinstance(event.data, OversightEscalatedV3)
    assert (event.data.concern, event.data.overdue) == ("trafficking", None)
    # v1 -> v2 (names no hand-off) -> v3 (seals the reason): the stored reason is kept as it
    # was stored, in the clear, since it was published before the reason was sealed.
    assert isinstance(event.data.reason, str)
    assert event.data.reason


def test_a_v2_escalation_reads_as_v3_with_its_reason_and_hand_off_unchanged() -> None:
    v2 = {
        "escalation_id": "overdue-1",
        "concern": "overdue_handoff",
        "reason": "referral r-1 asked of kemensos is still unanswered",
        "overdue": {
            "handoff": "referral",
            "request_id": "r-1",
            "requester": "kp2mi",
            "asked": "kemensos",
            "due": "2025-03-08T08:00:00Z",
        },
    }
    assert registry.upcast("oversight.escalated", 2, v2) == v2
    assert registry.upcast("oversight.escalated", 1, {"reason": "x"}) == {
        "reason": "x",
        "overdue": None,
    }


def test_a_v3_escalation_needs_a_reason_unless_it_names_the_hand_off() -> None:
    from lintas.contracts import build_data

    with pytest.raises(InvalidEventData):
        build_data("oversight.escalated", {"escalation_id": "e-1", "concern": "trafficking"})
    watchdogs = build_data(
        "oversight.escalated",
        {
            "escalation_id": "overdue-1",
            "concern": "overdue_handoff",
            "overdue": {
                "handoff": "document",
                "request_id": "d-1",
                "requester": "kp2mi",
                "asked": "dukcapil",
                "due": "2025-03-08T08:00:00Z",
            },
        },
    )
    assert isinstance(watchdogs, OversightEscalatedV3)
    assert watchdogs.reason is None
    assert not watchdogs.clear_fields()
