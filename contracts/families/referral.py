"""referral: one agency asks another to provide a service for the child."""

from __future__ import annotations

from typing import ClassVar, Literal

from .._base import EventData, personal
from .._types import RequestId, Timestamp
from ..registry import register

__all__ = [
    "ReferralAcceptedV1",
    "ReferralCompletedV1",
    "ReferralOverdueV1",
    "ReferralRejectedV1",
    "ReferralRequestedV1",
    "ReferralRevokedV1",
    "Service",
]

Service = Literal[
    "psychosocial_assessment",
    "protection_services",
    "social_rehabilitation",
    "community_parenting",
    "exit_clearance",
    "shelter",
    "legal_aid",
    "health",
    "education",
]


@register
class ReferralRequestedV1(EventData):
    TYPE: ClassVar[Literal["referral.requested"]] = "referral.requested"
    VERSION: ClassVar[Literal[1]] = 1

    referral_id: RequestId
    service: Service
    due: Timestamp | None = None
    notes: str | None = personal(default=None, max_length=2000)


@register
class ReferralAcceptedV1(EventData):
    TYPE: ClassVar[Literal["referral.accepted"]] = "referral.accepted"
    VERSION: ClassVar[Literal[1]] = 1

    referral_id: RequestId


@register
class ReferralRejectedV1(EventData):
    TYPE: ClassVar[Literal["referral.rejected"]] = "referral.rejected"
    VERSION: ClassVar[Literal[1]] = 1

    referral_id: RequestId
    reason: str = personal(max_length=500)


@register
class ReferralCompletedV1(EventData):
    TYPE: ClassVar[Literal["referral.completed"]] = "referral.completed"
    VERSION: ClassVar[Literal[1]] = 1

    referral_id: RequestId
    outcome: Literal["served", "partially_served", "not_served"]


@register
class ReferralRevokedV1(EventData):
    TYPE: ClassVar[Literal["referral.revoked"]] = "referral.revoked"
    VERSION: ClassVar[Literal[1]] = 1

    referral_id: RequestId
    reason: str = personal(max_length=500)


@register
class ReferralOverdueV1(EventData):
    TYPE: ClassVar[Literal["referral.overdue"]] = "referral.overdue"
    VERSION: ClassVar[Literal[1]] = 1

    referral_id: RequestId
    due: Timestamp
