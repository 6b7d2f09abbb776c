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

import structlog

from lintas.contracts import Event, EventData, SignatureError
from lintas.infra.keys import Signer

from ._wire import PublishRejected, event_for, publish_chained

__all__ = ["PublishRejected", "Published", "Publisher"]

_log = structlog.get_logger("lintas.producer")


@dataclass(frozen=True, slots=True)
class Published:
    event: Event
    stream_seq: int
    duplicate: bool


class Publisher:
    """Publishes as one agency. ``js`` is a nats-py JetStream context."""

    def __init__(
        self,
        js: Any,
        agency: str,
        *,
        stream: str = "LINTAS",
        timeout: float = 5.0,
        signer: Signer | None = None,
    ):
        if signer is not None and signer.agency != agency:
            raise SignatureError(f"{signer.agency}'s key cannot sign what {agency} publishes")
        self._js = js
        self.agency = agency
        self.signer = signer
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
        event = event_for(
            self.agency,
            event_type,
            data,
            case_id=case_id,
            target=target,
            caused_by=caused_by,
            event_id=event_id,
            time=time,
        )
        seq, duplicate, event = await publish_chained(
            self._js,
            event,
            signer=self.signer,
            stream=self.stream,
            ack_timeout_s=self.timeout,
            what=f"publishing {event_type}",
        )
        _log.debug(
            "event.published",
            agency=self.agency,
            event_type=event_type,
            case_id=case_id,
            stream_seq=seq,
            duplicate=duplicate,
        )
        return Published(event, seq, duplicate)
