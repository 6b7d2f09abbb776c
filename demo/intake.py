"""Opening demo cases: invented children, found where each pathway begins."""

from __future__ import annotations

import random
from datetime import date

from opentelemetry.trace import SpanKind, Tracer

from lintas.contracts import BROADCAST, new_case_id
from lintas.demo.pathways import PATHWAYS, VILLAGE, Pathway
from lintas.infra.observability.tracing import AGENCY, CASE_ID
from lintas.producers import Publisher

__all__ = ["open_case", "pathway_for"]

_GIVEN = ["Ayu", "Bima", "Citra", "Dewi", "Eka", "Fajar", "Gilang", "Hana", "Intan", "Joko"]
_FAMILY = ["Saputra", "Lestari", "Wijaya", "Rahmawati", "Hidayat", "Kurniawan", "Pratama"]


def pathway_for(index: int) -> Pathway:
    return PATHWAYS[index % len(PATHWAYS)]


def _child(rng: random.Random) -> dict[str, object]:
    """An invented child: the demo never holds real personal data."""
    family = rng.choice(_FAMILY)
    return {
        "full_name": f"{rng.choice(_GIVEN)} {family}",
        "birth_date": date(
            2012 + rng.randrange(10), 1 + rng.randrange(12), 1 + rng.randrange(28)
        ).isoformat(),
        "sex": rng.choice(["f", "m"]),
        "mother_name": f"{rng.choice(_GIVEN)} {family}",
        "address": f"Dusun {rng.randrange(1, 9)}, RT {rng.randrange(1, 20):02d}",
    }


async def open_case(
    publishers: dict[str, Publisher], index: int, rng: random.Random, tracer: Tracer
) -> str:
    """Publish ``case.opened`` (the child's identity sealed) and the parent's consent, or
    the officer's override; return the new case id.

    Both within one span (the officer registering the child), so the case's trace has one
    root and every agency's work on the case hangs under it."""
    pathway = pathway_for(index)
    case_id = new_case_id()
    opener = publishers[pathway.opener]
    with tracer.start_as_current_span(
        "case intake",
        kind=SpanKind.INTERNAL,
        attributes={AGENCY: pathway.opener, CASE_ID: case_id, "lintas.pathway": pathway.situation},
        record_exception=False,  # an exception's text could quote the invented child
        set_status_on_exception=False,
    ):
        await _open(opener, pathway, case_id, rng)
    return case_id


async def _open(opener: Publisher, pathway: Pathway, case_id: str, rng: random.Random) -> None:
    await opener.publish(
        "case.opened",
        {
            "situation": pathway.situation,
            "location": {
                "country": pathway.jurisdiction,
                "subdivision": pathway.subdivision,
            },
            "jurisdiction": {
                "country": pathway.jurisdiction,
                "responsible_office": pathway.responsible_office,
            },
            "risk_level": pathway.risk_level,
            "home_village": VILLAGE,
            "child": _child(rng),
        },
        case_id=case_id,
        target="kp2mi",
    )
    # The child's data goes nowhere without a consent (or an override) naming who gets it:
    # the opener records it, which gives those agencies the case's data key.
    scopes = ["services", "disclosure_to_agencies"]
    if pathway.override is not None:
        await opener.publish(
            "consent.overridden",
            {
                "officer_role": pathway.override.officer_role,
                "legal_basis": list(pathway.override.legal_basis),
                "reason": pathway.override.reason,
                "scopes": scopes,
                "agencies": list(pathway.shared_with),
            },
            case_id=case_id,
            target=BROADCAST,
        )
    else:
        await opener.publish(
            "consent.recorded",
            {
                "consent_id": "consent-1",
                "given_by": pathway.given_by,
                "child_assent": True,
                "scopes": scopes,
                "agencies": list(pathway.shared_with),
            },
            case_id=case_id,
            target=BROADCAST,
        )
