"""document: civil-registration and travel documents requested and issued."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import Field

from .._base import EventData, personal
from .._types import RequestId
from ..registry import register, register_upcaster

__all__ = [
    "DocumentIssuedV1",
    "DocumentIssuedV2",
    "DocumentKind",
    "DocumentRejectedV1",
    "DocumentRequestedV1",
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

    request_id: RequestId
    kind: DocumentKind


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
