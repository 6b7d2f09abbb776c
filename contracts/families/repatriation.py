"""repatriation: bringing the child home, through a port of entry."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import Field

from lintas.contracts._base import EventData, personal
from lintas.contracts._types import CountryCode, RequestId, Timestamp
from lintas.contracts.codes import PORT_PATTERN, PORTS, PortCode, code_of
from lintas.contracts.registry import register, register_upcaster
from lintas.contracts.sealed import SealedText500, same_fields, sealed_text

__all__ = [
    "RepatriationCompletedV1",
    "RepatriationCompletedV2",
    "RepatriationFailedV1",
    "RepatriationFailedV2",
    "RepatriationRequestedV1",
    "RepatriationScheduledV1",
    "RepatriationScheduledV2",
]


@register
class RepatriationRequestedV1(EventData):
    TYPE: ClassVar[Literal["repatriation.requested"]] = "repatriation.requested"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset({"repatriation_id", "from_country"})

    repatriation_id: RequestId
    from_country: CountryCode


@register
class RepatriationScheduledV1(EventData):
    TYPE: ClassVar[Literal["repatriation.scheduled"]] = "repatriation.scheduled"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"repatriation_id", "port_of_entry", "departure_on"}
    )

    repatriation_id: RequestId
    port_of_entry: str = Field(max_length=80, description="e.g. 'Nunukan', 'Soekarno-Hatta'")
    departure_on: date


@register
class RepatriationCompletedV1(EventData):
    TYPE: ClassVar[Literal["repatriation.completed"]] = "repatriation.completed"
    VERSION: ClassVar[Literal[1]] = 1
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"repatriation_id", "port_of_entry", "arrived_at"}
    )

    repatriation_id: RequestId
    port_of_entry: str = Field(max_length=80)
    arrived_at: Timestamp


@register
class RepatriationFailedV1(EventData):
    TYPE: ClassVar[Literal["repatriation.failed"]] = "repatriation.failed"
    VERSION: ClassVar[Literal[1]] = 1

    repatriation_id: RequestId
    reason: str = personal(max_length=500)


@register
class RepatriationFailedV2(EventData):
    """v2: the reason travels sealed."""

    TYPE: ClassVar[Literal["repatriation.failed"]] = "repatriation.failed"
    VERSION: ClassVar[Literal[2]] = 2

    repatriation_id: RequestId
    reason: SealedText500 = sealed_text(500)


register_upcaster("repatriation.failed", 1)(same_fields)


@register
class RepatriationScheduledV2(EventData):
    """v2: the port of entry is its UN/LOCODE (its name no longer travels in clear)."""

    TYPE: ClassVar[Literal["repatriation.scheduled"]] = "repatriation.scheduled"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"repatriation_id", "port_of_entry", "departure_on"}
    )
    CODED: ClassVar[frozenset[str]] = frozenset({"port_of_entry"})

    repatriation_id: RequestId
    port_of_entry: PortCode | None = Field(
        description="UN/LOCODE, e.g. IDNNX (Nunukan); null only on events upcast from v1 "
        "whose port could not be coded"
    )
    departure_on: date


@register
class RepatriationCompletedV2(EventData):
    """v2: the port of entry is its UN/LOCODE (its name no longer travels in clear)."""

    TYPE: ClassVar[Literal["repatriation.completed"]] = "repatriation.completed"
    VERSION: ClassVar[Literal[2]] = 2
    CROSS_BORDER: ClassVar[frozenset[str]] = frozenset(
        {"repatriation_id", "port_of_entry", "arrived_at"}
    )
    CODED: ClassVar[frozenset[str]] = frozenset({"port_of_entry"})

    repatriation_id: RequestId
    port_of_entry: PortCode | None = Field(
        description="UN/LOCODE, e.g. IDNNX (Nunukan); null only on events upcast from v1 "
        "whose port could not be coded"
    )
    arrived_at: Timestamp


def _port(data: dict[str, Any]) -> dict[str, Any]:
    """The port's code if the code list knows its name; else not carried forward."""
    return {**data, "port_of_entry": code_of(data.get("port_of_entry"), PORTS, PORT_PATTERN)}


register_upcaster("repatriation.scheduled", 1)(_port)
register_upcaster("repatriation.completed", 1)(_port)
