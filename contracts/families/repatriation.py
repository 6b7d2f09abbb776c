"""repatriation: bringing the child home, through a port of entry."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, Field

from .._base import EventData
from .._types import CountryCode, RequestId
from ..registry import register

__all__ = [
    "RepatriationCompletedV1",
    "RepatriationFailedV1",
    "RepatriationRequestedV1",
    "RepatriationScheduledV1",
]


@register
class RepatriationRequestedV1(EventData):
    TYPE = "repatriation.requested"
    VERSION = 1

    repatriation_id: RequestId
    from_country: CountryCode


@register
class RepatriationScheduledV1(EventData):
    TYPE = "repatriation.scheduled"
    VERSION = 1

    repatriation_id: RequestId
    port_of_entry: str = Field(max_length=80, description="e.g. 'Nunukan', 'Soekarno-Hatta'")
    departure_on: date


@register
class RepatriationCompletedV1(EventData):
    TYPE = "repatriation.completed"
    VERSION = 1

    repatriation_id: RequestId
    port_of_entry: str = Field(max_length=80)
    arrived_at: AwareDatetime


@register
class RepatriationFailedV1(EventData):
    TYPE = "repatriation.failed"
    VERSION = 1

    repatriation_id: RequestId
    reason: str = Field(max_length=500)
