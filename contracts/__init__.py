"""lintas.contracts: the treaty between agencies.

The CloudEvents envelope, every event family and version, the subject scheme and ids.
A leaf package: it imports only the standard library and pydantic.
"""

from lintas.contracts import families as families
from lintas.contracts._base import PERSONAL_KEY, SEALED_KEY, EventData, Sealed, personal
from lintas.contracts.agencies import (
    BROADCAST,
    NATIONAL_AGENCIES,
    PLATFORM_SERVICES,
    WATCHDOG,
    agency_name,
    is_agency_id,
)
from lintas.contracts.canonical import (
    canonical_json,
    event_hash,
    message_hash,
    parse_message,
    signing_input,
)
from lintas.contracts.envelope import (
    Envelope,
    Event,
    build_data,
    dataschema_uri,
    decode,
    encode,
    make_event,
)
from lintas.contracts.errors import (
    AuthorityRefused,
    CaseErased,
    ConsentMissing,
    ContractError,
    EnvelopeError,
    GateRefused,
    InvalidEventData,
    LintasError,
    NotForAbroad,
    PermanentError,
    SignatureError,
    SubjectError,
    TransientError,
    UnknownEventType,
    UnknownVersion,
)
from lintas.contracts.ids import derived_uuid7, is_case_id, is_uuid7, new_case_id, uuid7
from lintas.contracts.registry import all_models, latest, lookup, versions
from lintas.contracts.subjects import (
    Subject,
    case_filter,
    inbound_filters,
    outbound_filter,
    parse_subject,
    subject_for,
)

__all__ = [
    "BROADCAST",
    "NATIONAL_AGENCIES",
    "PERSONAL_KEY",
    "PLATFORM_SERVICES",
    "SEALED_KEY",
    "WATCHDOG",
    "AuthorityRefused",
    "CaseErased",
    "ConsentMissing",
    "ContractError",
    "Envelope",
    "EnvelopeError",
    "Event",
    "EventData",
    "GateRefused",
    "InvalidEventData",
    "LintasError",
    "NotForAbroad",
    "PermanentError",
    "Sealed",
    "SignatureError",
    "Subject",
    "SubjectError",
    "TransientError",
    "UnknownEventType",
    "UnknownVersion",
    "agency_name",
    "all_models",
    "build_data",
    "canonical_json",
    "case_filter",
    "dataschema_uri",
    "decode",
    "derived_uuid7",
    "encode",
    "event_hash",
    "families",
    "inbound_filters",
    "is_agency_id",
    "is_case_id",
    "is_uuid7",
    "latest",
    "lookup",
    "make_event",
    "message_hash",
    "new_case_id",
    "outbound_filter",
    "parse_message",
    "parse_subject",
    "personal",
    "signing_input",
    "subject_for",
    "uuid7",
    "versions",
]
