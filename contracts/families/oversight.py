"""oversight: escalation to, and review by, the child-protection commission (KPAI)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lintas.contracts._base import EventData, personal
from lintas.contracts._types import AgencyId, RequestId, Timestamp
from lintas.contracts.registry import register, register_upcaster
from lintas.contracts.sealed import SealedText1000, same_fields, sealed_text

__all__ = [
    "Concern",
    "OverdueHandoff",
    "OversightEscalatedV1",
    "OversightEscalatedV2",
    "OversightEscalatedV3",
    "OversightReviewedV1",
    "OversightReviewedV2",
]

Concern = Literal["trafficking", "overdue_handoff", "rights_violation", "lost_contact", "other"]


@register
class OversightEscalatedV1(EventData):
    TYPE: ClassVar[Literal["oversight.escalated"]] = "oversight.escalated"
    VERSION: ClassVar[Literal[1]] = 1

    escalation_id: RequestId
    concern: Literal["trafficking", "overdue_handoff", "rights_violation", "lost_contact", "other"]
    reason: str = personal(max_length=1000, description="why; free text, treated as personal")


class OverdueHandoff(BaseModel):
    """The hand-off an escalation is about: asked of ``asked`` by ``requester``, due then."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    handoff: Literal["referral", "document", "rehabilitation"]
    request_id: RequestId
    requester: AgencyId
    asked: AgencyId
    due: Timestamp


@register
class OversightEscalatedV2(EventData):
    """v2: an escalation about an overdue hand-off names it, so KPAI's system can act on it."""

    TYPE: ClassVar[Literal["oversight.escalated"]] = "oversight.escalated"
    VERSION: ClassVar[Literal[2]] = 2

    escalation_id: RequestId
    concern: Concern
    reason: str = personal(max_length=1000, description="why; free text, treated as personal")
    overdue: OverdueHandoff | None = Field(
        default=None, description="the hand-off left unanswered (concern overdue_handoff only)"
    )

    @model_validator(mode="after")
    def _overdue_only_for_overdue_handoffs(self) -> OversightEscalatedV2:
        if self.overdue is not None and self.concern != "overdue_handoff":
            raise ValueError("overdue names a hand-off only when the concern is overdue_handoff")
        return self


@register_upcaster("oversight.escalated", 1)
def oversight_escalated_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named no hand-off, whatever the concern."""
    return {**data, "overdue": None}


@register
class OversightReviewedV1(EventData):
    TYPE: ClassVar[Literal["oversight.reviewed"]] = "oversight.reviewed"
    VERSION: ClassVar[Literal[1]] = 1

    escalation_id: RequestId
    finding: Literal["handled", "action_required", "referred_to_police"]
    recommendation: str | None = personal(default=None, max_length=1000)


@register
class OversightEscalatedV3(EventData):
    """v3: the reason travels sealed, and may be left out when ``overdue`` says it all.

    The deadline watchdog's escalations name the overdue hand-off and carry no reason, so
    no child's data at all: the watchdog holds no case's data key (docs/PRIVACY.md)."""

    TYPE: ClassVar[Literal["oversight.escalated"]] = "oversight.escalated"
    VERSION: ClassVar[Literal[3]] = 3

    escalation_id: RequestId
    concern: Concern
    reason: SealedText1000 | None = sealed_text(
        1000,
        default=None,
        description="why; free text, treated as personal; None only when overdue names "
        "the hand-off",
    )
    overdue: OverdueHandoff | None = Field(
        default=None, description="the hand-off left unanswered (concern overdue_handoff only)"
    )

    @model_validator(mode="after")
    def _overdue_only_for_overdue_handoffs(self) -> OversightEscalatedV3:
        if self.overdue is not None and self.concern != "overdue_handoff":
            raise ValueError("overdue names a hand-off only when the concern is overdue_handoff")
        if self.reason is None and self.overdue is None:
            raise ValueError("reason says why, unless overdue names the hand-off")
        return self


@register
class OversightReviewedV2(EventData):
    """v2: the recommendation travels sealed."""

    TYPE: ClassVar[Literal["oversight.reviewed"]] = "oversight.reviewed"
    VERSION: ClassVar[Literal[2]] = 2

    escalation_id: RequestId
    finding: Literal["handled", "action_required", "referred_to_police"]
    recommendation: SealedText1000 | None = sealed_text(1000, default=None)


register_upcaster("oversight.escalated", 2)(same_fields)
register_upcaster("oversight.reviewed", 1)(same_fields)
