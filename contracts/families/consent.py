"""consent: what a parent, guardian or the child agreed to share, and with whom."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .._base import EventData, personal
from .._types import AgencyId, RequestId
from ..registry import register

__all__ = ["ConsentOverriddenV1", "ConsentRecordedV1", "ConsentScope", "ConsentWithdrawnV1"]

ConsentScope = Literal["services", "disclosure_to_agencies", "tracing", "reporting"]


@register
class ConsentRecordedV1(EventData):
    TYPE: ClassVar[Literal["consent.recorded"]] = "consent.recorded"
    VERSION: ClassVar[Literal[1]] = 1

    consent_id: RequestId
    given_by: Literal["parent", "guardian", "institution"]
    child_assent: bool
    scopes: list[ConsentScope] = Field(min_length=1)
    agencies: list[AgencyId] = Field(min_length=1, description="agencies the consent covers")


@register
class ConsentWithdrawnV1(EventData):
    TYPE: ClassVar[Literal["consent.withdrawn"]] = "consent.withdrawn"
    VERSION: ClassVar[Literal[1]] = 1

    consent_id: RequestId
    reason: str | None = personal(default=None, max_length=500)


@register
class ConsentOverriddenV1(EventData):
    TYPE: ClassVar[Literal["consent.overridden"]] = "consent.overridden"
    VERSION: ClassVar[Literal[1]] = 1

    officer_role: str = Field(max_length=120)
    legal_basis: str = Field(max_length=200, description="e.g. UU 35/2014 Pasal 59")
    reason: str = personal(max_length=1000)
    scopes: list[ConsentScope] = Field(min_length=1)
    agencies: list[AgencyId] = Field(min_length=1)
