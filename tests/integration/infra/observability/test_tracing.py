"""Traces across agencies on a real nats-server, spans captured in memory.

A demo case is one trace: intake → publish → process (the addressed agency's staff) →
the reaction's publish → ..., with the traceparent in each stored envelope and in its
NATS headers; consumers' spans say what became of each message; an outbox event's spans
hang under its creation; a replay starts no span in a live trace; and nothing a child can
be identified by reaches a log line or a span.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from sqlmodel import Session

from lintas.audit import StreamReader, replay
from lintas.audit.replay import open_fresh_store
from lintas.contracts import Envelope, Sealed, decode, new_case_id
from lintas.demo import PATHWAYS, run_demo
from lintas.infra.db import create_db_engine
from lintas.infra.keys.exchange import load_recipients
from lintas.infra.keys.signing import load_registry
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.observability.logging import configure_logging
from lintas.infra.observability.telemetry import span_record
from lintas.infra.observability.tracing import trace_context, trace_headers
from lintas.infra.privacy.casekeys import case_keys_for
from lintas.infra.privacy.sealing import open_value
from lintas.infra.settings import Settings
from lintas.producers import Outbox, OutboxRelay, Publisher, ensure_outbox_table
from tests.support.helpers import Applied, declare_record, signed, start_record
from tests.support.tracing import SpanCapture

pytestmark = pytest.mark.nats

OPENED = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
    "risk_level": "high",
}


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def _names(envelope_traceparent: str | None) -> tuple[int, int]:
    context = trace_context(envelope_traceparent)
    assert context is not None, "the envelope carries no traceparent"
    return context.trace_id, context.span_id


async def _stored(settings: Settings) -> list[tuple[Envelope, dict[str, str]]]:
    """Every event of the demo's stream, with the NATS headers it was stored with."""
    async with open_bus(settings) as url:
        # The embedded bus runs with authorization on: read it as the auditor does.
        nc = await connect(url, "lintas-test", settings=settings, identity="auditor")
        try:
            js = nc.jetstream()
            last = (await js.stream_info(settings.stream)).state.last_seq
            found = []
            for seq in range(1, last + 1):
                raw = await js.get_msg(settings.stream, seq)
                found.append((decode(raw.data or b"").envelope, dict(raw.headers or {})))
            return found
        finally:
            await nc.close()


@pytest.mark.slow
async def test_a_demo_case_is_one_trace_from_agency_to_agency(
    settings: Settings, tracing: SpanCapture
) -> None:
    result = await run_demo(
        settings, len(PATHWAYS), tracer_provider=tracing.provider, timeout_s=120
    )
    stored = await _stored(settings)
    spans = tracing.spans()
    by_id = {_ids(s)[1]: s for s in spans}
    publish = {
        _attrs(s)["lintas.event.id"]: s
        for s in spans
        if s.kind is SpanKind.PRODUCER and _attrs(s).get("lintas.duplicate") is False
    }
    assert len(publish) == len(stored) == result.events

    sabah = next(r for r in result.records if r.situation == "undocumented_abroad")
    for record in result.records:
        case_spans = tracing.of_case(record.case_id)
        assert {_ids(s)[0] for s in case_spans} == {_ids(case_spans[0])[0]}, "one trace id"
        events = [(e, h) for e, h in stored if e.subject == record.case_id]
        involved = {e.source for e, _ in events} | {e.target for e, _ in events} - {"all"}
        assert {_attrs(s).get("lintas.agency") for s in case_spans} >= involved
        [intake] = [s for s in case_spans if s.name == "case intake"]
        assert intake.parent is None

        for envelope, headers in events:
            span = publish[envelope.id]
            # The stored event names its publish span, in the envelope and in the headers.
            assert _names(envelope.traceparent) == _ids(span)
            assert headers["traceparent"] == envelope.traceparent
            assert span.parent is not None
            parent = by_id[span.parent.span_id]
            if envelope.causationid is None:
                assert parent is intake  # the officer's registration of the child
                continue
            # publish (cause) -> process (the reacting agency's staff) -> publish (reaction)
            assert parent.kind is SpanKind.CONSUMER
            assert _attrs(parent)["messaging.consumer.group.name"] == f"staff-{envelope.source}"
            assert _attrs(parent)["lintas.event.id"] == envelope.causationid
            assert parent.parent is not None
            assert parent.parent.span_id == _ids(publish[envelope.causationid])[1]
            assert [link.context.span_id for link in parent.links] == [parent.parent.span_id]

        # Every projection's process span hangs under the publish span of its event.
        for span in case_spans:
            if span.kind is SpanKind.CONSUMER:
                assert span.parent is not None
                producer = publish[_attrs(span)["lintas.event.id"]]
                assert span.parent.span_id == _ids(producer)[1]
                consumer = _attrs(span)["messaging.consumer.group.name"]
                if not consumer.startswith("staff-"):
                    assert _attrs(span)["lintas.outcome"] == "applied", consumer

    # The referral of the Sabah child, Kemenlu -> KemenP2MI -> Dukcapil -> Kemensos, in one
    # trace across every agency that touched it.
    agencies = {_attrs(s).get("lintas.agency") for s in tracing.of_case(sabah.case_id)}
    assert {"kemlu", "kp2mi", "dukcapil", "kemensos", "my-jkm"} <= agencies


async def _identifying_values(
    settings: Settings, stored: list[tuple[Envelope, dict[str, str]]]
) -> set[str]:
    """The children's names, birth dates, parents' names, addresses and document numbers:
    sealed in the events, so opened here with each case's data key (as its opener holds
    it in the demo's data directory)."""
    values: set[str] = set()
    async with open_bus(settings) as url:
        # Each opener asks custody for its own wrap, connected as itself: custody answers an
        # agency only on its own inbox.
        connections: dict[str, Any] = {}
        try:
            recipients = load_recipients(settings)
            keys: dict[str, bytes] = {}
            for envelope, _ in stored:
                case_id = envelope.subject
                if envelope.type == "case.opened":
                    if envelope.source not in connections:
                        connections[envelope.source] = await connect(
                            url, "lintas-test-keys", settings=settings, identity=envelope.source
                        )
                    js = connections[envelope.source].jetstream()
                    opener = case_keys_for(js, settings, envelope.source, recipients)
                    key = await opener.data_key(case_id)
                    assert key is not None, case_id
                    keys[case_id] = key
                    child = open_value(
                        key,
                        Sealed.model_validate(envelope.data["child"]),
                        case_id=case_id,
                        event_type=envelope.type,
                        field="child",
                    )
                    values |= {
                        child[k] for k in ("full_name", "birth_date", "mother_name", "address")
                    }
                if envelope.type == "document.issued":
                    number = open_value(
                        keys[case_id],
                        Sealed.model_validate(envelope.data["number"]),
                        case_id=case_id,
                        event_type=envelope.type,
                        field="number",
                    )
                    values.add(number)
        finally:
            for nc in connections.values():
                await nc.close()
    return values


@pytest.mark.slow
async def test_no_identifying_value_of_a_child_reaches_logs_or_spans(
    settings: Settings, tracing: SpanCapture
) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    await run_demo(settings, len(PATHWAYS), tracer_provider=tracing.provider, timeout_s=120)
    stored = await _stored(settings)
    values = await _identifying_values(settings, stored)
    assert len(values) >= 4 * len(PATHWAYS), "the scan needs the children's data to look for"

    logs = out.getvalue()
    spans = "\n".join(
        json.dumps(
            span_record(span)
            | {
                "resource": dict(span.resource.attributes),
                "events": [[e.name, dict(e.attributes or {})] for e in span.events],
            },
            default=str,
        )
        for span in tracing.spans()
    )
    # The scan reads what was written: every case is in both.
    for envelope, _ in stored:
        assert envelope.subject in logs
        assert envelope.subject in spans
    assert sorted(v for v in values if v in logs) == []
    assert sorted(v for v in values if v in spans) == []


async def test_consumer_spans_say_what_became_of_each_message(
    js: JetStreamContext, nats_server: EmbeddedNats, settings: Settings, tracing: SpanCapture
) -> None:
    await declare_record(js, settings)
    applied = Applied()
    stop, databases = await start_record(
        nats_server.url, settings, [applied], tracer_provider=tracing.provider
    )
    case_id = new_case_id()
    try:
        with tracing.provider.get_tracer("test").start_as_current_span("an agency system") as up:
            headers = trace_headers(up)
        # A body that is not an event, with only the headers to say where it comes from.
        await js.publish(
            f"lintas.kemlu.kp2mi.case.opened.{case_id}",
            b"not json",
            stream=settings.stream,
            headers=headers,
        )
        kemlu = Publisher(js, "kemlu", stream=settings.stream, tracer_provider=tracing.provider)
        opened = await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kp2mi")
        await applied.wait_for(1)
    finally:
        await stop()
        databases.dispose()

    process = {
        _attrs(s)["lintas.stream.sequence"]: s
        for s in tracing.spans()
        if s.kind is SpanKind.CONSUMER
    }
    bad, good = process[1], process[opened.stream_seq]
    assert _attrs(bad)["lintas.outcome"] == "quarantined"
    assert bad.status.status_code is StatusCode.ERROR
    assert "not JSON" in (bad.status.description or "")
    assert bad.parent is not None
    assert bad.parent.span_id == _ids(up)[1]
    assert _attrs(bad)["lintas.case.id"] == case_id  # what the subject says
    assert _attrs(good)["lintas.outcome"] == "applied"
    assert _attrs(good)["messaging.consumer.group.name"] == "record"
    assert good.parent is not None
    assert good.parent.span_id == _names(opened.event.envelope.traceparent)[1]


async def test_an_outbox_event_is_created_in_the_agency_s_span_and_relayed_under_it(
    js: JetStreamContext,
    nats_server: EmbeddedNats,
    settings: Settings,
    tracing: SpanCapture,
    tmp_path: Path,
) -> None:
    await declare_record(js, settings)
    applied = Applied()
    stop, databases = await start_record(
        nats_server.url, settings, [applied], tracer_provider=tracing.provider
    )
    engine = create_db_engine(f"sqlite:///{tmp_path / 'agency.sqlite'}")
    ensure_outbox_table(engine)
    case_id = new_case_id()
    try:
        outbox = Outbox("kemlu", tracer_provider=tracing.provider)
        with (
            tracing.provider.get_tracer("test").start_as_current_span("a form saved") as request,
            Session(engine) as session,
        ):
            event = outbox.add(session, "case.opened", OPENED, case_id=case_id, target="kp2mi")
            session.commit()
        relay = OutboxRelay(engine, js, stream=settings.stream, tracer_provider=tracing.provider)
        assert await relay.run_once() == 1
        await applied.wait_for(1)
        stored = await js.get_msg(settings.stream, 1)
    finally:
        await stop()
        databases.dispose()
        engine.dispose()

    spans = tracing.spans()
    [create] = [s for s in spans if _attrs(s).get("messaging.operation.name") == "create"]
    [relayed] = [s for s in spans if _attrs(s).get("messaging.operation.name") == "publish"]
    [processed] = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert create.kind is relayed.kind is SpanKind.PRODUCER
    assert create.parent is not None
    assert create.parent.span_id == _ids(request)[1]
    assert _names(event.envelope.traceparent) == _ids(create)
    envelope = decode(stored.data or b"").envelope
    assert envelope.traceparent == event.envelope.traceparent  # signed as created
    assert (stored.headers or {})["traceparent"] == envelope.traceparent
    assert relayed.parent is not None
    assert relayed.parent.span_id == _ids(create)[1]
    assert processed.parent is not None
    assert processed.parent.span_id == _ids(create)[1]
    assert len({_ids(s)[0] for s in spans}) == 1


async def test_a_replay_starts_no_span_in_a_live_trace_and_links_to_it(
    js: JetStreamContext, settings: Settings, tracing: SpanCapture, tmp_path: Path
) -> None:
    await declare_record(js, settings)
    kemlu = signed(js, settings, "kemlu", tracing.provider)
    kp2mi = signed(js, settings, "kp2mi", tracing.provider)
    case_id = new_case_id()
    opened = await kemlu.publish("case.opened", OPENED, case_id=case_id, target="kp2mi")
    await kp2mi.publish(
        "document.requested",
        {"request_id": "doc-1", "kind": "citizenship_confirmation"},
        case_id=case_id,
        target="kemlu",
        caused_by=opened.event,
    )
    live = tracing.spans()
    live_traces = {_ids(s)[0] for s in live}
    assert len(live_traces) == 1
    tracing.exporter.clear()

    url = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    engine = open_fresh_store(url, settings)
    reader = StreamReader(js, settings.stream, case_id=case_id)
    cut = await reader.cut()
    # Even run from inside a live span, the replay keeps out of its trace.
    live_context = trace_context(opened.event.envelope.traceparent)
    assert live_context is not None
    with trace.use_span(trace.NonRecordingSpan(live_context)):
        result = await replay(
            reader.events(cut),
            engine,
            url,
            load_registry(settings),
            source="test",
            case_id=case_id,
            tracer_provider=tracing.provider,
        )
    engine.dispose()
    assert result.applied == 2

    replayed = tracing.spans()
    assert [s.name for s in replayed] == ["replay"]
    [span] = replayed
    assert span.parent is None
    assert _ids(span)[0] not in live_traces
    assert [link.context.trace_id for link in span.links] == [*live_traces]
    assert _attrs(span)["lintas.case.id"] == case_id
    assert _attrs(span)["lintas.replay.applied"] == 2
