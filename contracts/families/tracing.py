"""tracing: cross-border family tracing and reunification."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lintas.contracts._base import EventData
from lintas.contracts._types import CountryCode, RequestId
from lintas.contracts.registry import register

__all__ = ["TracingMatchFoundV1", "TracingRequestedV1", "TracingReunifiedV1"]


@register
class TracingRequestedV1(EventData):
    TYPE: ClassVar[Literal["tracing.requested"]] = "tracing.requested"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"tracing_id", "countries"})

    tracing_id: RequestId
    countries: list[CountryCode] = Field(min_length=1)


@register
class TracingMatchFoundV1(EventData):
    TYPE: ClassVar[Literal["tracing.match_found"]] = "tracing.match_found"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"tracing_id", "country"})

    tracing_id: RequestId
    country: CountryCode


@register
class TracingReunifiedV1(EventData):
    TYPE: ClassVar[Literal["tracing.reunified"]] = "tracing.reunified"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"tracing_id"})

    tracing_id: RequestId
