"""The CloudEvents 1.0 envelope (structured JSON mode) and the codec around it.

The whole envelope is the message body, so one exported line is one complete event.
``data`` travels as plain JSON; :func:`decode` turns it into the registered model of its
``(type, dataversion)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lintas.contracts import registry
from lintas.contracts._base import ALLOW_CLEAR, EventData
from lintas.contracts._types import Timestamp
from lintas.contracts.agencies import BROADCAST, is_agency_id
from lintas.contracts.canonical import _UNPARSED
from lintas.contracts.errors import ContractError, EnvelopeError, InvalidEventData, SubjectError
from lintas.contracts.ids import is_case_id, is_uuid7, uuid7
from lintas.contracts.subjects import subject_for

__all__ = ["Envelope", "Event", "build_data", "dataschema_uri", "decode", "encode", "make_event"]

SCHEMA_URI_PREFIX = "lintas:schemas/"


def dataschema_uri(event_type: str, version: int) -> str:
    """URI of the JSON Schema of one type and version (``contracts/schemas/<type>/v<N>.json``)."""
    return f"{SCHEMA_URI_PREFIX}{event_type}/v{version}.json"


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="UUIDv7; also the Nats-Msg-Id, so JetStream drops duplicates")
    source: str = Field(description="agency id of the publisher")
    type: str = Field(description="<family>.<action>, e.g. referral.requested")
    time: Timestamp
    subject: str = Field(description="the pseudonymous case id")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    dataversion: int = Field(ge=1)
    target: str = Field(description="agency id addressed, or 'all'")
    correlationid: str | None = None
    causationid: str | None = None
    # W3C trace context of the producer span; inside the signed, hash-chained envelope.
    traceparent: str | None = None
    tracestate: str | None = None
    prevhash: str | None = None
    keyid: str | None = None
    signature: str | None = None
    data: dict[str, Any]

    @field_validator("id", "causationid")
    @classmethod
    def _uuid7(cls, value: str | None) -> str | None:
        if value is not None and not is_uuid7(value):
            raise ValueError("must be a lowercase UUIDv7")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not is_agency_id(value):
            raise ValueError(f"{value!r} is not an agency id")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if value != BROADCAST and not is_agency_id(value):
            raise ValueError(f"{value!r} is neither an agency id nor {BROADCAST!r}")
        return value

    @field_validator("subject")
    @classmethod
    def _case(cls, value: str) -> str:
        if not is_case_id(value):
            raise ValueError(f"{value!r} is not a lintas case id")
        return value

    @model_validator(mode="after")
    def _not_self_addressed(self) -> Envelope:
        if self.source == self.target:
            raise ValueError(f"agency {self.source!r} cannot address an event to itself")
        return self

    @property
    def case_id(self) -> str:
        return self.subject

    @property
    def nats_subject(self) -> str:
        return subject_for(self.source, self.target, self.type, self.subject)


@dataclass(frozen=True, slots=True)
class Event:
    """An envelope together with its decoded, validated ``data``."""

    envelope: Envelope
    data: EventData

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def source(self) -> str:
        return self.envelope.source

    @property
    def target(self) -> str:
        return self.envelope.target

    @property
    def case_id(self) -> str:
        return self.envelope.subject

    @property
    def time(self) -> datetime:
        return self.envelope.time


_UNION_TAGS = frozenset({"sealed", "clear"})  # the branches of a sealed field's union


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if p not in _UNION_TAGS]
    if err["type"] in (
        "lintas_clear_personal",
        "lintas_uncoded",
    ):  # a model-level check naming its fields
        loc.append(str(err.get("ctx", {}).get("fields", "")).partition(",")[0])
    return ".".join(loc) or "<root>", err["msg"]


def build_data(event_type: str, fields: Mapping[str, Any] | EventData) -> EventData:
    """Validate ``fields`` against the newest version of ``event_type``: a *draft*, whose
    sealed fields may still hold plaintext (the Publisher seals them)."""
    model = registry.latest(event_type)
    if isinstance(fields, EventData):
        if type(fields) is not model:
            raise ContractError(
                f"is a {type(fields).TYPE} v{type(fields).VERSION} model; publish the newest "
                f"version, v{model.VERSION}",
                event_type=event_type,
            )
        fields = fields.model_dump()
    try:
        return model.model_validate(dict(fields), context={ALLOW_CLEAR: True})
    except ValidationError as exc:
        field, msg = _first_error(exc)
        raise InvalidEventData(
            msg, event_type=event_type, version=model.VERSION, field=field
        ) from None


def make_event(
    data: EventData,
    *,
    source: str,
    target: str,
    case_id: str,
    event_id: str | None = None,
    time: datetime | None = None,
    correlationid: str | None = None,
    causationid: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Event:
    model = type(data)
    try:
        subject_for(source, target, model.TYPE, case_id)
        envelope = Envelope(
            id=event_id or str(uuid7()),
            source=source,
            type=model.TYPE,
            time=(time or datetime.now(UTC)),
            subject=case_id,
            dataschema=dataschema_uri(model.TYPE, model.VERSION),
            dataversion=model.VERSION,
            target=target,
            correlationid=correlationid,
            causationid=causationid,
            traceparent=traceparent,
            tracestate=tracestate,
            data=data.model_dump(mode="json", exclude_none=True),
        )
    except SubjectError as exc:
        raise SubjectError(str(exc), event_type=model.TYPE, version=model.VERSION) from exc
    except ValidationError as exc:
        field, msg = _first_error(exc)
        raise EnvelopeError(
            msg, event_type=model.TYPE, version=model.VERSION, field=field
        ) from None
    return Event(envelope, data)


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_none=True).encode()


def decode(
    raw: bytes, *, subject: str | None = None, draft: bool = False, parsed: Any = _UNPARSED
) -> Event:
    """Parse and validate a message body; with ``subject``, it must match the envelope.

    ``data`` is validated against the model of the version it was published with, then
    upcast to the newest version: :attr:`Event.data` is always the newest model, while
    the envelope keeps the stored ``dataversion``. Raises a :class:`ContractError`
    subclass naming type, version and field.

    Personal fields of a version that seals them must be sealed, unless ``draft``: an
    event not yet published (an outbox row), whose plaintext the Publisher seals.

    ``parsed``: :func:`~lintas.contracts.parse_message` of ``raw``, when the caller has
    it already (it also needs it to verify and hash the message), so it is parsed once.
    """
    if parsed is _UNPARSED:
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError, TypeError) as exc:
            # ValueError covers bad UTF-8 and bad JSON; RecursionError a hostile nesting depth.
            raise EnvelopeError(f"not JSON ({exc.__class__.__name__})") from None
    elif parsed is None:
        raise EnvelopeError("not JSON")
    else:
        doc = parsed
    if not isinstance(doc, dict):
        raise EnvelopeError("the body is JSON but not an object")
    event_type = doc.get("type") if isinstance(doc.get("type"), str) else None
    version = doc.get("dataversion") if isinstance(doc.get("dataversion"), int) else None
    try:
        envelope = Envelope.model_validate(doc)
    except ValidationError as exc:
        field, msg = _first_error(exc)
        raise EnvelopeError(msg, event_type=event_type, version=version, field=field) from None
    try:
        expected_subject = envelope.nats_subject
    except SubjectError as exc:
        raise SubjectError(
            str(exc), event_type=envelope.type, version=envelope.dataversion, field="type"
        ) from exc
    model = registry.lookup(envelope.type, envelope.dataversion)
    try:
        data = model.model_validate(envelope.data, context={ALLOW_CLEAR: draft})
    except ValidationError as exc:
        field, msg = _first_error(exc)
        raise InvalidEventData(
            msg, event_type=envelope.type, version=envelope.dataversion, field=f"data.{field}"
        ) from None
    newest = registry.latest(envelope.type)
    if newest is not model:
        # The stored version validated as published; readers see only the newest.
        upgraded = registry.upcast(envelope.type, envelope.dataversion, dict(envelope.data))
        try:
            # What an older version carried in the clear stays readable as it was stored.
            data = newest.model_validate(upgraded, context={ALLOW_CLEAR: True})
        except ValidationError as exc:  # pragma: no cover - the contracts check tests this
            field, msg = _first_error(exc)
            raise InvalidEventData(
                f"upcast to v{newest.VERSION} does not validate: {msg}",
                event_type=envelope.type,
                version=envelope.dataversion,
                field=f"data.{field}",
            ) from None
    if envelope.dataschema != dataschema_uri(envelope.type, envelope.dataversion):
        raise EnvelopeError(
            "dataschema does not name this type and version",
            event_type=envelope.type,
            version=envelope.dataversion,
            field="dataschema",
        )
    if subject is not None and subject != expected_subject:
        raise EnvelopeError(
            f"published on {subject!r} but the envelope says {expected_subject!r}",
            event_type=envelope.type,
            version=envelope.dataversion,
            field="subject",
        )
    return Event(envelope, data)
