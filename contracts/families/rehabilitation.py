"""rehabilitation: social rehabilitation and the hand-back to family and community."""

from __future__ import annotations

from typing import ClassVar, Literal

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
    TYPE: ClassVar[Literal["rehabilitation.handoff_requested"]] = "rehabilitation.handoff_requested"
    VERSION: ClassVar[Literal[1]] = 1

    handoff_id: RequestId
    placement: str = Field(max_length=120, description="institution, e.g. a Kemensos centre")


@register
class RehabilitationHandoffAcceptedV1(EventData):
    TYPE: ClassVar[Literal["rehabilitation.handoff_accepted"]] = "rehabilitation.handoff_accepted"
    VERSION: ClassVar[Literal[1]] = 1

    handoff_id: RequestId


@register
class RehabilitationProgressReportedV1(EventData):
    TYPE: ClassVar[Literal["rehabilitation.progress_reported"]] = "rehabilitation.progress_reported"
    VERSION: ClassVar[Literal[1]] = 1

    handoff_id: RequestId
    stage: Literal["intake", "in_care", "ready_for_reintegration"]
    summary: str | None = personal(default=None, max_length=2000)


@register
class RehabilitationCompletedV1(EventData):
    TYPE: ClassVar[Literal["rehabilitation.completed"]] = "rehabilitation.completed"
    VERSION: ClassVar[Literal[1]] = 1

    handoff_id: RequestId
    outcome: Literal["reintegrated", "transferred", "discontinued"]


@register
class RehabilitationReintegrationHandoffV1(EventData):
    TYPE: ClassVar[Literal["rehabilitation.reintegration_handoff"]] = (
        "rehabilitation.reintegration_handoff"
    )
    VERSION: ClassVar[Literal[1]] = 1

    handoff_id: RequestId
    to: Literal["family", "village", "community_parenting"]
    village: AgencyId | None = None
