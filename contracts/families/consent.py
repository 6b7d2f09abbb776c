"""consent: what a parent, guardian or the child agreed to share, and with whom."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from lintas.contracts._base import EventData, personal
from lintas.contracts._types import AgencyId, RequestId
from lintas.contracts.codes import OFFICER_ROLES, LegalCitation, OfficerRole, citations_in
from lintas.contracts.registry import register, register_upcaster
from lintas.contracts.sealed import SealedText500, SealedText1000, same_fields, sealed_text

__all__ = [
    "ConsentOverriddenV1",
    "ConsentOverriddenV2",
    "ConsentOverriddenV3",
    "ConsentRecordedV1",
    "ConsentScope",
    "ConsentWithdrawnV1",
    "ConsentWithdrawnV2",
]

ConsentScope = Literal["services", "disclosure_to_agencies", "tracing", "reporting"]


@register
class ConsentRecordedV1(EventData):
    TYPE: ClassVar[Literal["consent.recorded"]] = "consent.recorded"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"consent_id", "given_by", "child_assent", "scopes", "agencies"}
    )

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


@register
class ConsentWithdrawnV2(EventData):
    """v2: the reason travels sealed, and the event names the agencies told to stop: every
    agency that received the case's data (the Publisher works it out from the log and the
    key store)."""

    TYPE: ClassVar[Literal["consent.withdrawn"]] = "consent.withdrawn"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"consent_id", "notified"})

    consent_id: RequestId
    reason: SealedText500 | None = sealed_text(500, default=None)
    notified: list[AgencyId] | None = Field(
        default=None,
        description="agencies that received the case's data and must stop processing it; "
        "None only on events upcast from v1",
    )


@register_upcaster("consent.withdrawn", 1)
def consent_withdrawn_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named nobody: who was told stays unknown (None)."""
    return {**data, "notified": None}


@register
class ConsentOverriddenV2(EventData):
    """v2: the reason travels sealed."""

    TYPE: ClassVar[Literal["consent.overridden"]] = "consent.overridden"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"officer_role", "legal_basis", "scopes", "agencies"}
    )

    officer_role: str = Field(min_length=1, max_length=120)
    legal_basis: str = Field(min_length=1, max_length=200, description="e.g. UU 35/2014 Pasal 59")
    reason: SealedText1000 = sealed_text(1000)
    scopes: list[ConsentScope] = Field(min_length=1)
    agencies: list[AgencyId] = Field(min_length=1)


register_upcaster("consent.overridden", 1)(same_fields)


@register
class ConsentOverriddenV3(EventData):
    """v3: the officer's role is a code and the legal basis citations: no free text in
    clear (the reason stays sealed)."""

    TYPE: ClassVar[Literal["consent.overridden"]] = "consent.overridden"
    VERSION: ClassVar[Literal[3]] = 3
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"officer_role", "legal_basis", "scopes", "agencies"}
    )
    CODED: ClassVar[frozenset[str]] = frozenset({"officer_role", "legal_basis"})

    officer_role: OfficerRole | None = Field(
        description="the overriding officer's role (lintas.contracts.codes.OFFICER_ROLES); "
        "null only on events upcast from v1-v2 whose role was free text"
    )
    legal_basis: list[LegalCitation] | None = Field(
        min_length=1,
        max_length=5,
        description="the provisions that allow it, e.g. ['UU 35/2014 Pasal 59A']; null only "
        "on events upcast from v1-v2 whose text held no citation",
    )
    reason: SealedText1000 = sealed_text(1000)
    scopes: list[ConsentScope] = Field(min_length=1)
    agencies: list[AgencyId] = Field(min_length=1)


def _role(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    value = text.strip()
    return value if value in OFFICER_ROLES else None


@register_upcaster("consent.overridden", 2)
def consent_overridden_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """A role that is a code and the citations a legal basis holds are kept; free text is
    not carried forward (docs/CONTRACTS.md)."""
    return {
        **data,
        "officer_role": _role(data.get("officer_role")),
        "legal_basis": citations_in(data.get("legal_basis")),
    }
