"""The pure admission checks, and the documented codes matching the code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lintas.contracts import build_data, make_event, new_case_id
from lintas.contracts.admission import (
    CODES,
    MAX_BYTES,
    Head,
    chain_refusal,
    shape_refusal,
    subject_refusal,
    time_refusal,
)
from lintas.contracts.subjects import intake_subject, parse_intake_subject
from lintas.infra.privacy.sealing import seal_data
from tests.support.paths import REPO
from tests.support.samples import SAMPLES, TEST_KEY

DOC = REPO / "docs" / "ADMISSION.md"
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _opened(case_id: str, time: datetime = NOW, source: str = "kp2mi"):
    data = seal_data(
        build_data("case.opened", SAMPLES["case.opened"]), TEST_KEY, 1, case_id=case_id
    )
    return make_event(data, source=source, target="all", case_id=case_id, time=time)


def test_every_code_is_documented() -> None:
    text = DOC.read_text()
    assert all(f"`{code}`" in text for code in CODES)


def test_shapes() -> None:
    assert shape_refusal(b"x" * (MAX_BYTES + 1))[1].code == "too_large"
    assert shape_refusal(b"nope")[1].code == "not_json"
    assert shape_refusal(b"[]")[1].code == "not_json"
    for foreign in ('{"a": 1}'.encode("utf-16"), b"\xef\xbb\xbf{}", b'{"a": "\xff"}'):
        assert shape_refusal(foreign)[1].code == "not_json"  # UTF-8 only, no byte order mark
    assert shape_refusal('{"a": "ä"}'.encode())[1] is None
    assert shape_refusal(b'{"a":' * 17 + b"1" + b"}" * 17)[1].code == "too_deep"
    twice = shape_refusal(b'{"type": "case.opened", "x": {"type": 1}, "type": "case.closed"}')[1]
    assert (twice.code, twice.field) == ("duplicate_member", "type")
    nested = shape_refusal(b'{"data": {"a": 1, "a": 2}}')[1]
    assert (nested.code, nested.field) == ("duplicate_member", "a")
    doc, refused = shape_refusal(b'{"a": [1, {"b": 2}]}')
    assert refused is None
    assert doc == {"a": [1, {"b": 2}]}


def test_subject_time_and_chain() -> None:
    case_id = new_case_id()
    event = _opened(case_id)
    assert subject_refusal(event, "kp2mi", case_id) is None
    assert subject_refusal(event, "kemlu", case_id).field == "source"
    assert subject_refusal(event, "kp2mi", new_case_id()).field == "subject"
    assert time_refusal(event, NOW) is None
    assert time_refusal(event, NOW - timedelta(minutes=6)).code == "time_skew"
    assert time_refusal(event, NOW + timedelta(days=31)).code == "time_skew"
    assert time_refusal(event, NOW + timedelta(days=29)) is None
    assert chain_refusal(event, Head()) is None
    assert chain_refusal(event, Head(seq=3, hash="sha256:ab")).code == "chain_moved"


def test_intake_subjects() -> None:
    case_id = new_case_id()
    subject = intake_subject("kp2mi", case_id)
    assert parse_intake_subject(subject) == ("kp2mi", case_id)
    assert parse_intake_subject(f"lintas_intake.3.kp2mi.{case_id}") == ("kp2mi", case_id)
    assert parse_intake_subject("lintas_intake.kp2mi.nope") is None
    assert parse_intake_subject(f"lintas.kp2mi.{case_id}") is None
