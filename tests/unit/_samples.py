"""Minimal valid ``data`` for every registered event type (latest version).

A type added to the registry without a sample here fails test_envelope.py.
"""

from __future__ import annotations

from typing import Any

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
        "location": {"country": "MY", "subdivision": "MY-12", "name": "Sabah"},
        "jurisdiction": {"country": "MY", "responsible_office": "KJRI Kota Kinabalu"},
        "risk_level": "high",
        "home_village": VILLAGE,
        "child": CHILD,
    },
    "case.assigned": {"owner": "kp2mi", "officer_ref": "P2MI-OFC-07"},
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
        "officer_role": "UPTD PPA head",
        "legal_basis": "UU 35/2014 Pasal 59",
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
    "referral.overdue": {"referral_id": "ref-1", "due": "2024-03-08T08:00:00Z"},
    "document.requested": {"request_id": "doc-1", "kind": "akta_kelahiran"},
    "document.issued": {
        "request_id": "doc-1",
        "kind": "akta_kelahiran",
        "number": "3525-LT-01032024-0042",
        "issuing_office": "Disdukcapil Kabupaten Gresik",
        "issued_on": "2024-03-02",
    },
    "document.rejected": {"request_id": "doc-1", "kind": "kk", "reason": "no parent record"},
    "repatriation.requested": {"repatriation_id": "rep-1", "from_country": "MY"},
    "repatriation.scheduled": {
        "repatriation_id": "rep-1",
        "port_of_entry": "Nunukan",
        "departure_on": "2024-03-05",
    },
    "repatriation.completed": {
        "repatriation_id": "rep-1",
        "port_of_entry": "Nunukan",
        "arrived_at": "2024-03-05T14:00:00+08:00",
    },
    "repatriation.failed": {"repatriation_id": "rep-1", "reason": "exit clearance refused"},
    "rehabilitation.handoff_requested": {"handoff_id": "rehab-1", "placement": "Sentra Bogor"},
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
        "concern": "trafficking",
        "reason": "recruited with false papers",
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
