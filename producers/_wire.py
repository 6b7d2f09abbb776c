"""What the Publisher and the outbox relay share: building an event, putting bytes on
JetStream, and naming what went wrong.

Errors::

    ContractError       (from building) the event breaks its contract; nothing published
    PublishRejected     JetStream refused it (e.g. another stream owns the subject): permanent
    BusUnavailable      no answer, no stream listening yet, connection down: retry later
    └── NatsClientClosed  the nats-py client gave up reconnecting: retry with a new client
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import nats.errors
import nats.js.errors

from lintas.contracts import Event, EventData, PermanentError, build_data, make_event
from lintas.infra.errors import BusUnavailable, bus_errors
from lintas.infra.keys import Signer

__all__ = ["NatsClientClosed", "PublishRejected", "bus", "event_for", "publish_bytes"]


class PublishRejected(PermanentError):
    """JetStream answered, and refused the message; retrying the same publish cannot help."""


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
) -> tuple[int, bool]:
    """Publish with ``Nats-Msg-Id`` = ``event_id``; return (stream sequence, duplicate)."""
    try:
        with bus(what):
            ack = await js.publish(
                subject,
                body,
                timeout=ack_timeout_s,
                stream=stream,
                headers={"Nats-Msg-Id": event_id},
            )
    except nats.js.errors.NoStreamResponseError:
        raise BusUnavailable(
            f"{what}: no JetStream stream answers on {subject} (is the {stream} stream "
            "declared? `lintas up` declares it)"
        ) from None
    except nats.js.errors.APIError as exc:
        raise PublishRejected(
            f"{what} to stream {stream}: JetStream refused it "
            f"({exc.description or exc.__class__.__name__}, code {exc.err_code})"
        ) from None
    return int(ack.seq), bool(ack.duplicate)
