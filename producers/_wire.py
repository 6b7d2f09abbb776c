"""What the Publisher and the outbox relay share: building an event, putting bytes on
JetStream, and naming what went wrong.

Errors: those :mod:`lintas.producers` lists.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypedDict, Unpack

import nats.errors
import nats.js.errors
from opentelemetry.trace import Span, Tracer

from lintas.contracts import (
    ContractError,
    Envelope,
    Event,
    EventData,
    PermanentError,
    TransientError,
    build_data,
    case_filter,
    encode,
    make_event,
)
from lintas.contracts import gate as gate_rules
from lintas.contracts.admission import Answer
from lintas.contracts.subjects import addressing
from lintas.infra.errors import BusUnavailable, bus_errors
from lintas.infra.keys.signing import Signer
from lintas.infra.observability.tracing import (
    EVENT_ID,
    envelope_headers,
    message_context,
    publishing,
    trace_headers,
)
from lintas.infra.reads import CaseHead, DirectReads, StreamReads
from lintas.producers._admit import Admission

__all__ = [
    "CaseHead",
    "ChainContention",
    "Draft",
    "HeadMoved",
    "Heads",
    "Prepare",
    "PublishRejected",
    "Refused",
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


class Refused(PermanentError):
    """Admission refused the event: nothing of it entered the log, and sending it again
    gets the same answer. ``code`` is one of :data:`lintas.contracts.admission.CODES` or of
    the authority policy's (:data:`lintas.contracts.authority.CODES`); ``field`` the field
    at fault, when one is."""

    def __init__(self, message: str, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field

    @classmethod
    def of(cls, answer: Answer, what: str) -> Refused:
        code = answer.code or "refused"
        at = f" (field {answer.field})" if answer.field else ""
        return cls(f"{what}: admission refused it, {code}{at}: {answer.reason}", code, answer.field)


class ChainContention(TransientError):
    """Other events of the case kept arriving first: the case's head never held still."""


class HeadMoved(TransientError):
    """The case's last event is no longer the one the publish was conditional on: something
    else of the case was stored in between (perhaps this very event, by a retry)."""


class Draft(TypedDict, total=False):
    """What a publish (:meth:`Publisher.publish`, :meth:`Outbox.add`) may say of an event
    besides its type, data, case and target; each defaults to None."""

    caused_by: Event | None
    """The event this one reacts to: its causation and correlation ids, and its trace."""
    event_id: str | None
    """The event's id (default: a new one): a retry with the same id is stored once."""
    time: datetime | None
    """When it happened (default: now)."""


def event_for(
    agency: str,
    event_type: str,
    data: Mapping[str, Any] | EventData,
    *,
    case_id: str,
    target: str,
    signer: Signer | None = None,
    trace: Mapping[str, str] | None = None,
    **draft: Unpack[Draft],
) -> Event:
    """Validate ``data`` against the newest version and wrap it as ``agency`` publishes it,
    signed when a ``signer`` is given.

    ``trace`` is the producer span's ``traceparent`` / ``tracestate`` (:func:`trace_headers`).
    """
    # Before anything is stored: a misaddressed outbox row would hold its relay for good.
    misaddressed = gate_rules.misaddressed(event_type, target)
    if misaddressed is not None:
        raise misaddressed
    trace = trace or {}
    caused_by = draft.get("caused_by")
    event = make_event(
        build_data(event_type, data),
        source=agency,
        target=target,
        case_id=case_id,
        event_id=draft.get("event_id"),
        time=draft.get("time"),
        causationid=caused_by.id if caused_by else None,
        correlationid=(caused_by.envelope.correlationid or caused_by.id) if caused_by else None,
        traceparent=trace.get("traceparent"),
        tracestate=trace.get("tracestate"),
    )
    if signer is None:
        return event
    return Event(signer.sign(event.envelope), event.data)


@contextlib.contextmanager
def drafted(
    tracer: Tracer,
    agency: str,
    event_type: str,
    data: Mapping[str, Any] | EventData,
    *,
    case_id: str,
    target: str,
    operation: str = "publish",
    **draft: Unpack[Draft],
) -> Iterator[tuple[Span, Event]]:
    """The PRODUCER span of one event and the event built inside it (:func:`event_for`),
    carrying the span's trace context and named on it by its id."""
    with publishing(
        tracer,
        agency=agency,
        event_type=event_type,
        case_id=case_id,
        target=target,
        cause=message_context(cause.envelope) if (cause := draft.get("caused_by")) else None,
        operation=operation,
    ) as span:
        event = event_for(
            agency,
            event_type,
            data,
            case_id=case_id,
            target=target,
            trace=trace_headers(span),
            **draft,
        )
        span.set_attributes({"messaging.message.id": event.id, EVENT_ID: event.id})
        yield span, event


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
        with bus_errors(what):
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


async def case_head(js: Any, stream: str, case_id: str, what: str = "") -> CaseHead:
    """The last message on a case's subjects, read on the stream; ``CaseHead()`` for a new case."""
    with bus_errors(f"{what}: reading the head of case {case_id}" if what else f"case {case_id}"):
        return await DirectReads(js, stream).head(case_id)


class Heads:
    """The heads of the cases a publisher keeps writing, as admission answered them: the
    next event of such a case chains to its own last one without reading the head first.

    Only a hint: another agency's event of the case may have come in since. Then admission
    refuses the event ``chain_moved`` (it checks ``prevhash`` against the case as stored),
    nothing of it enters the log, and the head is read and the event decided again. That
    costs a whole send more than the read it saved, so only cases this publisher alone has
    written are kept: a case whose head, read before a publish, is another's event (or one
    it may not see), or that moved past a head kept here, is one others write too, and its
    head is read before each publish. Kept for the ``size`` cases written last."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        # None: a case others write too (its head is read each time).
        self._heads: OrderedDict[str, CaseHead | None] = OrderedDict()

    def get(self, case_id: str) -> CaseHead | None:
        return self._heads.get(case_id)

    def put(self, case_id: str, head: CaseHead) -> None:
        """The case's head after an event this publisher had admitted."""
        if case_id in self._heads:
            known = self._heads[case_id]
            if known is None or known.seq >= head.seq:
                return  # shared; or two publishes of the case answered out of order
        self._keep(case_id, head)

    def read(self, case_id: str, head: CaseHead, source: str) -> None:
        """``head`` was read before ``source`` publishes to the case."""
        if head.seq and (addressing(head.subject) or ("", ""))[0] != source:
            self.shared(case_id)

    def shared(self, case_id: str) -> None:
        """Others write the case too: its head is read before each publish."""
        self._keep(case_id, None)

    def drop(self, case_id: str) -> None:
        if self._heads.get(case_id) is not None:
            del self._heads[case_id]

    def _keep(self, case_id: str, head: CaseHead | None) -> None:
        self._heads[case_id] = head
        self._heads.move_to_end(case_id)
        while len(self._heads) > self._size:
            self._heads.popitem(last=False)


Prepare = Callable[[CaseHead], Awaitable[Event]]
"""What turns the event into the one to publish on top of a case head (the privacy step:
the consent gate against the case as of that head, and sealing), or refuses it."""


async def publish_chained(
    js: Any,
    event: Event,
    *,
    signer: Signer | None,
    stream: str,
    ack_timeout_s: float,
    what: str,
    attempts: int = 20,
    prepare: Prepare | None = None,
    expected_head: CaseHead | None = None,
    reads: StreamReads | None = None,
    admission: Admission | None = None,
    heads: Heads | None = None,
) -> tuple[int, bool, Event]:
    """Append ``event`` to its case's hash chain; return (sequence, duplicate, as stored).

    ``admission``: send it to the platform's admission, which alone writes the log, and
    take its answer (:mod:`._admit`). Without, write the stream directly: what only
    admission's own identity may do on a bus with permissions (and an open test bus lets
    anyone do); the chain, the gate and the headers below are the same either way.
    Admission's refusals raise :class:`Refused`, except ``chain_moved`` (the head is read
    again and the event decided again, as for a failed expected-sequence publish below) and
    a ``duplicate_id`` that names the sender's own stored event (a retry, rebuilt).

    ``prevhash`` is the hash of the case's last stored event, and the publish holds only
    if that is still the case's last event when it arrives
    (``Nats-Expected-Last-Subject-Sequence`` scoped to the case's subjects). When another
    event of the case got in first, the head is read again, ``prepare`` runs again against
    it (so what it decided holds for the case as stored) and the event is re-signed.
    Personal fields still in the clear are never published: :class:`ContractError`.

    With ``expected_head`` (a head the caller read, and decided on), the event is appended
    only right after it: one attempt, and :class:`HeadMoved` if anything else of the case
    was stored since. A compare-and-set on the case's log, for publishers whose decision
    depends on everything the case holds (the watchdog).

    ``reads``: who reads the case's head (default: this client, on the stream); an agency
    on a bus with permissions asks the read service (:class:`~lintas.infra.reads.ServiceReads`).

    ``heads`` (with ``admission``): the case's head as admission last answered it, taken
    instead of reading it, for a case only this publisher writes (:class:`Heads`); read
    again after ``chain_moved``, and from then on.
    """
    reads = reads or DirectReads(js, stream)
    subject = event.envelope.nats_subject
    draft = event
    if expected_head is not None:
        attempts = 1
    for _ in range(attempts):
        known = (
            heads.get(draft.case_id)
            if heads is not None and admission is not None and expected_head is None
            else None
        )
        if expected_head is not None:
            head = expected_head
        elif known is not None:
            head = known
        else:
            with bus_errors(f"{what}: reading the head of case {draft.case_id}"):
                head = await reads.head(draft.case_id)
            if heads is not None:
                heads.read(draft.case_id, head, draft.source)
        if head.event_id == draft.id:
            # A retry of a publish that was stored: it is the head already.
            with bus_errors(f"reading event {draft.id}"):
                stored = await reads.message(head.seq)
            return head.seq, True, _stored_event(json.loads(stored or b"{}"), draft)
        event = await prepare(head) if prepare is not None else draft
        clear = event.data.clear_fields()
        if clear:
            raise ContractError(
                f"personal field {', '.join(clear)} is not sealed: publish through a "
                "Publisher holding the agency's case keys",
                event_type=event.type,
                version=type(event.data).VERSION,
                field=clear[0],
            )
        envelope = event.envelope.model_copy(update={"prevhash": head.hash})
        if signer is not None:
            envelope = signer.sign(envelope)
        if admission is not None:
            body = encode(envelope)
            answer = await admission.send(body, event.source, event.case_id, what)
            if heads is not None and not (answer.admitted and not answer.duplicate):
                if answer.code == "chain_moved" and known is not None:
                    heads.shared(event.case_id)
                else:
                    heads.drop(event.case_id)
            if answer.admitted and answer.seq is not None:
                if heads is not None and not answer.duplicate and answer.hash is not None:
                    heads.put(
                        event.case_id,
                        CaseHead(answer.seq, answer.hash, event.id, subject, body),
                    )
                return answer.seq, answer.duplicate, Event(envelope, event.data)
            if answer.code == "chain_moved":
                if expected_head is not None:
                    raise HeadMoved(
                        f"{what}: case {event.case_id} has events after sequence "
                        f"{expected_head.seq}"
                    )
                continue
            if answer.code == "duplicate_id" and answer.seq is not None:
                with bus_errors(f"reading event {event.id}"):
                    stored = await reads.message(answer.seq)
                return answer.seq, True, _stored_event(json.loads(stored or b"{}"), event)
            raise Refused.of(answer, what)
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
                    **envelope_headers(envelope),
                },
            )
        except PublishRejected as exc:
            if exc.code == _WRONG_LAST_SEQUENCE:
                if expected_head is not None:
                    raise HeadMoved(
                        f"{what}: case {event.case_id} has events after sequence "
                        f"{expected_head.seq}"
                    ) from None
                continue
            raise
        if duplicate:  # stored earlier under this id, perhaps with another prevhash
            with bus_errors(f"reading event {event.id}"):
                stored = await reads.message(seq)
            return seq, True, _stored_event(json.loads(stored or b"{}"), event)
        return seq, False, Event(envelope, event.data)
    raise ChainContention(f"{what}: case {draft.case_id} kept changing; {attempts} attempts")


def _stored_event(doc: dict[str, Any], event: Event) -> Event:
    return Event(Envelope.model_validate(doc), event.data)
