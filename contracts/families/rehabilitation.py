"""rehabilitation: social rehabilitation and the hand-back to family and community."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from lintas.contracts._base import EventData, personal
from lintas.contracts._types import AgencyId, RequestId, Timestamp
from lintas.contracts.codes import INSTITUTION_PATTERN, INSTITUTIONS, InstitutionCode, code_of
from lintas.contracts.registry import register, register_upcaster
from lintas.contracts.sealed import SealedText2000, same_fields, sealed_text

__all__ = [
    "RehabilitationCompletedV1",
    "RehabilitationHandoffAcceptedV1",
    "RehabilitationHandoffOverdueV1",
    "RehabilitationHandoffRequestedV1",
    "RehabilitationHandoffRequestedV2",
    "RehabilitationHandoffRequestedV3",
    "RehabilitationProgressReportedV1",
    "RehabilitationProgressReportedV2",
    "RehabilitationReintegrationHandoffV1",
]


@register
class RehabilitationHandoffRequestedV1(EventData):
    TYPE: ClassVar[Literal["rehabilitation.handoff_requested"]] = "rehabilitation.handoff_requested"
    VERSION: ClassVar[Literal[1]] = 1

    handoff_id: RequestId
    placement: str = Field(max_length=120, description="institution, e.g. a Kemensos centre")


@register
class RehabilitationHandoffRequestedV2(EventData):
    """v2: the requester may say by when the placement must be confirmed."""

    TYPE: ClassVar[Literal["rehabilitation.handoff_requested"]] = "rehabilitation.handoff_requested"
    VERSION: ClassVar[Literal[2]] = 2

    handoff_id: RequestId
    placement: str = Field(max_length=120, description="institution, e.g. a Kemensos centre")
    due: Timestamp | None = Field(
        default=None,
        description="answer wanted by then; None: the platform's default for rehabilitation",
    )


@register_upcaster("rehabilitation.handoff_requested", 1)
def rehabilitation_handoff_requested_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named no due date: the default applies."""
    return {**data, "due": None}


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


@register
class RehabilitationProgressReportedV2(EventData):
    """v2: the summary travels sealed."""

    TYPE: ClassVar[Literal["rehabilitation.progress_reported"]] = "rehabilitation.progress_reported"
    VERSION: ClassVar[Literal[2]] = 2

    handoff_id: RequestId
    stage: Literal["intake", "in_care", "ready_for_reintegration"]
    summary: SealedText2000 | None = sealed_text(2000, default=None)


register_upcaster("rehabilitation.progress_reported", 1)(same_fields)


@register
class RehabilitationHandoffOverdueV1(EventData):
    """A rehabilitation hand-off passed its due date unanswered (sent by the platform's
    watchdog, or by the requester itself) to the institution asked."""

    TYPE: ClassVar[Literal["rehabilitation.handoff_overdue"]] = "rehabilitation.handoff_overdue"
    VERSION: ClassVar[Literal[1]] = 1

    handoff_id: RequestId
    requester: AgencyId = Field(description="the agency that asked for the hand-off")
    due: Timestamp
    escalates_at: Timestamp | None = Field(
        default=None, description="when KPAI is told if it is still unanswered; None: not said"
    )


@register
class RehabilitationHandoffRequestedV3(EventData):
    """v3: the placement is an institution's code (its name no longer travels in clear)."""

    TYPE: ClassVar[Literal["rehabilitation.handoff_requested"]] = "rehabilitation.handoff_requested"
    VERSION: ClassVar[Literal[3]] = 3
    CODED: ClassVar[frozenset[str]] = frozenset({"placement"})

    handoff_id: RequestId
    placement: InstitutionCode | None = Field(
        description="the institution's code (lintas.contracts.codes), e.g. SENTRA-32.75; "
        "null only on events upcast from v1-v2 whose placement could not be coded"
    )
    due: Timestamp | None = Field(
        default=None,
        description="answer wanted by then; None: the platform's default for rehabilitation",
    )


@register_upcaster("rehabilitation.handoff_requested", 2)
def rehabilitation_handoff_requested_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """The placement's code if the code list knows its name; else not carried forward."""
    return {
        **data,
        "placement": code_of(data.get("placement"), INSTITUTIONS, INSTITUTION_PATTERN),
    }
