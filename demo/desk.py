"""An agency's simulated front desk: reads what reaches the agency, publishes the staff's
reactions through the agency's Publisher.

Reaction ids are derived from the cause, so a redelivered cause republishes the same ids
and JetStream's dedup keeps one copy: the staff act once per event.

Each event the staff take up is a process span, and their reactions are published inside
it: a case's trace runs on from agency to agency through the desks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from faststream.nats import NatsBroker
from opentelemetry.trace import Tracer

from lintas.consumers.app import attach_batches
from lintas.contracts import ContractError, decode, derived_uuid7
from lintas.demo.staff import react
from lintas.infra.nats.topology import staff_consumer
from lintas.infra.observability.tracing import processing, tracer_for
from lintas.infra.settings import Settings
from lintas.producers import Publisher

__all__ = ["attach_desk"]

_log = structlog.get_logger("lintas.demo.staff")


async def _handle(publisher: Publisher, tracer: Tracer, msgs: Sequence[Any]) -> None:
    consumer = staff_consumer(publisher.agency).name
    for msg in msgs:
        try:
            event = decode(msg.data, subject=msg.subject)
        except ContractError as exc:
            _log.warning("staff.ignored", agency=publisher.agency, reason=str(exc))
            continue
        at_ms = int(event.time.timestamp() * 1000) + 1
        with processing(
            tracer,
            consumer=consumer,
            agency=publisher.agency,
            envelope=event.envelope,
            subject=msg.subject,
            stream_seq=msg.metadata.sequence.stream,
            headers=msg.headers,
            batch_size=len(msgs),
        ):
            for index, reaction in enumerate(react(publisher.agency, event)):
                await publisher.publish(
                    reaction.event_type,
                    reaction.data,
                    case_id=event.case_id,
                    target=reaction.target,
                    caused_by=event,
                    event_id=str(derived_uuid7(f"{event.id}/{index}", at_ms)),
                )
    for msg in msgs[:-1]:
        await msg.ack()
    await msgs[-1].ack_sync()


def attach_desk(broker: NatsBroker, publisher: Publisher, settings: Settings) -> None:
    """The staff of ``publisher.agency``; their spans go where the publisher's do."""
    tracer = tracer_for(publisher.tracer_provider, "lintas.demo")

    async def handle(msgs: list[Any], _js: Any) -> None:
        await _handle(publisher, tracer, msgs)

    attach_batches(broker, staff_consumer(publisher.agency), settings, handle, in_schema=False)
