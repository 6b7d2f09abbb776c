"""Stored events of older versions still decode, upcast and project as they should."""

from __future__ import annotations

from datetime import date

import pytest

from lintas.consumers import record as record_fold
from lintas.consumers import worklist
from lintas.contracts import InvalidEventData, decode, encode, registry
from lintas.contracts.families.case import (
    CaseOpenedV4,
    ChildIdentity,
    case_opened_v1_to_v2,
    case_opened_v3_to_v4,
)
from lintas.contracts.families.document import DocumentIssuedV4, DocumentRequestedV2
from lintas.contracts.families.oversight import OversightEscalatedV3
from lintas.contracts.families.referral import ReferralOverdueV2, ReferralRequestedV2
from lintas.contracts.families.rehabilitation import RehabilitationHandoffRequestedV3
from lintas.contracts.sealed import ALLOW_CLEAR
from tests.support.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "events"


def _stored(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def test_a_stored_v1_case_opened_reads_as_v4_with_codes() -> None:
    event = decode(_stored("case.opened.v1.sabah"))
    assert event.envelope.dataversion == 1, "the stored version is kept"
    assert isinstance(event.data, CaseOpenedV4)
    assert event.data.location.model_dump() == {
        "country": "MY",
        "subdivision": "MY-12",
        "regency": None,
    }
    assert event.data.jurisdiction.model_dump() == {"country": "MY", "responsible_office": None}
    # Published in the clear before sealing: read as it was stored, never lost.
    assert isinstance(event.data.child, ChildIdentity)
    assert event.data.child.birth_date == date(2015, 6, 1)
    assert event.data.clear_fields() == ["child"]


def test_a_place_that_cannot_be_coded_is_not_carried_forward_but_stays_in_the_log() -> None:
    # Free text may be anything, a child's name included: readers of the newest version
    # never see it. The stored event keeps it, signed and chained, as it was published.
    event = decode(_stored("case.opened.v1.free-text"))
    assert isinstance(event.data, CaseOpenedV4)
    assert event.data.location.subdivision is None
    assert "Kampung Baru" not in event.data.model_dump_json()
    assert event.envelope.data["location"] == "Kampung Baru"
    tawau = decode(_stored("case.opened.v3.tawau"))
    assert isinstance(tawau.data, CaseOpenedV4)
    assert tawau.data.location.model_dump() == {
        "country": "MY",
        "subdivision": None,
        "regency": None,
    }
    assert tawau.data.jurisdiction.responsible_office is None  # no code names that text
    assert "Tawau" not in tawau.data.model_dump_json()


def test_an_office_or_place_the_code_list_names_is_coded_by_the_upcast() -> None:
    jeddah = decode(_stored("case.opened.v2.jeddah"))
    assert isinstance(jeddah.data, CaseOpenedV4)
    assert jeddah.data.jurisdiction.responsible_office == "KJRI-SAJED"  # "KJRI Jeddah"
    assert jeddah.data.location.subdivision == "SA-02"


def test_a_stored_v1_document_issued_reads_as_v4_with_its_office_coded() -> None:
    event = decode(_stored("document.issued.v1"))
    assert isinstance(event.data, DocumentIssuedV4)
    assert event.data.number == "FIXTURE-SPLP-1"
    assert event.data.valid_until is None
    # "KJRI Kota Kinabalu" is in the code list: its code is read.
    assert (event.data.kind, event.data.issuing_office) == ("splp", "KJRI-MYBKI")


def test_a_stored_v3_document_issued_reads_its_office_code_not_its_free_text() -> None:
    event = decode(_stored("document.issued.v3"))
    assert isinstance(event.data, DocumentIssuedV4)
    assert event.data.issuing_office == "65.03"
    assert "loket" not in event.data.model_dump_json()
    uncoded = {
        "kind": "kk",
        "number": "x",
        "issuing_office": "Siti Aminah, lahir 2015-04-01",
        "issuing_office_code": "SITI-AMINAH",  # matched v3's loose pattern; no code today
        "issued_on": "2025-03-01",
    }
    upcast = registry.upcast("document.issued", 3, uncoded)
    assert upcast == {
        "kind": "kk",
        "number": "x",
        "issuing_office": None,
        "issued_on": "2025-03-01",
    }
    assert "Siti" not in str(upcast)


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
        "MY-12, MY",
    )
    assert [(d.kind, d.issuing_office, d.valid_until) for d in record.documents] == [
        ("splp", "KJRI-MYBKI", None)
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
    before_v4 = dict(upgraded)
    newest = case_opened_v3_to_v4(upgraded)
    assert upgraded == before_v4
    assert newest["location"] == {"country": "MY", "subdivision": None}
    assert newest["jurisdiction"] == {"country": "MY", "responsible_office": None}
    assert registry.upcast("case.opened", 1, original) == newest
    assert registry.upcast("referral.requested", 1, {"x": 1}) == {"x": 1}


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
    assert isinstance(opened.data, CaseOpenedV4)
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
    assert isinstance(handoff.data, RehabilitationHandoffRequestedV3)
    assert (handoff.data.handoff_id, handoff.data.due) == ("rehab-1", None)
    assert handoff.data.placement == "SENTRA-32.75"  # its name is in the code list


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


@pytest.mark.parametrize(
    ("event_type", "version", "old", "expected"),
    [
        # Codes the code list (or the value itself) gives are read; free text is not.
        ("case.assigned", 1, {"owner": "kp2mi", "officer_ref": "P2MI-07"}, "P2MI-07"),
        ("case.assigned", 1, {"owner": "kp2mi", "officer_ref": "Ibu Siti"}, None),
        ("repatriation.scheduled", 1, {"port_of_entry": "Nunukan"}, "IDNNX"),
        ("repatriation.completed", 1, {"port_of_entry": "Soekarno-Hatta"}, "IDJKT"),
        ("repatriation.completed", 1, {"port_of_entry": "rumah Siti"}, None),
        ("rehabilitation.handoff_requested", 2, {"placement": "Sentra Bogor"}, None),
    ],
)
def test_a_free_text_becomes_its_code_or_none(
    event_type: str, version: int, old: dict[str, object], expected: str | None
) -> None:
    field = next(k for k in old if k not in ("owner",))
    upcast = registry.upcast(event_type, version, dict(old))
    assert upcast[field] == expected


def test_an_older_override_and_erasure_keep_their_citations_and_drop_their_text() -> None:
    override = registry.upcast(
        "consent.overridden",
        1,
        {
            "officer_role": "Pelaksana Fungsi Pelindungan WNI, KJRI Jeddah",
            "legal_basis": "UU 35/2014 Pasal 59A; UU 21/2007 (TPPO)",
            "reason": "x",
            "scopes": ["services"],
            "agencies": ["kemensos"],
        },
    )
    assert (override["officer_role"], override["legal_basis"]) == (
        None,
        ["UU 35/2014 Pasal 59A", "UU 21/2007"],
    )
    erased = registry.upcast(
        "case.erased",
        1,
        {
            "officer_role": "data_protection_officer",
            "requested_by": "parent",
            "legal_basis": "the law",
            "reason": "Siti's mother asked",
        },
    )
    assert (erased["legal_basis"], erased["reason"]) == (None, None)
    # Read back through the newest model: null is what an upcast may give, never the wire.
    newest = registry.latest("case.erased")
    assert newest.model_validate(erased, context={ALLOW_CLEAR: True}).reason is None
    with pytest.raises(ValueError, match="must hold a code"):
        newest.model_validate(erased)
