"""oversight: escalation to, and review by, the child-protection commission (KPAI)."""

from __future__ import annotations

from typing import ClassVar, Literal

from .._base import EventData, personal
from .._types import RequestId
from ..registry import register

__all__ = ["OversightEscalatedV1", "OversightReviewedV1"]


@register
class OversightEscalatedV1(EventData):
    TYPE: ClassVar[Literal["oversight.escalated"]] = "oversight.escalated"
    VERSION: ClassVar[Literal[1]] = 1

    escalation_id: RequestId
    concern: Literal["trafficking", "overdue_handoff", "rights_violation", "lost_contact", "other"]
    reason: str = personal(max_length=1000, description="why; free text, treated as personal")


@register
class OversightReviewedV1(EventData):
    TYPE: ClassVar[Literal["oversight.reviewed"]] = "oversight.reviewed"
    VERSION: ClassVar[Literal[1]] = 1

    escalation_id: RequestId
    finding: Literal["handled", "action_required", "referred_to_police"]
    recommendation: str | None = personal(default=None, max_length=1000)
