"""Stored events of older versions still decode, upcast and project as they should."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from lintas.consumers import record as record_fold
from lintas.consumers import worklist
from lintas.contracts import InvalidEventData, decode, registry
from lintas.contracts.families.case import CaseOpenedV2, case_opened_v1_to_v2
from lintas.contracts.families.document import DocumentIssuedV2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def _stored(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes().strip()


def test_a_stored_v1_case_opened_reads_as_v2_with_codes() -> None:
    event = decode(_stored("case.opened.v1.sabah"))
    assert event.envelope.dataversion == 1, "the stored version is kept"
    assert isinstance(event.data, CaseOpenedV2)
    assert event.data.location.model_dump() == {
        "country": "MY",
        "subdivision": "MY-12",
        "regency": None,
        "name": "Sabah",
    }
    assert event.data.jurisdiction.model_dump() == {"country": "MY", "responsible_office": None}
    assert event.data.child is not None
    assert event.data.child.birth_date == date(2015, 6, 1)


def test_a_v1_place_that_cannot_be_coded_keeps_its_text() -> None:
    event = decode(_stored("case.opened.v1.free-text"))
    assert isinstance(event.data, CaseOpenedV2)
    assert (event.data.location.subdivision, event.data.location.name) == (None, "Kampung Baru")


def test_a_stored_v1_document_issued_reads_as_v2_with_unknowns() -> None:
    event = decode(_stored("document.issued.v1"))
    assert isinstance(event.data, DocumentIssuedV2)
    assert (event.data.issuing_office_code, event.data.valid_until) == (None, None)
    assert (event.data.kind, event.data.issuing_office) == ("splp", "KJRI Kota Kinabalu")


def test_stored_v1_events_project_into_the_record() -> None:
    opened = decode(_stored("case.opened.v1.sabah"))
    issued = decode(_stored("document.issued.v1"))
    record = record_fold.apply(record_fold.apply(None, opened, 1), issued, 2)
    assert (record.situation, record.jurisdiction, record.whereabouts) == (
        "undocumented_abroad",
        "MY",
        "Sabah, MY",
    )
    assert [(d.kind, d.issuing_office_code, d.valid_until) for d in record.documents] == [
        ("splp", None, None)
    ]
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
