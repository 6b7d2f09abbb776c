"""Minimal valid ``data`` for every registered event type (latest version).

A type added to the registry without a sample here fails test_envelope.py. The samples
are drafts, as an agency gives them to the Publisher: personal fields in the clear.
:func:`sealed` seals them as the Publisher would, with a fixed test data key.
"""

from __future__ import annotations

from typing import Any

from lintas.contracts import EventData, build_data, latest
from lintas.infra.privacy.sealing import seal_data

TEST_KEY = bytes(range(32))
"""The data key of every case in the unit tests (a real one is random, and per case)."""
FAKE_SEALED: dict[str, Any] = {"alg": "A256GCM", "gen": 1, "iv": "A" * 16, "ct": "B" * 40}
"""The shape of a sealed value, for schema checks that never open it."""

VILLAGE = "desa-3525012001"
PARTNER = "my-jkm"

CHILD: dict[str, Any] = {
    "full_name": "Dewi Lestari",
    "birth_date": "2015-06-01",
    "sex": "f",
    "mother_name": "Sri Lestari",
    "father_name": "Budi Santoso",
    "address": "Dusun 3, RT 04",
}

SAMPLES: dict[str, dict[str, Any]] = {
    "case.opened": {
        "situation": "undocumented_abroad",
        "location": {"country": "MY", "subdivision": "MY-12"},
        "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
        "risk_level": "high",
        "home_village": VILLAGE,
        "child": CHILD,
    },
    "case.assigned": {"owner": "kp2mi", "officer_ref": "P2MI-07"},
    "case.assessed": {
        "risk_level": "medium",
        "needs": ["documents", "repatriation"],
        "summary": "speaks Bahasa Melayu, no papers",
    },
    "case.closed": {"reason": "reintegrated"},
    "case.reopened": {"reason": "family contact lost again"},
    "consent.recorded": {
        "consent_id": "consent-1",
        "given_by": "parent",
        "child_assent": True,
        "scopes": ["services", "disclosure_to_agencies"],
        "agencies": ["kp2mi", "dukcapil"],
    },
    "consent.withdrawn": {"consent_id": "consent-1", "reason": "moved"},
    "consent.overridden": {
        "officer_role": "child_protection_officer",
        "legal_basis": ["UU 35/2014 Pasal 59"],
        "reason": "immediate danger",
        "scopes": ["services"],
        "agencies": ["kemensos"],
    },
    "referral.requested": {
        "referral_id": "ref-1",
        "service": "psychosocial_assessment",
        "due": "2024-03-08T08:00:00Z",
        "notes": "child is afraid of men in uniform",
    },
    "referral.accepted": {"referral_id": "ref-1"},
    "referral.rejected": {"referral_id": "ref-1", "reason": "no capacity"},
    "referral.completed": {"referral_id": "ref-1", "outcome": "served"},
    "referral.revoked": {"referral_id": "ref-1", "reason": "served elsewhere"},
    "referral.overdue": {
        "referral_id": "ref-1",
        "requester": "kp2mi",
        "due": "2024-03-08T08:00:00Z",
        "escalates_at": "2024-03-15T08:00:00Z",
    },
    "document.requested": {
        "request_id": "doc-1",
        "kind": "akta_kelahiran",
        "due": "2024-03-15T08:00:00Z",
    },
    "document.overdue": {
        "request_id": "doc-1",
        "requester": "kp2mi",
        "kind": "akta_kelahiran",
        "due": "2024-03-15T08:00:00Z",
        "escalates_at": "2024-03-29T08:00:00Z",
    },
    "document.issued": {
        "request_id": "doc-1",
        "kind": "akta_kelahiran",
        "number": "3525-LT-01032024-0042",
        "issuing_office": "35.25",
        "issued_on": "2024-03-02",
    },
    "document.rejected": {"request_id": "doc-1", "kind": "kk", "reason": "no parent record"},
    "repatriation.requested": {"repatriation_id": "rep-1", "from_country": "MY"},
    "repatriation.scheduled": {
        "repatriation_id": "rep-1",
        "port_of_entry": "IDNNX",
        "departure_on": "2024-03-05",
    },
    "repatriation.completed": {
        "repatriation_id": "rep-1",
        "port_of_entry": "IDNNX",
        "arrived_at": "2024-03-05T14:00:00+08:00",
    },
    "repatriation.failed": {"repatriation_id": "rep-1", "reason": "exit clearance refused"},
    "rehabilitation.handoff_requested": {
        "handoff_id": "rehab-1",
        "placement": "SENTRA-32.01",
        "due": "2024-03-04T08:00:00Z",
    },
    "rehabilitation.handoff_overdue": {
        "handoff_id": "rehab-1",
        "requester": "kp2mi",
        "due": "2024-03-04T08:00:00Z",
        "escalates_at": "2024-03-07T08:00:00Z",
    },
    "rehabilitation.handoff_accepted": {"handoff_id": "rehab-1"},
    "rehabilitation.progress_reported": {
        "handoff_id": "rehab-1",
        "stage": "in_care",
        "summary": "sleeping better",
    },
    "rehabilitation.completed": {"handoff_id": "rehab-1", "outcome": "reintegrated"},
    "rehabilitation.reintegration_handoff": {
        "handoff_id": "reint-1",
        "to": "community_parenting",
        "village": VILLAGE,
    },
    "oversight.escalated": {
        "escalation_id": "esc-1",
        "concern": "overdue_handoff",
        "reason": "recruited with false papers; no protection services after two weeks",
        "overdue": {
            "handoff": "referral",
            "request_id": "ref-1",
            "requester": "kp2mi",
            "asked": "kemenpppa",
            "due": "2024-03-08T08:00:00Z",
        },
    },
    "oversight.reviewed": {
        "escalation_id": "esc-1",
        "finding": "action_required",
        "recommendation": "refer to police",
    },
    "tracing.requested": {"tracing_id": "tr-1", "countries": ["MY", "SG"]},
    "tracing.match_found": {"tracing_id": "tr-1", "country": "MY"},
    "tracing.reunified": {"tracing_id": "tr-1"},
}

SAMPLES["case.erased"] = {
    "officer_role": "data_protection_officer",
    "requested_by": "parent",
    "legal_basis": ["UU 27/2022 Pasal 8"],
    "reason": "subject_request",
}


def sealed(event_type: str, case_id: str, fields: dict[str, Any] | None = None) -> EventData:
    """``fields`` (default: the sample) as the Publisher publishes them: sealed."""
    data = build_data(event_type, SAMPLES[event_type] if fields is None else fields)
    return seal_data(data, TEST_KEY, 1, case_id=case_id)


def on_the_wire(event_type: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sample's ``data`` with each sealed field in sealed shape (not openable)."""
    data = dict(SAMPLES[event_type] if fields is None else fields)
    for name in latest(event_type).sealed_fields():
        if data.get(name) is not None:
            data[name] = FAKE_SEALED
    return data
