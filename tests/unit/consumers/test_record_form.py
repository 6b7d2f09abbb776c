"""The canonical form of a stored record, as a digest takes it: orjson's where it is
RFC 8785's, the model's otherwise."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from lintas.consumers.record import CaseRecord, ConsentEntry, TimelineEntry
from lintas.contracts import canonical_json, new_case_id

replay_module = importlib.import_module("lintas.audit.replay")
T0 = datetime(2025, 3, 1, 8, tzinfo=UTC)

RECORD = CaseRecord(
    case_id=new_case_id(),
    whereabouts='Kota Kinabalu — \u00e9\u4e2d \U0001f600\n\t\x7f\x01\u2028"\\',
    last_seq=7,
    timeline=(
        TimelineEntry(
            seq=7, time=T0, type="case.opened", source="kemlu", target="all", owner="kemlu"
        ),
    ),
    consents=(
        ConsentEntry(seq=3, at=T0, by="kp2mi", scopes=("services",), agencies=("kemensos",)),
    ),
)


def _dump() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(RECORD.model_dump_json())
    return parsed


def _expected() -> bytes:
    return canonical_json(RECORD.model_dump(mode="json"))


def test_a_record_in_shape_is_written_by_orjson_as_rfc_8785_writes_it() -> None:
    doc = RECORD.model_dump_json()
    assert replay_module._in_shape([json.loads(doc)], CaseRecord)
    assert replay_module._record_form(doc) == _expected()
    assert replay_module._replayed_form(doc) == _expected()


@pytest.mark.parametrize(
    "change",
    [
        "a float where an integer is",
        "a float in a list of plain values",
        "an object where a plain value is",
        "a list where a plain value is",
        "a nested object with a field missing",
        "a nested object with a field too many",
        "one nested object where a list is",
        "a list where one nested object is",
    ],
)
def test_anything_else_is_not_in_shape(change: str) -> None:
    doc = _dump()
    entry, consent = doc["timeline"][0], doc["consents"][0]
    if change == "a float where an integer is":
        entry["seq"] = 7.0
    elif change == "a float in a list of plain values":
        consent["scopes"] = ["services", 1.0]
    elif change == "an object where a plain value is":
        entry["type"] = {"x": 1}
    elif change == "a list where a plain value is":
        doc["whereabouts"] = ["somewhere"]
    elif change == "a nested object with a field missing":
        del consent["given_by"]
    elif change == "one nested object where a list is":
        doc["timeline"] = entry
    elif change == "a list where one nested object is":
        doc["erasure"] = [
            {
                "seq": 9,
                "at": T0.isoformat(),
                "by": "kemlu",
                "officer_role": "r",
                "requested_by": "x",
                "legal_basis": "b",
                "reason": "c",
            }
        ]
    else:
        entry["extra"] = None
    assert not replay_module._in_shape([doc], CaseRecord)


def test_a_float_an_integer_stands_for_is_written_as_the_model_reads_it() -> None:
    doc = _dump()
    doc["last_seq"] = 7.0
    assert replay_module._record_form(json.dumps(doc)) == _expected()
