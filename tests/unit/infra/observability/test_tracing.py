"""Spans and trace context without a broker: parsing, parents, attributes, the span file,
and the OTLP exporter against a local HTTP endpoint."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from lintas.infra.observability import tracing
from lintas.infra.observability.telemetry import (
    SpanFileExporter,
    TracingOff,
    configure_tracing,
    otlp_traces_url,
    read_span_file,
)
from lintas.infra.observability.tracing import (
    destination_template,
    message_context,
    process_span,
    publishing,
    trace_context,
    trace_headers,
)
from lintas.infra.settings import Settings
from tests.support.events import CASE, T0, ev
from tests.support.tracing import SpanCapture

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _event(traceparent: str | None = None) -> object:
    event = ev(
        "referral.requested",
        {"referral_id": "r-1", "service": "psychosocial_assessment"},
        source="kp2mi",
        target="kemenpppa",
        case_id=CASE,
        time=T0,
    )
    return event.envelope.model_copy(update={"traceparent": traceparent})


def test_traceparent_is_parsed_and_a_bad_one_ignored() -> None:
    context = trace_context(PARENT)
    assert context is not None
    assert format_trace_id(context.trace_id) == "0af7651916cd43dd8448eb211c80319c"
    assert format_span_id(context.span_id) == "b7ad6b7169203331"
    assert context.is_remote
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01"):
        assert trace_context(bad) is None


def test_the_signed_envelope_wins_over_the_headers_which_are_the_fallback() -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    with_parent = _event(PARENT)
    without = _event(None)
    found = message_context(with_parent, {"traceparent": other})  # type: ignore[arg-type]
    assert found is not None
    assert format_span_id(found.span_id) == "b7ad6b7169203331"
    fallback = message_context(without, {"traceparent": other})  # type: ignore[arg-type]
    assert fallback is not None
    assert format_span_id(fallback.span_id) == "2222222222222222"
    assert message_context(without, {}) is None  # type: ignore[arg-type]


def test_destination_template_hides_the_case_id() -> None:
    assert (
        destination_template(f"lintas.kemlu.kp2mi.case.opened.{CASE}")
        == "lintas.kemlu.kp2mi.case.opened.{case_id}"
    )


def test_a_publish_span_is_a_producer_span_named_by_template_with_ids_only() -> None:
    capture = SpanCapture()
    tracer = capture.provider.get_tracer("t")
    with publishing(
        tracer, agency="kp2mi", event_type="referral.requested", case_id=CASE, target="kemenpppa"
    ) as span:
        headers = trace_headers(span)
    [done] = capture.spans()
    assert done.kind is SpanKind.PRODUCER
    assert done.name == "publish lintas.kp2mi.kemenpppa.referral.requested.{case_id}"
    assert done.attributes == {
        "messaging.system": "nats",
        "messaging.destination.name": f"lintas.kp2mi.kemenpppa.referral.requested.{CASE}",
        "messaging.destination.template": "lintas.kp2mi.kemenpppa.referral.requested.{case_id}",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "lintas.source": "kp2mi",
        "lintas.target": "kemenpppa",
        "lintas.event.type": "referral.requested",
        "lintas.case.id": CASE,
        "lintas.agency": "kp2mi",
    }
    assert done.context is not None
    assert headers["traceparent"].startswith(
        f"00-{format_trace_id(done.context.trace_id)}-{format_span_id(done.context.span_id)}-"
    )


def test_a_mistaken_value_never_reaches_a_span_before_the_contract_refuses_it() -> None:
    capture = SpanCapture()
    tracer = capture.provider.get_tracer("t")
    with (
        pytest.raises(RuntimeError),
        publishing(
            tracer, agency="kp2mi", event_type="Ayu Saputra", case_id="Ayu Saputra", target="kemlu"
        ),
    ):
        raise RuntimeError("Ayu Saputra, born 2015-03-04")
    [done] = capture.spans()
    dumped = json.dumps(
        [done.name, dict(done.attributes or {}), done.status.description, list(done.events)]
    )
    assert "Ayu" not in dumped
    assert "2015" not in dumped
    assert done.status.status_code is StatusCode.ERROR
    assert (done.attributes or {})["error.type"] == "RuntimeError"


def test_a_reaction_outside_its_cause_s_trace_joins_the_cause_and_links_the_current() -> None:
    capture = SpanCapture()
    tracer = capture.provider.get_tracer("t")
    cause = trace_context(PARENT)
    assert cause is not None

    def reaction() -> contextlib.AbstractContextManager[object]:
        return publishing(
            tracer,
            agency="kemenpppa",
            event_type="referral.accepted",
            case_id=CASE,
            target="kp2mi",
            cause=cause,
        )

    with tracer.start_as_current_span("a clerk's request") as unrelated, reaction():
        pass
    in_cause = trace.set_span_in_context(trace.NonRecordingSpan(cause))
    with (
        tracer.start_as_current_span("processing the cause", context=in_cause) as inside,
        reaction(),
    ):
        pass
    first, _unrelated, second, _inside = capture.spans()
    assert first.parent is not None
    assert second.parent is not None
    assert first.parent.span_id == cause.span_id  # joined the cause's trace
    assert [link.context.span_id for link in first.links] == [unrelated.get_span_context().span_id]
    assert second.parent.span_id == inside.get_span_context().span_id  # the current span
    assert not second.links


def test_a_process_span_is_a_child_of_the_producer_and_links_to_it() -> None:
    capture = SpanCapture()
    span = process_span(
        capture.provider.get_tracer("t"),
        consumer="agency-kemenpppa",
        agency="kemenpppa",
        envelope=_event(PARENT),  # type: ignore[arg-type]
        subject=f"lintas.kp2mi.kemenpppa.referral.requested.{CASE}",
        stream_seq=7,
        batch_size=3,
    )
    span.end()
    [done] = capture.spans()
    assert done.kind is SpanKind.CONSUMER
    assert done.parent is not None
    assert format_span_id(done.parent.span_id) == "b7ad6b7169203331"
    assert [format_span_id(link.context.span_id) for link in done.links] == ["b7ad6b7169203331"]
    attributes = dict(done.attributes or {})
    assert attributes["messaging.consumer.group.name"] == "agency-kemenpppa"
    assert attributes["messaging.batch.message_count"] == 3
    assert attributes["lintas.stream.sequence"] == 7
    assert attributes["lintas.agency"] == "kemenpppa"


def test_the_span_file_holds_one_json_line_per_span_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "spans.jsonl"
    capture = SpanCapture()
    with capture.provider.get_tracer("t").start_as_current_span("one", attributes={"n": 1}):
        pass
    [span] = capture.spans()
    exporter = SpanFileExporter(path, max_bytes=1500)
    exporter.export([span])
    [line] = path.read_text().splitlines()
    record = json.loads(line)
    assert record["name"] == "one"
    assert record["attributes"] == {"n": 1}
    assert record["parent_span_id"] is None
    assert record["end_time_unix_nano"] >= record["start_time_unix_nano"]
    for _ in range(5):
        exporter.export([span])
    assert path.with_name("spans.jsonl.1").exists()
    assert path.stat().st_size <= 1500
    assert 2 <= len(list(read_span_file(path))) <= 6
    assert list(read_span_file(path, containing="nothing like this")) == []


def test_otlp_url_gets_the_traces_path_only_when_it_has_none() -> None:
    assert otlp_traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert otlp_traces_url("https://x/custom/traces") == "https://x/custom/traces"


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A local HTTP endpoint recording what is POSTed to it, as a collector would receive."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_go_over_otlp_http_when_an_endpoint_is_set(
    tmp_path: Path, collector: tuple[str, list[tuple[str, str, bytes]]]
) -> None:
    url, received = collector
    settings = Settings(data_dir=tmp_path, otlp_endpoint=url)
    provider = configure_tracing(settings, "lintas-test")
    with publishing(
        provider.get_tracer("t"),
        agency="kp2mi",
        event_type="referral.requested",
        case_id=CASE,
        target="kemenpppa",
    ):
        pass
    provider.shutdown()  # flushes the batch
    [(path, content_type, body)] = received
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "lintas-test"
    [span] = resource_spans.scope_spans[0].spans
    assert span.name == "publish lintas.kp2mi.kemenpppa.referral.requested.{case_id}"
    assert not settings.span_file.exists(), "with a collector, no span file is written"


def test_by_default_spans_go_to_the_span_file_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    provider = configure_tracing(settings, "lintas-test")
    with provider.get_tracer("t").start_as_current_span("kept"):
        pass
    provider.shutdown()
    [record] = list(read_span_file(settings.span_file))
    assert record["name"] == "kept"
    assert record["service"] == "lintas-test"
    assert settings.span_file == tmp_path / "traces" / "spans.jsonl"


def _publish_one(provider: trace.TracerProvider) -> None:
    with publishing(
        provider.get_tracer("t"),
        agency="kp2mi",
        event_type="referral.requested",
        case_id=CASE,
        target="kemenpppa",
    ):
        pass


def test_opentelemetry_s_own_variables_send_spans_to_the_collector(
    tmp_path: Path,
    collector: tuple[str, list[tuple[str, str, bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url + "/")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kemlu-consumers")
    settings = Settings(data_dir=tmp_path)  # read from the environment, as in a deployment
    provider = configure_tracing(settings, "lintas-kemlu")
    _publish_one(provider)
    provider.shutdown()
    [(path, _, body)] = received
    assert path == "/v1/traces"
    [resource_spans] = ExportTraceServiceRequest.FromString(body).resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "kemlu-consumers"
    assert not settings.span_file.exists()

    # The traces endpoint is used as it is; OTEL_TRACES_EXPORTER=otlp,console sends to both.
    received.clear()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url + "/custom")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    provider = configure_tracing(Settings(data_dir=tmp_path), "lintas-kemlu")
    _publish_one(provider)
    provider.shutdown()
    assert [path for path, _, _ in received] == ["/custom"]


def test_otel_traces_exporter_none_turns_tracing_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    settings = Settings(data_dir=tmp_path)
    provider = configure_tracing(settings, "lintas-kemlu")
    tracer = provider.get_tracer("t")
    _publish_one(provider)

    # The consumer edge makes no span, and does not even build one's attributes.
    def built(**_: object) -> None:
        raise AssertionError("a span's attributes were built with tracing off")

    monkeypatch.setattr(tracing, "_event_attributes", built)
    span = process_span(
        tracer,
        consumer="agency-kemenpppa",
        agency="kemenpppa",
        envelope=_event(PARENT),  # type: ignore[arg-type]
        subject="lintas.kp2mi.kemenpppa.referral.requested." + CASE,
        stream_seq=1,
    )
    assert span is trace.INVALID_SPAN
    assert not span.is_recording()
    provider.shutdown()
    assert not settings.span_file.exists()
    # OpenTelemetry's switch for the whole SDK says the same.
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(configure_tracing(Settings(data_dir=tmp_path), "x"), TracingOff)
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    assert not isinstance(configure_tracing(Settings(data_dir=tmp_path), "x"), TracingOff)


def test_a_misspelt_exporter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaegr")
    with pytest.raises(ValueError, match="jaegr is not one of otlp, console, none"):
        Settings()
