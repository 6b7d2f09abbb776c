"""document: civil-registration and travel documents requested and issued."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from .._base import EventData, personal
from .._types import RequestId
from ..registry import register

__all__ = ["DocumentIssuedV1", "DocumentKind", "DocumentRejectedV1", "DocumentRequestedV1"]

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
    TYPE = "document.requested"
    VERSION = 1

    request_id: RequestId
    kind: DocumentKind


@register
class DocumentIssuedV1(EventData):
    TYPE = "document.issued"
    VERSION = 1

    request_id: RequestId | None = Field(default=None, description="the request it answers")
    kind: DocumentKind
    number: str = personal(max_length=64)
    issuing_office: str = Field(max_length=120)
    issued_on: date


@register
class DocumentRejectedV1(EventData):
    TYPE = "document.rejected"
    VERSION = 1

    request_id: RequestId
    kind: DocumentKind
    reason: str = Field(max_length=500)
