"""Simulated agency staff: what each agency's people do when something reaches them.

A pure policy, ``react(agency, event) -> reactions``. The demo runs it behind each
agency's own staff consumer and publishes the reactions through the same Publisher a
real agency system would use; nothing in lintas' consumers knows about it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from lintas.contracts import BROADCAST, Event
from lintas.contracts.families import (
    case,
    document,
    oversight,
    referral,
    rehabilitation,
    repatriation,
)
from lintas.demo.pathways import PARTNER, VILLAGE

__all__ = ["Reaction", "react"]

PLACEMENT = "SENTRA-32.75"  # Sentra Terpadu Pangudi Luhur, Bekasi (contracts.codes)


@dataclass(frozen=True, slots=True)
class Reaction:
    event_type: str
    target: str
    data: dict[str, Any] = field(default_factory=dict)


def _number(event: Event, kind: str) -> str:
    # Deterministic, obviously fake document numbers: the demo's data is invented.
    return f"DEMO-{kind.upper()}-{hashlib.sha256(event.case_id.encode()).hexdigest()[:10]}"


# Travel documents are short-lived; civil-registration documents do not expire.
_VALID_DAYS = {"splp": 30, "citizenship_confirmation": 180}


def _issue(event: Event, office: str) -> list[Reaction]:
    data = event.data
    assert isinstance(data, document.DocumentRequestedV2)
    days = _VALID_DAYS.get(data.kind)
    return [
        Reaction(
            "document.issued",
            event.source,
            {
                "request_id": data.request_id,
                "kind": data.kind,
                "number": _number(event, data.kind),
                "issuing_office": office,
                "issued_on": event.time.date().isoformat(),
                "valid_until": (event.time.date() + timedelta(days=days)).isoformat()
                if days
                else None,
            },
        )
    ]


def _kp2mi(event: Event) -> list[Reaction]:
    data = event.data
    if isinstance(data, case.CaseOpenedV4):
        first: dict[str, Reaction] = {
            "undocumented_abroad": Reaction(
                "document.requested",
                "kemlu",
                {"request_id": "doc-cit", "kind": "citizenship_confirmation"},
            ),
            "left_behind": Reaction(
                "referral.requested",
                "kemenpppa",
                {
                    "referral_id": "ref-psy",
                    "service": "psychosocial_assessment",
                    "due": (event.time + timedelta(days=7)).isoformat(),
                },
            ),
            "trafficking_victim": Reaction(
                "oversight.escalated",
                "kpai",
                {
                    "escalation_id": "esc-1",
                    "concern": "trafficking",
                    "reason": "child identified as a trafficking victim abroad",
                },
            ),
        }
        assigned = Reaction(
            "case.assigned", BROADCAST, {"owner": "kp2mi", "officer_ref": "P2MI-07"}
        )
        return [assigned, first[data.situation]] if data.situation in first else [assigned]
    if isinstance(data, document.DocumentIssuedV4):
        following = {
            "citizenship_confirmation": Reaction(
                "document.requested", "kemlu", {"request_id": "doc-splp", "kind": "splp"}
            ),
            "splp": Reaction(
                "repatriation.requested",
                "kemlu",
                {"repatriation_id": "rep-1", "from_country": "MY"},
            ),
            "nik": Reaction(
                "document.requested",
                "dukcapil",
                {"request_id": "doc-akta", "kind": "akta_kelahiran"},
            ),
            "akta_kelahiran": Reaction(
                "document.requested", "dukcapil", {"request_id": "doc-kk", "kind": "kk"}
            ),
            "kk": Reaction(
                "rehabilitation.handoff_requested",
                "kemensos",
                {"handoff_id": "rehab-1", "placement": PLACEMENT},
            ),
        }
        return [following[data.kind]] if data.kind in following else []
    if isinstance(data, repatriation.RepatriationCompletedV2):
        if data.repatriation_id == "rep-1":
            return [
                Reaction("document.requested", "dukcapil", {"request_id": "doc-nik", "kind": "nik"})
            ]
        return [
            Reaction(
                "referral.requested",
                "kemenpppa",
                {"referral_id": "ref-prot", "service": "protection_services"},
            )
        ]
    if isinstance(data, oversight.OversightReviewedV2):
        return [
            Reaction(
                "repatriation.requested",
                "kemlu",
                {"repatriation_id": "rep-2", "from_country": "SA"},
            )
        ]
    if isinstance(data, referral.ReferralCompletedV1):
        if data.referral_id == "ref-psy":
            return [
                Reaction(
                    "referral.requested",
                    "kemnaker",
                    {"referral_id": "ref-cp", "service": "community_parenting"},
                )
            ]
        if data.referral_id == "ref-cp":
            return [Reaction("case.closed", BROADCAST, {"reason": "no_longer_needed"})]
        if data.referral_id == "ref-prot":
            return [
                Reaction(
                    "rehabilitation.handoff_requested",
                    "kemensos",
                    {"handoff_id": "rehab-1", "placement": PLACEMENT},
                )
            ]
    if isinstance(data, rehabilitation.RehabilitationCompletedV1):
        return [Reaction("case.closed", BROADCAST, {"reason": "reintegrated"})]
    return []


def _return_home(event: Event, repatriation_id: str, port: str) -> list[Reaction]:
    departure = event.time.date() + timedelta(days=3)
    arrival = event.time + timedelta(days=3, hours=6)
    return [
        Reaction(
            "repatriation.scheduled",
            "kp2mi",
            {
                "repatriation_id": repatriation_id,
                "port_of_entry": port,
                "departure_on": departure.isoformat(),
            },
        ),
        Reaction(
            "repatriation.completed",
            "kp2mi",
            {
                "repatriation_id": repatriation_id,
                "port_of_entry": port,
                "arrived_at": arrival.isoformat(),
            },
        ),
    ]


def _kemlu(event: Event) -> list[Reaction]:
    data = event.data
    if isinstance(data, document.DocumentRequestedV2):
        return _issue(event, "KJRI-MYBKI")
    if isinstance(data, repatriation.RepatriationRequestedV1):
        if data.from_country == "MY":
            # Across the border only with a consent naming the partner, and only the
            # fields declared for cross-border sharing (no notes).
            return [
                Reaction(
                    "consent.recorded",
                    BROADCAST,
                    {
                        "consent_id": "consent-abroad",
                        "given_by": "parent",
                        "child_assent": True,
                        "scopes": ["services"],
                        "agencies": [PARTNER],
                    },
                ),
                Reaction(
                    "referral.requested",
                    PARTNER,
                    {"referral_id": "exit-1", "service": "exit_clearance"},
                ),
            ]
        return _return_home(event, data.repatriation_id, "IDJKT")
    if isinstance(data, referral.ReferralCompletedV1) and data.referral_id == "exit-1":
        return _return_home(event, "rep-1", "IDNNX")
    return []


def _serve(event: Event, assessed: bool = False) -> list[Reaction]:
    data = event.data
    assert isinstance(data, referral.ReferralRequestedV2)
    rid = {"referral_id": data.referral_id}
    reactions = [Reaction("referral.accepted", event.source, rid)]
    if assessed:
        needs = (
            ["community_parenting"]
            if data.service == "psychosocial_assessment"
            else [
                "protection",
                "rehabilitation",
            ]
        )
        reactions.append(
            Reaction("case.assessed", event.source, {"risk_level": "medium", "needs": needs})
        )
    reactions.append(Reaction("referral.completed", event.source, rid | {"outcome": "served"}))
    return reactions


def _kemensos(event: Event) -> list[Reaction]:
    data = event.data
    if isinstance(data, rehabilitation.RehabilitationHandoffRequestedV3):
        hid = {"handoff_id": data.handoff_id}
        return [
            Reaction("rehabilitation.handoff_accepted", event.source, hid),
            Reaction(
                "rehabilitation.progress_reported",
                event.source,
                hid | {"stage": "ready_for_reintegration"},
            ),
            Reaction(
                "rehabilitation.reintegration_handoff",
                VILLAGE,
                {"handoff_id": "reint-1", "to": "community_parenting", "village": VILLAGE},
            ),
        ]
    if isinstance(data, rehabilitation.RehabilitationCompletedV1) and data.handoff_id == "reint-1":
        return [
            Reaction(
                "rehabilitation.completed",
                "kp2mi",
                {"handoff_id": "rehab-1", "outcome": "reintegrated"},
            )
        ]
    return []


def _village(event: Event) -> list[Reaction]:
    data = event.data
    if isinstance(data, rehabilitation.RehabilitationReintegrationHandoffV1):
        hid = {"handoff_id": data.handoff_id}
        return [
            Reaction("rehabilitation.handoff_accepted", event.source, hid),
            Reaction("rehabilitation.completed", event.source, hid | {"outcome": "reintegrated"}),
        ]
    return []


def _only(
    event_type: str, then: Callable[[Event], list[Reaction]]
) -> Callable[[Event], list[Reaction]]:
    return lambda event: then(event) if event.type == event_type else []


_POLICIES: dict[str, Callable[[Event], list[Reaction]]] = {
    "kp2mi": _kp2mi,
    "kemlu": _kemlu,
    PARTNER: _only("referral.requested", _serve),
    "dukcapil": _only("document.requested", lambda e: _issue(e, "65.03")),
    "kemenpppa": _only("referral.requested", lambda e: _serve(e, assessed=True)),
    "kemnaker": _only("referral.requested", _serve),
    "kpai": _only(
        "oversight.escalated",
        lambda e: [
            Reaction(
                "oversight.reviewed",
                e.source,
                {
                    "escalation_id": getattr(e.data, "escalation_id"),  # noqa: B009
                    "finding": "action_required",
                    "recommendation": "repatriate and refer to UPTD PPA protection services",
                },
            )
        ],
    ),
    "kemensos": _kemensos,
    VILLAGE: _village,
}


def react(agency: str, event: Event) -> list[Reaction]:
    """What ``agency``'s staff publish in answer to ``event`` (addressed to them)."""
    if event.source == agency:
        return []
    policy = _POLICIES.get(agency)
    return policy(event) if policy else []
