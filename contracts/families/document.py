"""document: civil-registration and travel documents requested and issued."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import Field

from lintas.contracts._base import EventData, personal
from lintas.contracts._types import AgencyId, RequestId, Timestamp
from lintas.contracts.codes import OFFICE_PATTERN, OFFICES, OfficeCode, code_of
from lintas.contracts.registry import register, register_upcaster
from lintas.contracts.sealed import SealedText64, SealedText500, same_fields, sealed_text

__all__ = [
    "DocumentIssuedV1",
    "DocumentIssuedV2",
    "DocumentIssuedV3",
    "DocumentIssuedV4",
    "DocumentKind",
    "DocumentOverdueV1",
    "DocumentRejectedV1",
    "DocumentRejectedV2",
    "DocumentRequestedV1",
    "DocumentRequestedV2",
]

DocumentKind = Literal[
    "nik",
    "akta_kelahiran",
    "kia",
    "kk",
    "sbpk",
    "splp",
    "citizenship_confirmation",
    "nit",
]


@register
class DocumentRequestedV1(EventData):
    TYPE: ClassVar[Literal["document.requested"]] = "document.requested"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"request_id", "kind"})

    request_id: RequestId
    kind: DocumentKind


@register
class DocumentRequestedV2(EventData):
    """v2: the requester may say by when it needs the document."""

    TYPE: ClassVar[Literal["document.requested"]] = "document.requested"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"request_id", "kind", "due"})

    request_id: RequestId
    kind: DocumentKind
    due: Timestamp | None = Field(
        default=None,
        description="answer wanted by then; None: the platform's default for documents",
    )


@register_upcaster("document.requested", 1)
def document_requested_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 named no due date: the default applies."""
    return {**data, "due": None}


@register
class DocumentIssuedV1(EventData):
    TYPE: ClassVar[Literal["document.issued"]] = "document.issued"
    VERSION: ClassVar[Literal[1]] = 1

    request_id: RequestId | None = Field(default=None, description="the request it answers")
    kind: DocumentKind
    number: str = personal(max_length=64)
    issuing_office: str = Field(max_length=120)
    issued_on: date


@register
class DocumentIssuedV2(EventData):
    """v2: adds the issuing office's code and the document's validity."""

    TYPE: ClassVar[Literal["document.issued"]] = "document.issued"
    VERSION: ClassVar[Literal[2]] = 2

    request_id: RequestId | None = Field(default=None, description="the request it answers")
    kind: DocumentKind
    number: str = personal(max_length=64)
    issuing_office: str = Field(max_length=120)
    issuing_office_code: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[A-Z0-9][A-Z0-9.-]*$",
        description="e.g. Kemendagri region code of a Disdukcapil ('65.03') or a mission's "
        "code ('KJRI-KK'); None only on events upcast from v1",
    )
    issued_on: date
    valid_until: date | None = Field(default=None, description="None: valid without end date")


@register_upcaster("document.issued", 1)
def document_issued_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 said nothing of the office code or validity: both stay unknown (None)."""
    return {**data, "issuing_office_code": None, "valid_until": None}


@register
class DocumentRejectedV1(EventData):
    TYPE: ClassVar[Literal["document.rejected"]] = "document.rejected"
    VERSION: ClassVar[Literal[1]] = 1

    request_id: RequestId
    kind: DocumentKind
    reason: str = personal(max_length=500)


@register
class DocumentIssuedV3(EventData):
    """v3: the document's number travels sealed."""

    TYPE: ClassVar[Literal["document.issued"]] = "document.issued"
    VERSION: ClassVar[Literal[3]] = 3

    request_id: RequestId | None = Field(default=None, description="the request it answers")
    kind: DocumentKind
    number: SealedText64 = sealed_text(64)
    issuing_office: str = Field(max_length=120)
    issuing_office_code: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[A-Z0-9][A-Z0-9.-]*$",
        description="e.g. Kemendagri region code of a Disdukcapil ('65.03') or a mission's "
        "code ('KJRI-KK'); None only on events upcast from v1",
    )
    issued_on: date
    valid_until: date | None = Field(default=None, description="None: valid without end date")


@register
class DocumentRejectedV2(EventData):
    """v2: the reason travels sealed."""

    TYPE: ClassVar[Literal["document.rejected"]] = "document.rejected"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"request_id", "kind"})

    request_id: RequestId
    kind: DocumentKind
    reason: SealedText500 = sealed_text(500)


register_upcaster("document.issued", 2)(same_fields)
register_upcaster("document.rejected", 1)(same_fields)


@register
class DocumentOverdueV1(EventData):
    """A document request passed its due date unanswered (sent by the platform's watchdog,
    or by the requester itself) to the office asked."""

    TYPE: ClassVar[Literal["document.overdue"]] = "document.overdue"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"request_id", "requester", "kind", "due", "escalates_at"}
    )

    request_id: RequestId
    requester: AgencyId = Field(description="the agency that requested the document")
    kind: DocumentKind
    due: Timestamp
    escalates_at: Timestamp | None = Field(
        default=None, description="when KPAI is told if it is still unanswered; None: not said"
    )


@register
class DocumentIssuedV4(EventData):
    """v4: the issuing office is a code (its name no longer travels in clear)."""

    TYPE: ClassVar[Literal["document.issued"]] = "document.issued"
    VERSION: ClassVar[Literal[4]] = 4
    CODED: ClassVar[frozenset[str]] = frozenset({"issuing_office"})

    request_id: RequestId | None = Field(default=None, description="the request it answers")
    kind: DocumentKind
    number: SealedText64 = sealed_text(64)
    issuing_office: OfficeCode | None = Field(
        description="the office's code (lintas.contracts.codes): a Disdukcapil by its "
        "Kemendagri region code ('65.03'), a mission ('KJRI-MYBKI'); null only on events "
        "upcast from v1-v3 whose office could not be coded"
    )
    issued_on: date
    valid_until: date | None = Field(default=None, description="None: valid without end date")


@register_upcaster("document.issued", 3)
def document_issued_v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """The office's code if v3 gave one that is a code today, else its name's code if the
    code list knows it; a free text that is neither is not carried forward (it may be
    anything, a child's name included: docs/CONTRACTS.md)."""
    upgraded = {k: v for k, v in data.items() if k not in ("issuing_office", "issuing_office_code")}
    upgraded["issuing_office"] = code_of(
        data.get("issuing_office_code"), {}, OFFICE_PATTERN
    ) or code_of(data.get("issuing_office"), OFFICES, OFFICE_PATTERN)
    return upgraded
