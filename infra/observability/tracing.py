"""Spans for publishing and consuming events, and the W3C trace context they carry.

Spans follow OpenTelemetry's messaging conventions: a PRODUCER span ``publish <template>``
when an agency publishes (``create`` when an agency system adds an event to its outbox), a
CONSUMER span ``process <template>`` for each event a consumer takes up, where
``<template>`` is the subject with the case id left as ``{case_id}``
(``lintas.kemlu.kp2mi.case.opened.{case_id}``), a name of low cardinality.

Trace context: the producer span's ``traceparent`` (and ``tracestate``) is written into
the envelope, where the agency's signature and the case's hash chain cover it, and into the
NATS headers. A consumer's process span is a child of the message's producer span (and
links to it, as the conventions ask), read from the envelope, else from the headers. A
reaction published while an event is being processed is a child of that process span; one
published later with ``caused_by`` (a clerk answering from the worklist, a watchdog) is a
child of the cause's producer span and links to whatever span was current. So a case is one
trace across agencies and processes.

What a span holds: agency ids, the event type, event id, case id (random, meaningless),
subject, consumer name, stream sequence, counts and outcomes. Never ``data``: these helpers
read the envelope's header members only. A failure is recorded as the exception's class
(``error.type``), never its message or stack, which could quote a value.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    NoOpTracer,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lintas.contracts import (
    BROADCAST,
    Envelope,
    SubjectError,
    is_agency_id,
    is_case_id,
    parse_subject,
    subject_for,
)

__all__ = [
    "AGENCY",
    "CASE_ID",
    "CONSUMER",
    "DUPLICATE",
    "EVENT_ID",
    "EVENT_TYPE",
    "OUTCOME",
    "SOURCE",
    "STREAM_SEQ",
    "TARGET",
    "about",
    "destination_template",
    "envelope_headers",
    "failed",
    "message_context",
    "process_span",
    "processing",
    "publishing",
    "trace_context",
    "trace_headers",
    "tracer_for",
]

# lintas' own attributes; the rest are the conventions' ``messaging.*``.
AGENCY: Final = "lintas.agency"
"""The agency acting: the publisher of a publish span, the consumer's agency of a process span."""
SOURCE: Final = "lintas.source"
TARGET: Final = "lintas.target"
EVENT_TYPE: Final = "lintas.event.type"
EVENT_ID: Final = "lintas.event.id"
CASE_ID: Final = "lintas.case.id"
STREAM_SEQ: Final = "lintas.stream.sequence"
OUTCOME: Final = "lintas.outcome"
DUPLICATE: Final = "lintas.duplicate"
CONSUMER: Final = "messaging.consumer.group.name"

_PROPAGATOR: Final = TraceContextTextMapPropagator()


def tracer_for(provider: TracerProvider | None, scope: str) -> Tracer:
    """A tracer of ``provider``, else of the global provider (a no-op unless the process
    set one): an agency system embedding lintas gets spans the way it configured them."""
    return (provider or trace.get_tracer_provider()).get_tracer(scope)


def destination_template(subject: str) -> str:
    """The subject with its case id token as ``{case_id}``."""
    head, dot, _case = subject.rpartition(".")
    return f"{head}{dot}{{case_id}}" if dot else subject


def trace_context(traceparent: str | None, tracestate: str | None = None) -> SpanContext | None:
    """The span context a W3C ``traceparent`` names, or None if absent or malformed
    (the W3C rule: a bad traceparent is ignored, never an error)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    return context if context.is_valid else None


def message_context(
    envelope: Envelope | None, headers: Mapping[str, str] | None = None
) -> SpanContext | None:
    """The producer span of a message: the envelope's (signed), else the NATS headers'."""
    if envelope is not None:
        found = trace_context(envelope.traceparent, envelope.tracestate)
        if found is not None:
            return found
    if headers:
        return trace_context(headers.get("traceparent"), headers.get("tracestate"))
    return None


def trace_headers(span: Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) naming ``span``; empty for a span not recorded
    or sampled out (no context worth sending)."""
    if not span.get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


_TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE: Final = re.compile(r"[\x20-\x7e]{1,512}")  # W3C: printable ASCII, 512 at most


def envelope_headers(envelope: Envelope) -> dict[str, str]:
    """The envelope's trace context, repeated in a stored message's NATS headers for tools
    that read only those (the envelope's copy is the signed one): only in W3C's form. The
    envelope's fields are any strings its sender signed, and a line break in a header value
    would add headers of the sender's choosing to what admission writes."""
    headers = {}
    if envelope.traceparent and _TRACEPARENT.fullmatch(envelope.traceparent):
        headers["traceparent"] = envelope.traceparent
        if envelope.tracestate and _TRACESTATE.fullmatch(envelope.tracestate):
            headers["tracestate"] = envelope.tracestate
    return headers


def failed(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed with the exception's class only (its text could quote data)."""
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def _event_attributes(
    *, agency: str | None, event_type: str, case_id: str, source: str, target: str
) -> dict[str, Any]:
    """The event's ids and type; only what validates, since a caller's mistake (a name
    passed as the case id, say) must not reach a span before the contract refuses it."""
    attributes: dict[str, Any] = {"messaging.system": "nats"}
    try:
        subject = subject_for(source, target, event_type, case_id)
    except SubjectError:
        checked = {
            SOURCE: source if is_agency_id(source) else None,
            TARGET: target if target == BROADCAST or is_agency_id(target) else None,
            CASE_ID: case_id if is_case_id(case_id) else None,
            AGENCY: agency if agency is not None and is_agency_id(agency) else None,
        }
        return attributes | {k: v for k, v in checked.items() if v is not None}
    attributes |= {
        "messaging.destination.name": subject,
        "messaging.destination.template": destination_template(subject),
        SOURCE: source,
        TARGET: target,
        EVENT_TYPE: event_type,
        CASE_ID: case_id,
    }
    if agency is not None:
        attributes[AGENCY] = agency
    return attributes


def _parent(cause: SpanContext | None) -> tuple[Context | None, list[Link]]:
    """Where a publish span hangs: under the current span when it is in the cause's trace
    (or there is no cause); else under the cause, linked to the current span."""
    current = trace.get_current_span().get_span_context()
    if cause is None or (current.is_valid and current.trace_id == cause.trace_id):
        return None, []
    links = [Link(current)] if current.is_valid else []
    return trace.set_span_in_context(NonRecordingSpan(cause)), links


@contextlib.contextmanager
def publishing(
    tracer: Tracer,
    *,
    agency: str,
    event_type: str,
    case_id: str,
    target: str,
    cause: SpanContext | None = None,
    operation: str = "publish",
) -> Iterator[Span]:
    """The current PRODUCER span of publishing one event (``operation`` ``create`` for an
    outbox row), with agency, event type and case id bound for the logs."""
    attributes = _event_attributes(
        agency=agency, event_type=event_type, case_id=case_id, source=agency, target=target
    )
    attributes["messaging.operation.name"] = operation
    attributes["messaging.operation.type"] = "create" if operation == "create" else "send"
    parent, links = _parent(cause)
    template = attributes.get("messaging.destination.template", "(invalid subject)")
    with (
        tracer.start_as_current_span(
            f"{operation} {template}",
            context=parent,
            kind=SpanKind.PRODUCER,
            links=links,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span,
        structlog.contextvars.bound_contextvars(
            **{
                key: attributes[attribute]
                for key, attribute in (
                    ("agency", AGENCY),
                    ("event_type", EVENT_TYPE),
                    ("case_id", CASE_ID),
                )
                if attribute in attributes
            }
        ),
    ):
        try:
            yield span
        except BaseException as exc:
            failed(span, exc)
            raise


def process_span(
    tracer: Tracer,
    *,
    consumer: str,
    agency: str | None,
    envelope: Envelope | None,
    subject: str,
    stream_seq: int | None,
    headers: Mapping[str, str] | None = None,
    batch_size: int = 1,
    start_time: int | None = None,
    operation: str = "process",
) -> Span:
    """A CONSUMER span (started, not current) for one message ``consumer`` takes up:
    a child of the message's producer span, and linked to it. ``envelope`` is None for a
    message that did not decode; then only the headers and subject describe it.
    ``operation`` names it: ``process``, or ``retry`` (``lintas dlq retry``)."""
    if isinstance(tracer, NoOpTracer):
        # Tracing is off (OTEL_TRACES_EXPORTER=none): this runs for every message a
        # consumer takes up, and the attributes below are most of a span's cost.
        return INVALID_SPAN
    producer = message_context(envelope, headers)
    attributes: dict[str, Any]
    if envelope is not None:
        attributes = _event_attributes(
            agency=agency,
            event_type=envelope.type,
            case_id=envelope.subject,
            source=envelope.source,
            target=envelope.target,
        )
        attributes["messaging.message.id"] = envelope.id
        attributes[EVENT_ID] = envelope.id
    else:  # what the subject says, if it is a lintas subject at all
        try:
            parsed = parse_subject(subject)
        except SubjectError:
            attributes = {"messaging.system": "nats"}
            if agency is not None:
                attributes[AGENCY] = agency
        else:
            attributes = _event_attributes(
                agency=agency,
                event_type=parsed.event_type,
                case_id=parsed.case_id,
                source=parsed.source,
                target=parsed.target,
            )
    attributes |= {
        "messaging.operation.name": operation,
        "messaging.operation.type": "process",
        CONSUMER: consumer,
    }
    if stream_seq is not None:
        attributes[STREAM_SEQ] = stream_seq
    if batch_size > 1:
        attributes["messaging.batch.message_count"] = batch_size
    template = attributes.get("messaging.destination.template", "(undecodable)")
    return tracer.start_span(
        f"{operation} {template}",
        # A message without a producer span starts a trace of its own, whatever ran here.
        context=trace.set_span_in_context(NonRecordingSpan(producer)) if producer else Context(),
        kind=SpanKind.CONSUMER,
        links=[Link(producer)] if producer else [],
        attributes=attributes,
        start_time=start_time if start_time is not None else time.time_ns(),
        record_exception=False,
        set_status_on_exception=False,
    )


@contextlib.contextmanager
def about(span: Span, envelope: Envelope | None, **bound: Any) -> Iterator[None]:
    """Make ``span`` current and bind the event's agency-free facts for the logs."""
    facts: dict[str, Any] = {k: v for k, v in bound.items() if v is not None}
    if envelope is not None:
        facts |= {"event_type": envelope.type, "case_id": envelope.subject}
    with (
        trace.use_span(span, end_on_exit=False, record_exception=False),
        structlog.contextvars.bound_contextvars(**facts),
    ):
        yield


@contextlib.contextmanager
def processing(
    tracer: Tracer,
    *,
    consumer: str,
    agency: str | None,
    envelope: Envelope,
    subject: str,
    stream_seq: int | None,
    headers: Mapping[str, str] | None = None,
    batch_size: int = 1,
) -> Iterator[Span]:
    """The current process span of one event, ended on exit (failed if it raises). Whatever
    is published inside is a reaction to the event, in its trace."""
    span = process_span(
        tracer,
        consumer=consumer,
        agency=agency,
        envelope=envelope,
        subject=subject,
        stream_seq=stream_seq,
        headers=headers,
        batch_size=batch_size,
    )
    try:
        with about(span, envelope, agency=agency, consumer=consumer):
            yield span
    except BaseException as exc:
        failed(span, exc)
        raise
    finally:
        span.end()
