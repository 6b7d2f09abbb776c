"""tracing: cross-border family tracing and reunification."""

from __future__ import annotations

from pydantic import Field

from .._base import EventData
from .._types import CountryCode, RequestId
from ..registry import register

__all__ = ["TracingMatchFoundV1", "TracingRequestedV1", "TracingReunifiedV1"]


@register
class TracingRequestedV1(EventData):
    TYPE = "tracing.requested"
    VERSION = 1

    tracing_id: RequestId
    countries: list[CountryCode] = Field(min_length=1)


@register
class TracingMatchFoundV1(EventData):
    TYPE = "tracing.match_found"
    VERSION = 1

    tracing_id: RequestId
    country: CountryCode


@register
class TracingReunifiedV1(EventData):
    TYPE = "tracing.reunified"
    VERSION = 1

    tracing_id: RequestId
