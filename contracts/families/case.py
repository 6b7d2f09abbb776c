"""case: a child's case is opened, owned, assessed, closed and reopened."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .._base import EventData, personal
from .._types import AgencyId, CountryCode, RiskLevel, Situation
from ..registry import register

__all__ = [
    "CaseAssessedV1",
    "CaseAssignedV1",
    "CaseClosedV1",
    "CaseOpenedV1",
    "CaseReopenedV1",
    "ChildIdentity",
]


class ChildIdentity(BaseModel):
    """Who the child is. Every field is specific personal data (UU 27/2022)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    full_name: str = personal(min_length=1, max_length=200)
    birth_date: date | None = personal(default=None)
    sex: Literal["f", "m"] | None = personal(default=None)
    mother_name: str | None = personal(default=None, max_length=200)
    father_name: str | None = personal(default=None, max_length=200)
    address: str | None = personal(default=None, max_length=500)


@register
class CaseOpenedV1(EventData):
    TYPE = "case.opened"
    VERSION = 1

    situation: Situation
    jurisdiction: CountryCode = Field(description="country where the child is now")
    location: str = Field(
        max_length=120, description="region where the child is found, e.g. 'Sabah' (not an address)"
    )
    risk_level: RiskLevel
    home_village: AgencyId | None = Field(
        default=None, description="the child's home village as an agency id (desa-<code>)"
    )
    child: ChildIdentity | None = personal(default=None)


@register
class CaseAssignedV1(EventData):
    TYPE = "case.assigned"
    VERSION = 1

    owner: AgencyId
    officer_ref: str = Field(
        max_length=64, description="pseudonymous reference of the case officer, not a name"
    )


@register
class CaseAssessedV1(EventData):
    TYPE = "case.assessed"
    VERSION = 1

    risk_level: RiskLevel
    needs: list[
        Literal[
            "documents",
            "repatriation",
            "psychosocial",
            "rehabilitation",
            "protection",
            "community_parenting",
            "family_tracing",
            "education",
            "health",
        ]
    ] = Field(min_length=1)
    summary: str | None = personal(default=None, max_length=2000)


@register
class CaseClosedV1(EventData):
    TYPE = "case.closed"
    VERSION = 1

    reason: Literal[
        "reintegrated", "reunified", "transferred", "aged_out", "no_longer_needed", "other"
    ]


@register
class CaseReopenedV1(EventData):
    TYPE = "case.reopened"
    VERSION = 1

    reason: str = Field(max_length=500)
