"""The Publisher: how an agency system puts an event on the bus.

Validates the data against the newest version of its type, wraps it in the envelope,
sets ``Nats-Msg-Id`` to the event id (JetStream drops a second publish of the same id
within the duplicate window), publishes to the ``LINTAS`` stream and waits for the ack.

Errors (see :mod:`lintas.contracts.errors` for the whole tree)::

    ContractError       the event breaks its contract; nothing was published
    PublishRejected     JetStream refused it (e.g. another stream owns the subject): permanent
    BusUnavailable      no answer, no stream listening yet, connection down: retry later
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats.js.errors
import structlog

from lintas.contracts import (
    ContractError,
    Event,
    EventData,
    PermanentError,
    build_data,
    encode,
    make_event,
)
from lintas.infra.errors import BusUnavailable, bus_errors

__all__ = ["PublishRejected", "Published", "Publisher"]

_log = structlog.get_logger("lintas.producer")


class PublishRejected(PermanentError):
    """JetStream answered, and refused the message; retrying the same publish cannot help."""


@dataclass(frozen=True, slots=True)
class Published:
    event: Event
    stream_seq: int
    duplicate: bool


class Publisher:
    """Publishes as one agency. ``js`` is a nats-py JetStream context."""

    def __init__(self, js: Any, agency: str, *, stream: str = "LINTAS", timeout: float = 5.0):
        self._js = js
        self.agency = agency
        self.stream = stream
        self.timeout = timeout

    async def publish(
        self,
        event_type: str,
        data: Mapping[str, Any] | EventData,
        *,
        case_id: str,
        target: str,
        caused_by: Event | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> Published:
        """Publish one event; return its stream sequence once JetStream has stored it.

        ``caused_by`` links a reaction to its cause (causation and correlation ids).
        ``event_id`` makes a retried publish idempotent: the same id is stored once.

        Raises :class:`~lintas.contracts.ContractError` (nothing is published) or
        :class:`~lintas.infra.errors.BusUnavailable` (retry later; with the same
        ``event_id`` a retry cannot duplicate).
        """
        valid = build_data(event_type, data)
        event = make_event(
            valid,
            source=self.agency,
            target=target,
            case_id=case_id,
            event_id=event_id,
            time=time,
            causationid=caused_by.id if caused_by else None,
            correlationid=(
                (caused_by.envelope.correlationid or caused_by.id) if caused_by else None
            ),
        )
        if event.envelope.source != self.agency:  # pragma: no cover - make_event sets it
            raise ContractError("source is not this publisher's agency", event_type=event_type)
        headers = {"Nats-Msg-Id": event.id}
        try:
            with bus_errors(f"publishing {event_type}"):
                ack = await self._js.publish(
                    event.envelope.nats_subject,
                    encode(event.envelope),
                    timeout=self.timeout,
                    stream=self.stream,
                    headers=headers,
                )
        except nats.js.errors.NoStreamResponseError:
            raise BusUnavailable(
                f"publishing {event_type}: no JetStream stream answers on "
                f"{event.envelope.nats_subject} (is the {self.stream} stream declared? "
                "`lintas up` declares it)"
            ) from None
        except nats.js.errors.APIError as exc:
            raise PublishRejected(
                f"publishing {event_type} to stream {self.stream}: JetStream refused it "
                f"({exc.description or exc.__class__.__name__}, code {exc.err_code})"
            ) from None
        _log.debug(
            "event.published",
            agency=self.agency,
            event_type=event_type,
            case_id=case_id,
            stream_seq=ack.seq,
            duplicate=bool(ack.duplicate),
        )
        return Published(event, ack.seq, bool(ack.duplicate))
