"""What the Publisher and the outbox relay share: building an event, putting bytes on
JetStream, and naming what went wrong.

Errors::

    ContractError       (from building) the event breaks its contract; nothing published
    PublishRejected     JetStream refused it (e.g. another stream owns the subject): permanent
    BusUnavailable      no answer, no stream listening yet, connection down: retry later
    └── NatsClientClosed  the nats-py client gave up reconnecting: retry with a new client
    ChainContention     (transient) the case's head kept moving under twenty attempts
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.errors
import nats.js.errors

from lintas.contracts import (
    Envelope,
    Event,
    EventData,
    PermanentError,
    TransientError,
    build_data,
    case_filter,
    encode,
    make_event,
    message_hash,
    parse_message,
)
from lintas.infra.errors import BusUnavailable, bus_errors
from lintas.infra.keys import Signer

__all__ = [
    "ChainContention",
    "NatsClientClosed",
    "PublishRejected",
    "bus",
    "case_head",
    "event_for",
    "publish_bytes",
    "publish_chained",
]


class PublishRejected(PermanentError):
    """JetStream answered, and refused the message; retrying the same publish cannot help."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ChainContention(TransientError):
    """Other events of the case kept arriving first: the case's head never held still."""


class NatsClientClosed(BusUnavailable):
    """The nats-py client gave up reconnecting: no publish succeeds until a new client."""


def event_for(
    agency: str,
    event_type: str,
    data: Mapping[str, Any] | EventData,
    *,
    case_id: str,
    target: str,
    caused_by: Event | None,
    event_id: str | None,
    time: datetime | None,
    signer: Signer | None = None,
) -> Event:
    """Validate ``data`` against the newest version and wrap it as ``agency`` publishes it,
    signed when a ``signer`` is given.

    ``caused_by`` links a reaction to its cause (causation and correlation ids).
    """
    event = make_event(
        build_data(event_type, data),
        source=agency,
        target=target,
        case_id=case_id,
        event_id=event_id,
        time=time,
        causationid=caused_by.id if caused_by else None,
        correlationid=(caused_by.envelope.correlationid or caused_by.id) if caused_by else None,
    )
    if signer is None:
        return event
    return Event(signer.sign(event.envelope), event.data)


@contextlib.contextmanager
def bus(what: str) -> Iterator[None]:
    """:func:`bus_errors`, and two more ways nats-py says the bus is out of reach."""
    with bus_errors(what):
        try:
            yield
        except nats.errors.ConnectionClosedError:
            raise NatsClientClosed(
                f"{what}: the NATS client is closed (it stopped reconnecting); use a client "
                "that reconnects forever (max_reconnect_attempts=-1)"
            ) from None
        except nats.errors.OutboundBufferLimitError:
            # Disconnected, and the client does not buffer (pending_size=0) or its buffer
            # is full.
            raise BusUnavailable(f"{what}: NATS unavailable (disconnected)") from None


async def publish_bytes(
    js: Any,
    subject: str,
    body: bytes,
    *,
    event_id: str,
    stream: str,
    ack_timeout_s: float,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bool]:
    """Publish with ``Nats-Msg-Id`` = ``event_id``; return (stream sequence, duplicate)."""
    try:
        with bus(what):
            ack = await js.publish(
                subject,
                body,
                timeout=ack_timeout_s,
                stream=stream,
                headers={"Nats-Msg-Id": event_id, **(headers or {})},
            )
    except nats.js.errors.NoStreamResponseError:
        raise BusUnavailable(
            f"{what}: no JetStream stream answers on {subject} (is the {stream} stream "
            "declared? `lintas up` declares it)"
        ) from None
    except nats.js.errors.APIError as exc:
        raise PublishRejected(
            f"{what} to stream {stream}: JetStream refused it "
            f"({exc.description or exc.__class__.__name__}, code {exc.err_code})",
            exc.err_code,
        ) from None
    return int(ack.seq), bool(ack.duplicate)


_WRONG_LAST_SEQUENCE = 10071  # JetStream: Nats-Expected-Last-Subject-Sequence did not hold


@dataclass(frozen=True, slots=True)
class CaseHead:
    """A case's last stored message: its sequence, hash, and event id if it has one."""

    seq: int = 0
    hash: str | None = None
    event_id: str | None = None


async def case_head(js: Any, stream: str, case_id: str, what: str = "") -> CaseHead:
    """The last message on a case's subjects; ``CaseHead()`` for a new case."""
    with bus(f"{what}: reading the head of case {case_id}" if what else f"case {case_id}"):
        try:
            raw = await js.get_msg(stream, subject=case_filter(case_id))
        except nats.js.errors.NotFoundError:
            return CaseHead()
    data = raw.data or b""
    doc = parse_message(data)  # once: for its id and its hash
    event_id = doc.get("id") if isinstance(doc, dict) else None
    return CaseHead(int(raw.seq or 0), message_hash(data, doc), event_id)


async def publish_chained(
    js: Any,
    event: Event,
    *,
    signer: Signer | None,
    stream: str,
    ack_timeout_s: float,
    what: str,
    attempts: int = 20,
) -> tuple[int, bool, Event]:
    """Append ``event`` to its case's hash chain; return (sequence, duplicate, as stored).

    ``prevhash`` is the hash of the case's last stored event, and the publish holds only
    if that is still the case's last event when it arrives
    (``Nats-Expected-Last-Subject-Sequence`` scoped to the case's subjects). When another
    event of the case got in first, the head is read again and the event re-signed.
    """
    subject = event.envelope.nats_subject
    for _ in range(attempts):
        head = await case_head(js, stream, event.case_id, what)
        if head.event_id == event.id:
            # A retry of a publish that was stored: it is the head already.
            with bus(f"reading event {event.id}"):
                stored = await js.get_msg(stream, seq=head.seq)
            return head.seq, True, _stored_event(json.loads(stored.data or b"{}"), event)
        envelope = event.envelope.model_copy(update={"prevhash": head.hash})
        if signer is not None:
            envelope = signer.sign(envelope)
        try:
            seq, duplicate = await publish_bytes(
                js,
                subject,
                encode(envelope),
                event_id=event.id,
                stream=stream,
                ack_timeout_s=ack_timeout_s,
                what=what,
                headers={
                    "Nats-Expected-Last-Subject-Sequence": str(head.seq),
                    "Nats-Expected-Last-Subject-Sequence-Subject": case_filter(event.case_id),
                },
            )
        except PublishRejected as exc:
            if exc.code == _WRONG_LAST_SEQUENCE:
                continue
            raise
        if duplicate:  # stored earlier under this id, perhaps with another prevhash
            with bus(f"reading event {event.id}"):
                stored = await js.get_msg(stream, seq=seq)
            return seq, True, _stored_event(json.loads(stored.data or b"{}"), event)
        return seq, False, Event(envelope, event.data)
    raise ChainContention(f"{what}: case {event.case_id} kept changing; {attempts} attempts")


def _stored_event(doc: dict[str, Any], event: Event) -> Event:
    return Event(Envelope.model_validate(doc), event.data)
