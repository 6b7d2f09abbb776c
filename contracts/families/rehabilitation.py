"""rehabilitation: social rehabilitation and the hand-back to family and community."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .._base import EventData, personal
from .._types import AgencyId, RequestId
from ..registry import register

__all__ = [
    "RehabilitationCompletedV1",
    "RehabilitationHandoffAcceptedV1",
    "RehabilitationHandoffRequestedV1",
    "RehabilitationProgressReportedV1",
    "RehabilitationReintegrationHandoffV1",
]


@register
class RehabilitationHandoffRequestedV1(EventData):
    TYPE = "rehabilitation.handoff_requested"
    VERSION = 1

    handoff_id: RequestId
    placement: str = Field(max_length=120, description="institution, e.g. a Kemensos centre")


@register
class RehabilitationHandoffAcceptedV1(EventData):
    TYPE = "rehabilitation.handoff_accepted"
    VERSION = 1

    handoff_id: RequestId


@register
class RehabilitationProgressReportedV1(EventData):
    TYPE = "rehabilitation.progress_reported"
    VERSION = 1

    handoff_id: RequestId
    stage: Literal["intake", "in_care", "ready_for_reintegration"]
    summary: str | None = personal(default=None, max_length=2000)


@register
class RehabilitationCompletedV1(EventData):
    TYPE = "rehabilitation.completed"
    VERSION = 1

    handoff_id: RequestId
    outcome: Literal["reintegrated", "transferred", "discontinued"]


@register
class RehabilitationReintegrationHandoffV1(EventData):
    TYPE = "rehabilitation.reintegration_handoff"
    VERSION = 1

    handoff_id: RequestId
    to: Literal["family", "village", "community_parenting"]
    village: AgencyId | None = None
