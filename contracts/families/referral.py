"""referral: one agency asks another to provide a service for the child."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from lintas.contracts._base import EventData, personal
from lintas.contracts._types import AgencyId, RequestId, Timestamp
from lintas.contracts.registry import register, register_upcaster
from lintas.contracts.sealed import SealedText500, SealedText2000, same_fields, sealed_text

__all__ = [
    "ReferralAcceptedV1",
    "ReferralCompletedV1",
    "ReferralOverdueV1",
    "ReferralOverdueV2",
    "ReferralRejectedV1",
    "ReferralRejectedV2",
    "ReferralRequestedV1",
    "ReferralRequestedV2",
    "ReferralRevokedV1",
    "ReferralRevokedV2",
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
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"referral_id"})

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
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"referral_id", "outcome"})

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
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"referral_id", "due"})

    referral_id: RequestId
    due: Timestamp


@register
class ReferralRequestedV2(EventData):
    """v2: the notes travel sealed."""

    TYPE: ClassVar[Literal["referral.requested"]] = "referral.requested"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"referral_id", "service", "due"})

    referral_id: RequestId
    service: Service
    due: Timestamp | None = None
    notes: SealedText2000 | None = sealed_text(2000, default=None)


@register
class ReferralRejectedV2(EventData):
    """v2: the reason travels sealed."""

    TYPE: ClassVar[Literal["referral.rejected"]] = "referral.rejected"
    VERSION: ClassVar[Literal[2]] = 2

    referral_id: RequestId
    reason: SealedText500 = sealed_text(500)


@register
class ReferralRevokedV2(EventData):
    """v2: the reason travels sealed."""

    TYPE: ClassVar[Literal["referral.revoked"]] = "referral.revoked"
    VERSION: ClassVar[Literal[2]] = 2

    referral_id: RequestId
    reason: SealedText500 = sealed_text(500)


for _type in ("referral.requested", "referral.rejected", "referral.revoked"):
    register_upcaster(_type, 1)(same_fields)


@register
class ReferralOverdueV2(EventData):
    """v2: names the requester, so that someone else than the requester (the platform's
    watchdog) can say a referral is overdue, and when it is escalated to KPAI."""

    TYPE: ClassVar[Literal["referral.overdue"]] = "referral.overdue"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"referral_id", "requester", "due", "escalates_at"}
    )

    referral_id: RequestId
    requester: AgencyId | None = Field(
        default=None, description="the agency that made the referral; None: the event's source"
    )
    due: Timestamp
    escalates_at: Timestamp | None = Field(
        default=None, description="when KPAI is told if it is still unanswered; None: not said"
    )


@register_upcaster("referral.overdue", 1)
def referral_overdue_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 was sent by the requester itself and said nothing of an escalation."""
    return {**data, "requester": None, "escalates_at": None}
