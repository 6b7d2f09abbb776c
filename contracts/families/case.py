"""case: a child's case is opened, owned, assessed, closed and reopened."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from lintas.contracts._base import EventData, Sealed, personal
from lintas.contracts._types import AgencyId, CountryCode, RiskLevel, Situation
from lintas.contracts.codes import (
    OFFICE_PATTERN,
    OFFICER_REF_PATTERN,
    OFFICES,
    ErasureReason,
    LegalCitation,
    OfficeCode,
    OfficerRef,
    citations_in,
    code_of,
)
from lintas.contracts.registry import register, register_upcaster
from lintas.contracts.sealed import (
    SealedText500,
    SealedText2000,
    same_fields,
    sealed,
    sealed_text,
    sealed_union,
)

__all__ = [
    "ERASURE_ROLES",
    "CaseAssessedV1",
    "CaseAssessedV2",
    "CaseAssignedV1",
    "CaseAssignedV2",
    "CaseClosedV1",
    "CaseErasedV1",
    "CaseErasedV2",
    "CaseOpenedV1",
    "CaseOpenedV2",
    "CaseOpenedV3",
    "CaseOpenedV4",
    "CaseReopenedV1",
    "CaseReopenedV2",
    "ChildIdentity",
    "CodedJurisdiction",
    "CodedPlace",
    "Jurisdiction",
    "Place",
    "SealedChild",
]


class ChildIdentity(BaseModel):
    """Who the child is. Every field is specific personal data (UU 27/2022)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    full_name: str = personal(min_length=1, max_length=200)
    birth_date: date | None = personal(default=None)
    sex: Literal["f", "m"] | None = personal(default=None)
    mother_name: str | None = personal(default=None, max_length=200)
    father_name: str | None = personal(default=None, max_length=200)
    address: str | None = personal(default=None, max_length=500)


@register
class CaseOpenedV1(EventData):
    TYPE: ClassVar[Literal["case.opened"]] = "case.opened"
    VERSION: ClassVar[Literal[1]] = 1

    situation: Situation
    jurisdiction: CountryCode = Field(description="country where the child is now")
    location: str = Field(
        max_length=120, description="region where the child is found, e.g. 'Sabah' (not an address)"
    )
    risk_level: RiskLevel
    home_village: AgencyId | None = Field(
        default=None, description="the child's home village as an agency id (desa-<code>)"
    )
    child: ChildIdentity | None = personal(default=None)


class Place(BaseModel):
    """Where the child is, as codes an agency's system can act on (never an address)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    country: CountryCode
    subdivision: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$",
        description="ISO 3166-2 code, e.g. MY-12 (Sabah), SA-02 (Makkah), ID-JI (Jawa Timur)",
    )
    regency: str | None = Field(
        default=None,
        pattern=r"^[0-9]{2}\.[0-9]{2}$",
        description="Kemendagri kabupaten/kota code in Indonesia, e.g. 65.03 (Nunukan)",
    )
    name: str | None = Field(
        default=None, max_length=120, description="the region's name as reported"
    )


class Jurisdiction(BaseModel):
    """Whose law applies, and which Indonesian office answers for the child there."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    country: CountryCode
    responsible_office: str | None = Field(
        default=None,
        max_length=120,
        description="e.g. 'KJRI Kota Kinabalu'; None only on events upcast from v1",
    )


@register
class CaseOpenedV2(EventData):
    """v2: the free-text location becomes codes (country, ISO 3166-2 subdivision,
    Indonesian regency) and the jurisdiction names the responsible office."""

    TYPE: ClassVar[Literal["case.opened"]] = "case.opened"
    VERSION: ClassVar[Literal[2]] = 2

    situation: Situation
    location: Place
    jurisdiction: Jurisdiction
    risk_level: RiskLevel
    home_village: AgencyId | None = Field(
        default=None, description="the child's home village as an agency id (desa-<code>)"
    )
    child: ChildIdentity | None = personal(default=None)


# Region names seen in v1 events, mapped to ISO 3166-2; anything else keeps only its name.
_SUBDIVISIONS = {
    "sabah": "MY-12",
    "sarawak": "MY-13",
    "johor": "MY-01",
    "selangor": "MY-10",
    "kuala lumpur": "MY-14",
    "penang": "MY-07",
    "jeddah": "SA-02",
    "makkah": "SA-02",
    "riyadh": "SA-01",
    "jawa timur": "ID-JI",
    "jawa tengah": "ID-JT",
    "jawa barat": "ID-JB",
    "nusa tenggara barat": "ID-NB",
    "nusa tenggara timur": "ID-NT",
    "kalimantan utara": "ID-KU",
}


@register_upcaster("case.opened", 1)
def case_opened_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Keep the v1 text as the place's name and code what can be coded."""
    upgraded = {k: v for k, v in data.items() if k not in ("location", "jurisdiction")}
    country = data["jurisdiction"]
    subdivision = _SUBDIVISIONS.get(str(data["location"]).strip().lower())
    upgraded["location"] = {
        "country": country,
        "subdivision": subdivision if subdivision and subdivision[:2] == country else None,
        "name": data["location"],
    }
    upgraded["jurisdiction"] = {"country": country}
    return upgraded


if TYPE_CHECKING:
    SealedChild = Sealed | ChildIdentity
else:
    SealedChild = sealed_union(ChildIdentity)


@register
class CaseOpenedV3(EventData):
    """v3: the child's identity travels sealed (encrypted with the case's data key)."""

    TYPE: ClassVar[Literal["case.opened"]] = "case.opened"
    VERSION: ClassVar[Literal[3]] = 3

    situation: Situation
    location: Place
    jurisdiction: Jurisdiction
    risk_level: RiskLevel
    home_village: AgencyId | None = Field(
        default=None, description="the child's home village as an agency id (desa-<code>)"
    )
    child: SealedChild | None = sealed(ChildIdentity, default=None)


register_upcaster("case.opened", 2)(same_fields)


@register
class CaseAssignedV1(EventData):
    TYPE: ClassVar[Literal["case.assigned"]] = "case.assigned"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"owner", "officer_ref"})

    owner: AgencyId
    officer_ref: str = Field(
        max_length=64, description="pseudonymous reference of the case officer, not a name"
    )


@register
class CaseAssessedV1(EventData):
    TYPE: ClassVar[Literal["case.assessed"]] = "case.assessed"
    VERSION: ClassVar[Literal[1]] = 1

    risk_level: RiskLevel
    needs: list[
        Literal[
            "documents",
            "repatriation",
            "psychosocial",
            "rehabilitation",
            "protection",
            "community_parenting",
            "family_tracing",
            "education",
            "health",
        ]
    ] = Field(min_length=1)
    summary: str | None = personal(default=None, max_length=2000)


@register
class CaseAssessedV2(EventData):
    """v2: the summary travels sealed."""

    TYPE: ClassVar[Literal["case.assessed"]] = "case.assessed"
    VERSION: ClassVar[Literal[2]] = 2

    risk_level: RiskLevel
    needs: list[
        Literal[
            "documents",
            "repatriation",
            "psychosocial",
            "rehabilitation",
            "protection",
            "community_parenting",
            "family_tracing",
            "education",
            "health",
        ]
    ] = Field(min_length=1)
    summary: SealedText2000 | None = sealed_text(2000, default=None)


register_upcaster("case.assessed", 1)(same_fields)


@register
class CaseClosedV1(EventData):
    TYPE: ClassVar[Literal["case.closed"]] = "case.closed"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"reason"})

    reason: Literal[
        "reintegrated", "reunified", "transferred", "aged_out", "no_longer_needed", "other"
    ]


@register
class CaseReopenedV1(EventData):
    TYPE: ClassVar[Literal["case.reopened"]] = "case.reopened"
    VERSION: ClassVar[Literal[1]] = 1

    reason: str = personal(max_length=500)


@register
class CaseReopenedV2(EventData):
    """v2: the reason travels sealed."""

    TYPE: ClassVar[Literal["case.reopened"]] = "case.reopened"
    VERSION: ClassVar[Literal[2]] = 2

    reason: SealedText500 = sealed_text(500)


register_upcaster("case.reopened", 1)(same_fields)

ERASURE_ROLES: Final = ("data_protection_officer",)
"""Who may erase a case's personal data: the owning agency's data protection officer
(*pejabat pelindungan data pribadi*, UU 27/2022 Pasal 53)."""


@register
class CaseErasedV1(EventData):
    """The case's personal data was erased: its data keys are destroyed everywhere they were
    kept, so every sealed field of the case is unreadable from now on (crypto-shredding).
    The events stay in the log, signed and chained, with their ciphertext. Nothing here
    may identify the child: it outlives the data it erased."""

    TYPE: ClassVar[Literal["case.erased"]] = "case.erased"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"officer_role", "requested_by", "legal_basis", "reason"}
    )

    officer_role: Literal["data_protection_officer"] = Field(
        description="the role of the officer who erased it (only this role may)"
    )
    requested_by: Literal["data_subject", "parent", "guardian", "court", "retention_ended"] = Field(
        description="whose right or which rule the erasure answers"
    )
    legal_basis: str = Field(min_length=1, max_length=200, description="e.g. 'UU 27/2022 Pasal 8'")
    reason: str = Field(
        min_length=1,
        max_length=500,
        description="why, for the audit trail; kept after erasure, so never the child's data",
    )


class CodedPlace(BaseModel):
    """Where the child is, as codes only: no name of a place travels in clear."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    country: CountryCode
    subdivision: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$",
        description="ISO 3166-2 code, e.g. MY-12 (Sabah), SA-02 (Makkah), ID-JI (Jawa Timur)",
    )
    regency: str | None = Field(
        default=None,
        pattern=r"^[0-9]{2}\.[0-9]{2}$",
        description="Kemendagri kabupaten/kota code in Indonesia, e.g. 65.03 (Nunukan)",
    )


class CodedJurisdiction(BaseModel):
    """Whose law applies, and the code of the Indonesian office that answers for the child."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    country: CountryCode
    responsible_office: OfficeCode | None = Field(
        default=None,
        description="the office's code (lintas.contracts.codes), e.g. KJRI-MYBKI (KJRI Kota "
        "Kinabalu); None: not named, or named in free text by an older version",
    )


@register
class CaseOpenedV4(EventData):
    """v4: no free text in clear. The place is codes only (a region's name no longer
    travels), and the responsible office is a code."""

    TYPE: ClassVar[Literal["case.opened"]] = "case.opened"
    VERSION: ClassVar[Literal[4]] = 4

    situation: Situation
    location: CodedPlace
    jurisdiction: CodedJurisdiction
    risk_level: RiskLevel
    home_village: AgencyId | None = Field(
        default=None, description="the child's home village as an agency id (desa-<code>)"
    )
    child: SealedChild | None = sealed(ChildIdentity, default=None)


@register_upcaster("case.opened", 3)
def case_opened_v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Code what can be coded; a region's or office's name that is no code is not carried
    forward (it may be anything, a child's name included: docs/CONTRACTS.md)."""
    location = dict(data["location"])
    name = location.pop("name", None)
    if location.get("subdivision") is None and isinstance(name, str):
        subdivision = _SUBDIVISIONS.get(name.strip().lower())
        if subdivision and subdivision[:2] == location["country"]:
            location["subdivision"] = subdivision
    jurisdiction = dict(data["jurisdiction"])
    jurisdiction["responsible_office"] = code_of(
        jurisdiction.get("responsible_office"), OFFICES, OFFICE_PATTERN
    )
    return {**data, "location": location, "jurisdiction": jurisdiction}


@register
class CaseAssignedV2(EventData):
    """v2: the officer's reference is a unit prefix and a number, never a name."""

    TYPE: ClassVar[Literal["case.assigned"]] = "case.assigned"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"owner", "officer_ref"})

    owner: AgencyId
    officer_ref: OfficerRef | None = Field(
        default=None,
        description="None: not named, or named by an older version in a form that is no reference",
    )


@register_upcaster("case.assigned", 1)
def case_assigned_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """A v1 reference that is no ``OfficerRef`` is not carried forward (it may be a name)."""
    return {**data, "officer_ref": code_of(data.get("officer_ref"), {}, OFFICER_REF_PATTERN)}


@register
class CaseErasedV2(EventData):
    """v2: the legal basis is citations and the reason a code. Nothing free travels in
    clear: this event outlives the data it erased, so it can never be sealed."""

    TYPE: ClassVar[Literal["case.erased"]] = "case.erased"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"officer_role", "requested_by", "legal_basis", "reason"}
    )
    CODED: ClassVar[frozenset[str]] = frozenset({"legal_basis", "reason"})

    officer_role: Literal["data_protection_officer"] = Field(
        description="the role of the officer who erased it (only this role may)"
    )
    requested_by: Literal["data_subject", "parent", "guardian", "court", "retention_ended"] = Field(
        description="whose right or which rule the erasure answers"
    )
    legal_basis: list[LegalCitation] | None = Field(
        min_length=1,
        max_length=5,
        description="the provisions it answers, e.g. ['UU 27/2022 Pasal 43']; null only on "
        "events upcast from v1 whose text held no citation",
    )
    reason: ErasureReason | None = Field(
        description="why, as a code (lintas.contracts.codes.ERASURE_REASONS); null only on "
        "events upcast from v1, whose reason was free text"
    )


@register_upcaster("case.erased", 1)
def case_erased_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """The citations a v1 legal basis holds are kept; its free-text reason is not carried
    forward (it outlives the erasure, and nothing checked that it named no child)."""
    return {**data, "legal_basis": citations_in(data.get("legal_basis")), "reason": None}
