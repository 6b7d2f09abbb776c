"""The Publisher: how an agency system puts an event on the bus.

Validates the data against the newest version of its type, wraps it in the envelope,
applies the privacy step (the consent gate, minimisation to partners abroad, sealing of a
child's data: :mod:`._gate`), sets ``Nats-Msg-Id`` to the event id (JetStream drops a
second publish of the same id within the duplicate window), publishes to the ``LINTAS``
stream and waits for the ack.

Each publish is a PRODUCER span (:mod:`lintas.infra.observability.tracing`) whose
``traceparent`` the envelope and the NATS headers carry: published while a consumed event is
processed, it continues that event's trace; published later with ``caused_by``, it joins the
cause's.

Errors: those :mod:`lintas.producers` lists (``ContractError`` and ``GateRefused`` publish
nothing; a ``BusUnavailable`` retried with the same ``event_id`` also completes what follows
a stored event: wrapping, revoking or erasing data keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Unpack

import structlog
from opentelemetry.trace import TracerProvider

from lintas.contracts import Event, EventData, SignatureError
from lintas.infra.errors import bus_errors
from lintas.infra.keys.signing import Signer, Verifier
from lintas.infra.observability.tracing import (
    DUPLICATE,
    STREAM_SEQ,
    tracer_for,
)
from lintas.infra.privacy.casekeys import CaseKeys
from lintas.infra.reads import StreamReads
from lintas.producers._admit import Admission
from lintas.producers._gate import PublishGate
from lintas.producers._wire import (
    CaseHead,
    Draft,
    HeadMoved,
    Heads,
    PublishRejected,
    case_head,
    drafted,
    publish_chained,
)

__all__ = ["CaseHead", "HeadMoved", "PublishRejected", "Published", "Publisher"]

_log = structlog.get_logger("lintas.producer")


@dataclass(frozen=True, slots=True)
class Published:
    event: Event
    stream_seq: int
    duplicate: bool


class Publisher:
    """Publishes as one agency. ``js`` is a nats-py JetStream context; spans go to
    ``tracer_provider`` (default: the process's global one).

    ``keys``: the agency's access to the case key store. Without it the Publisher still
    applies the consent gate, but refuses anything that carries or grants a child's data.

    ``reads``: where the case heads its hash chain needs (and the case's consents its gate
    folds) come from. By default this client reads them on the stream, which an agency's
    permissions do not allow on a secured bus: there it passes
    :class:`~lintas.infra.reads.ServiceReads` (the platform's read service), which also
    erases and revokes case keys for it as the log calls for.

    ``verifier``: the consents its gate counts, and the events that name the case's owner
    (whom only an erasure may come from), count only signed by their source with a key
    the registry holds, as consumers apply only such events. A withdrawal or an erasure
    restricts even when it cannot be checked here. Without a verifier the gate counts
    every event that keeps its contract.

    ``admission``: the platform's admission (:class:`~lintas.producers.Admission`), which
    each event is sent to and which alone writes the log; what it refuses raises
    :class:`~lintas.producers.Refused`. Without it the Publisher writes the stream itself,
    which on a bus with permissions only admission's own identity may do.
    :func:`~lintas.producers.publisher_for` always sends through admission.
    """

    def __init__(
        self,
        js: Any,
        agency: str,
        *,
        stream: str = "LINTAS",
        timeout: float = 5.0,
        signer: Signer | None = None,
        keys: CaseKeys | None = None,
        tracer_provider: TracerProvider | None = None,
        reads: StreamReads | None = None,
        verifier: Verifier | None = None,
        admission: Admission | None = None,
    ):
        if signer is not None and signer.agency != agency:
            raise SignatureError(f"{signer.agency}'s key cannot sign what {agency} publishes")
        self._js = js
        self.agency = agency
        self.signer = signer
        self.stream = stream
        self.timeout = timeout
        self.tracer_provider = tracer_provider
        self._tracer = tracer_for(tracer_provider, "lintas.producers")
        self.reads = reads
        self.verifier = verifier
        self.admission = admission
        self.gate = PublishGate(js, agency, stream, keys, reads=reads, verifier=verifier)
        self._heads = Heads()

    async def publish(
        self,
        event_type: str,
        data: Mapping[str, Any] | EventData,
        *,
        case_id: str,
        target: str,
        expected_head: CaseHead | None = None,
        **draft: Unpack[Draft],
    ) -> Published:
        """Publish one event; return its stream sequence once JetStream has stored it.

        ``caused_by``, ``event_id``, ``time``: as :class:`~lintas.producers.Draft` says
        (the same ``event_id`` makes a retried publish idempotent: stored once).
        ``expected_head`` (from :meth:`head`) publishes only if the case's last event is
        still that one, else raises :class:`HeadMoved` having published nothing.

        Raises what :mod:`lintas.producers` draws (with the same ``event_id`` a retry
        cannot duplicate).
        """
        with drafted(
            self._tracer,
            self.agency,
            event_type,
            data,
            case_id=case_id,
            target=target,
            **draft,
        ) as (span, event):
            what = f"publishing {event_type}"
            built = event
            prepared: list[tuple[Event, CaseHead]] = []

            async def prepare(head: CaseHead) -> Event:
                ready = await self.gate.prepare(built, head, what)
                prepared[:] = [(ready, head)]
                return ready

            seq, duplicate, event = await publish_chained(
                self._js,
                event,
                signer=self.signer,
                stream=self.stream,
                ack_timeout_s=self.timeout,
                what=what,
                expected_head=expected_head,
                reads=self.reads,
                prepare=prepare,
                admission=self.admission,
                heads=self._heads,
            )
            if prepared and not duplicate:
                await self.gate.stored(event, prepared[0][1], seq)
            await self.gate.after(prepared[0][0] if prepared else event, seq, what)
            span.set_attributes({STREAM_SEQ: seq, DUPLICATE: duplicate})
            _log.debug("event.published", event_id=event.id, stream_seq=seq, duplicate=duplicate)
        return Published(event, seq, duplicate)

    async def head(self, case_id: str) -> CaseHead:
        """The case's last stored event (sequence and hash): what ``expected_head`` takes."""
        if self.reads is None:
            return await case_head(self._js, self.stream, case_id, f"reading case {case_id}")
        with bus_errors(f"reading the head of case {case_id}"):
            return await self.reads.head(case_id)
