"""Opening demo cases: invented children, found where each pathway begins."""

from __future__ import annotations

import random
from datetime import date

from lintas.contracts import BROADCAST, new_case_id
from lintas.producers import Publisher

from .pathways import PATHWAYS, VILLAGE, Pathway, agencies

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


async def open_case(publishers: dict[str, Publisher], index: int, rng: random.Random) -> str:
    """Publish ``case.opened`` and the guardian's consent; return the new case id."""
    pathway = pathway_for(index)
    case_id = new_case_id()
    opener = publishers[pathway.opener]
    await opener.publish(
        "case.opened",
        {
            "situation": pathway.situation,
            "location": {
                "country": pathway.jurisdiction,
                "subdivision": pathway.subdivision,
                "name": pathway.location,
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
    await opener.publish(
        "consent.recorded",
        {
            "consent_id": "consent-1",
            "given_by": "parent" if pathway.situation == "left_behind" else "institution",
            "child_assent": True,
            "scopes": ["services", "disclosure_to_agencies"],
            "agencies": [a for a in agencies() if a != pathway.opener],
        },
        case_id=case_id,
        target=BROADCAST,
    )
    return case_id
