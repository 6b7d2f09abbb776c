"""Constrained field types shared by the event families."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from .agencies import is_agency_id

__all__ = [
    "AgencyId",
    "CountryCode",
    "RequestId",
    "RiskLevel",
    "Situation",
]


def _agency(value: str) -> str:
    if not is_agency_id(value):
        raise ValueError(f"{value!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)")
    return value


AgencyId = Annotated[str, AfterValidator(_agency)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]
RequestId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=re.compile(r"^[A-Za-z0-9_-]+$").pattern,
        description="id of the request this event opens or answers, chosen by the requester",
    ),
]

Situation = Literal[
    "left_behind",
    "undocumented_abroad",
    "repatriation_needed",
    "neglected",
    "trafficking_victim",
    "stateless_risk",
]
RiskLevel = Literal["low", "medium", "high", "critical"]
