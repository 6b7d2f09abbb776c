"""One module per event family; importing this package registers every version."""

from lintas.contracts.families import (
    case,
    consent,
    document,
    oversight,
    referral,
    rehabilitation,
    repatriation,
    tracing,
)

__all__ = [
    "case",
    "consent",
    "document",
    "oversight",
    "referral",
    "rehabilitation",
    "repatriation",
    "tracing",
]
