"""The log format: JSON lines off a terminal, console lines on one; the context every line
carries; the personal-data stripping processor."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from typing import Any

import pytest
import structlog

from lintas.infra.observability.logging import (
    REMOVED,
    configure_logging,
    reset_logging,
    strip_personal,
)
from lintas.infra.observability.tracing import publishing
from tests.support.events import CASE
from tests.support.tracing import SpanCapture


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_strip_personal_replaces_personal_keys_wherever_they_are_nested() -> None:
    event = {
        "event": "x",
        "case_id": CASE,
        "full_name": "Ayu Saputra",
        "payload": {"child": {"full_name": "Ayu"}, "kind": "nik", "number": "3525"},
        "items": [{"address": "Dusun 3"}, {"service": "kk"}],
    }
    assert strip_personal(None, "info", event) == {
        "event": "x",
        "case_id": CASE,
        "full_name": REMOVED,
        "payload": {"child": REMOVED, "kind": "nik", "number": REMOVED},
        "items": [{"address": REMOVED}, {"service": "kk"}],
    }


def test_every_line_carries_trace_span_agency_event_type_and_case() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", stream=out)  # a StringIO is no terminal: JSON lines
    capture = SpanCapture()
    with publishing(
        capture.provider.get_tracer("t"),
        agency="kp2mi",
        event_type="referral.requested",
        case_id=CASE,
        target="kemenpppa",
    ) as span:
        structlog.get_logger("lintas.test").info("event.published", stream_seq=4)
        logging.getLogger("some.library").warning("a library speaks")
    structlog.get_logger("lintas.test").info("outside")
    mine, library, outside = _lines(out)
    context = span.get_span_context()
    expected = {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "agency": "kp2mi",
        "event_type": "referral.requested",
        "case_id": CASE,
    }
    assert mine.items() >= (expected | {"event": "event.published", "stream_seq": 4}).items()
    assert mine["level"] == "info"
    assert mine["logger"] == "lintas.test"
    assert mine["timestamp"].endswith("Z")
    # A library's standard-library logging gets the same treatment.
    assert library.items() >= (expected | {"event": "a library speaks"}).items()
    assert library["level"] == "warning"
    assert library["logger"] == "some.library"
    assert not {"trace_id", "span_id", "agency", "case_id"} & outside.keys()


def test_personal_keys_are_stripped_from_the_rendered_lines_of_any_logger() -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    structlog.get_logger("lintas.test").warning(
        "oops", child={"full_name": "Ayu Saputra"}, notes="lives with grandmother", kind="nik"
    )
    logging.getLogger("other").warning("plain %s", "text", extra={"address": "Dusun 3"})
    rendered = out.getvalue()
    assert "Ayu" not in rendered
    assert "grandmother" not in rendered
    [line, _plain] = _lines(out)
    assert line["child"] == REMOVED
    assert line["notes"] == REMOVED
    assert line["kind"] == "nik"


def test_a_terminal_gets_readable_lines_not_json() -> None:
    out = _Terminal()
    configure_logging("INFO", stream=out)
    structlog.get_logger("lintas.test").info("consumer.started", consumer="record")
    [line] = out.getvalue().splitlines()
    assert "consumer.started" in line
    assert "consumer" in line
    assert "record" in line
    assert not line.lstrip().startswith("{")


def test_below_the_level_nothing_is_written() -> None:
    out = io.StringIO()
    configure_logging("WARNING", stream=out)
    structlog.get_logger("lintas.test").info("chatter")
    assert out.getvalue() == ""


def _fails_on(child_name: str) -> None:
    from lintas.contracts.families.case import ChildIdentity

    ChildIdentity.model_validate({"full_name": child_name, "birth_date": "not a date"})


def test_a_logged_exception_keeps_its_frames_and_type_but_not_a_quoted_value() -> None:
    """pydantic quotes its input in its message; lintas' own errors name fields only."""
    from pydantic import ValidationError

    from lintas.contracts import ConsentMissing

    name = " ".join(["Ayu", "Saputra"])  # not in the source, which frames quote
    for out in (io.StringIO(), _Terminal()):
        configure_logging("INFO", stream=out)
        log = structlog.get_logger("lintas.test")
        try:
            try:
                _fails_on(name)
            except ValidationError as exc:
                raise ConsentMissing(
                    "referral.requested needs consent for scope 'services'"
                ) from exc
        except ConsentMissing:
            log.error("handler.failed", exc_info=True)
        logging.getLogger("other").error("stdlib", exc_info=True)  # no exception: nothing
        rendered = out.getvalue()
        assert "Ayu" not in rendered
        assert "_fails_on" in rendered  # the frames are there
        assert "pydantic_core._pydantic_core.ValidationError: [message withheld" in rendered
        assert "ConsentMissing: referral.requested needs consent for scope 'services'" in rendered


def test_a_librarys_own_line_quoting_the_exception_withholds_it_too() -> None:
    """asyncio logs a task's repr, exception included, in the line itself."""
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    name = " ".join(["Siti", "Aminah"])
    try:
        raise ValueError(f"full_name={name}")
    except ValueError as exc:
        logging.getLogger("asyncio").error("Task exception: exception=%r", exc, exc_info=True)
    rendered = out.getvalue()
    assert "Siti" not in rendered
    assert "Task exception: exception=[message withheld" in rendered


def _fails_holding(child_name: str) -> None:
    held = {"full_name": child_name}  # a local of the failing frame
    raise KeyError(len(held))


def test_unconfigured_logging_prints_no_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    """Before configure_logging (a spawned worker, lintas as a library, after reset_logging)
    structlog's own default would draw a rich traceback with each frame's locals."""
    reset_logging()
    name = " ".join(["Ayu", "Saputra"])  # not in the source, which frames quote
    try:
        _fails_holding(name)
    except KeyError:
        structlog.get_logger("lintas.test").exception("handler.failed")
    captured = capsys.readouterr()
    assert captured.out == ""  # logs are never on standard output
    assert "_fails_holding" in captured.err  # the frames are there
    assert "Ayu" not in captured.err


def test_a_fresh_process_logs_no_local_variables() -> None:
    """No configure_logging at all: importing lintas' observability is enough."""
    script = (
        "import structlog, lintas.infra.observability.tracing\n"
        "def fails(child_name):\n"
        "    raise KeyError(len(child_name))\n"
        "try:\n"
        "    fails(' '.join(['Ayu', 'Saputra']))\n"
        "except KeyError:\n"
        "    structlog.get_logger('lintas.test').exception('handler.failed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "handler.failed" in done.stderr
    assert "Ayu Saputra" not in done.stderr + done.stdout
