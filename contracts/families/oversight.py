"""oversight: escalation to, and review by, the child-protection commission (KPAI)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .._base import EventData
from .._types import RequestId
from ..registry import register

__all__ = ["OversightEscalatedV1", "OversightReviewedV1"]


@register
class OversightEscalatedV1(EventData):
    TYPE = "oversight.escalated"
    VERSION = 1

    escalation_id: RequestId
    concern: Literal["trafficking", "overdue_handoff", "rights_violation", "lost_contact", "other"]
    reason: str = Field(max_length=1000, description="why, without identifying the child")


@register
class OversightReviewedV1(EventData):
    TYPE = "oversight.reviewed"
    VERSION = 1

    escalation_id: RequestId
    finding: Literal["handled", "action_required", "referred_to_police"]
    recommendation: str | None = Field(default=None, max_length=1000)
