"""Constrained field types shared by the event families."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field

from lintas.contracts.agencies import is_agency_id

__all__ = [
    "AgencyId",
    "CountryCode",
    "RequestId",
    "RiskLevel",
    "Situation",
    "Timestamp",
]


def _agency(value: str) -> str:
    if not is_agency_id(value):
        raise ValueError(f"{value!r} is not an agency id (kp2mi, desa-<code>, my-jkm, ...)")
    return value


AgencyId = Annotated[str, AfterValidator(_agency)]


def _sane_time(value: datetime) -> datetime:
    # Any aware datetime must convert to UTC for storage; years near 1 or 9999 overflow
    # there and would stall a projection on an event that passed validation.
    if not 1900 <= value.year <= 2999:
        raise ValueError("must be between the years 1900 and 2999")
    value.astimezone(UTC)  # raises OverflowError (a ValueError) at the edges of the range
    return value  # the publisher's offset is kept: it is part of what was said


Timestamp = Annotated[AwareDatetime, AfterValidator(_sane_time)]
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
