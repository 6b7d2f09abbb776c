"""``lintas trace CASE`` over a span file written by hand: rows, order, waits, messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lintas.cli import main
from lintas.contracts import new_case_id

CASE = new_case_id()
OTHER = new_case_id()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MS = 1_000_000
T = 1_700_000_000_000 * MS  # some instant, in ns


def _span(
    span_id: str,
    parent: str | None,
    kind: str,
    start_ms: float,
    end_ms: float,
    case_id: str = CASE,
    status: str = "UNSET",
    **attributes: Any,
) -> dict[str, Any]:
    return {
        "trace_id": TRACE,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": attributes.pop("name", "span"),
        "kind": kind,
        "start_time_unix_nano": T + int(start_ms * MS),
        "end_time_unix_nano": T + int(end_ms * MS),
        "status_code": status,
        "status_message": None,
        "attributes": {"lintas.case.id": case_id, **attributes},
        "links": [],
        "service": "lintas-test",
        "scope": "lintas",
    }


def _publish(
    span_id: str, parent: str, start: float, end: float, agency: str, event: str, target: str
) -> dict[str, Any]:
    return _span(
        span_id,
        parent,
        "PRODUCER",
        start,
        end,
        **{
            "lintas.agency": agency,
            "lintas.event.type": event,
            "lintas.target": target,
            "messaging.operation.name": "publish",
        },
    )


def _process(
    span_id: str,
    parent: str,
    start: float,
    end: float,
    agency: str | None,
    consumer: str,
    event: str,
    **more: Any,
) -> dict[str, Any]:
    attributes = {
        "lintas.event.type": event,
        "messaging.consumer.group.name": consumer,
        "messaging.operation.name": "process",
    }
    if agency:
        attributes["lintas.agency"] = agency
    return _span(span_id, parent, "CONSUMER", start, end, **more, **attributes)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LINTAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LINTAS_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "data"


def _write(data_dir: Path, records: list[dict[str, Any]]) -> None:
    path = data_dir / "traces" / "spans.jsonl"
    path.parent.mkdir(parents=True)
    lines = [json.dumps(r) for r in records]
    path.write_text("\n".join([*lines[:2], "{cut short by a cra", *lines[2:]]) + "\n")


def _rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def test_the_waterfall_shows_who_did_what_when_and_how_long_it_waited(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(
        data_dir,
        [
            _span(
                "a" * 16, None, "INTERNAL", 0, 10, name="case intake", **{"lintas.agency": "kemlu"}
            ),
            _publish("b" * 16, "a" * 16, 1, 3, "kemlu", "case.opened", "kp2mi"),
            _process("c" * 16, "b" * 16, 4, 5, None, "record", "case.opened"),
            _process("d" * 16, "b" * 16, 5, 9, "kp2mi", "staff-kp2mi", "case.opened"),
            _publish("e" * 16, "d" * 16, 6, 8, "kp2mi", "document.requested", "kemlu"),
            _process(
                "f" * 16,
                "e" * 16,
                20,
                21,
                "kemlu",
                "agency-kemlu",
                "document.requested",
                status="ERROR",
                **{"lintas.outcome": "quarantined"},
            ),
            _span("9" * 16, None, "INTERNAL", 0, 1, case_id=OTHER, name="another case"),
        ],
    )
    assert main(["trace", CASE]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert CASE in rows[0]
    assert f"trace {TRACE}" in rows[1]
    assert "6 spans" in rows[1]
    assert "21.0 ms" in rows[1]
    header = rows[2].split()
    assert header[:5] == ["agency", "span", "start", "duration", "waited"]
    body = [re.split(r"\s{2,}", row.strip()) for row in rows[3:8]]
    assert [cells[:5] for cells in body[:4]] == [
        ["kemlu", "case intake", "0", "10.0 ms", "█" * 15],  # 10 of 21 ms, of 32 columns
        ["kemlu", "publish case.opened → kp2mi", "+1.0 ms", "2.0 ms", body[1][4]],
        # On the bus from the end of the publish (3 ms) to the staff taking it up (5 ms).
        ["kp2mi", "↳ process case.opened (staff-kp2mi)", "+5.0 ms", "4.0 ms", "2.0 ms"],
        # The reaction: 1 ms after the staff took the cause up.
        ["kp2mi", "publish document.requested → kemlu", "+6.0 ms", "2.0 ms", "1.0 ms"],
    ]
    # A quarantined message is shown, marked.
    assert body[4][:2] == ["kemlu", "↳ process document.requested (agency-kemlu)"]
    assert body[4][2] == "quarantined"
    assert body[4][3:6] == ["+20.0 ms", "1.0 ms", "12.0 ms"]
    assert "another case" not in out
    # The record's process span led to nothing: left out, and said so.
    assert "(record)" not in out
    assert "1 process span that led to nothing is not shown" in out

    assert main(["trace", CASE, "--all"]) == 0
    everything = capsys.readouterr().out
    assert "process case.opened (record)" in everything
    assert "not shown" not in everything


def test_clear_messages_without_a_span_file_or_without_the_case(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["trace", "not-a-case"]) == 2
    assert "not a lintas case id" in capsys.readouterr().err
    assert main(["trace", CASE]) == 1
    out = capsys.readouterr().err
    assert "no span file at" in out
    assert "nothing has been traced" in out
    monkeypatch.setenv("LINTAS_OTLP_ENDPOINT", "http://collector:4318")
    assert main(["trace", CASE]) == 1
    assert "collector at http://collector:4318/v1/traces" in capsys.readouterr().err
    monkeypatch.delenv("LINTAS_OTLP_ENDPOINT")
    # OpenTelemetry's own variables say the same.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")
    assert main(["trace", CASE]) == 1
    assert "collector at http://jaeger:4318/v1/traces" in capsys.readouterr().err
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert main(["trace", CASE]) == 1
    assert "tracing is off" in capsys.readouterr().err
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    _write(data_dir, [_span("9" * 16, None, "INTERNAL", 0, 1, case_id=OTHER)])
    assert main(["trace", CASE]) == 1
    assert f"no spans of case {CASE}" in capsys.readouterr().err
