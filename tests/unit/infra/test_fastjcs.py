"""infra.fastjcs writes exactly the bytes of contracts' canonical JSON, through orjson
where it can."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.contracts import canonical as contract
from lintas.contracts import parse_message
from lintas.infra import canonical as fastjcs

_json_text = st.characters(codec="utf-8") | st.sampled_from(
    ["\x00", "\x08", "\x0c", "\x1f", "\x7f", "\u2028", "\ufeff", "\U0001f600", '"', "\\", "é"]
)
_strings = st.text(_json_text, max_size=12)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1])
    | _strings,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(_json_text, max_size=6) | st.text(max_size=6), inner, max_size=4)
        | st.dictionaries(st.text("abcdefgh_0", max_size=6), inner, max_size=4)
    ),
    max_leaves=24,
)


@settings(deadline=None)  # the examples the profile runs (tests/conftest.py)
@given(st.dictionaries(st.text(max_size=6), _values, max_size=5), st.booleans())
def test_the_same_bytes_as_the_contracts(value: dict[str, Any], ascii_only: bool) -> None:
    parsed = parse_message(json.dumps(value, ensure_ascii=ascii_only).encode())
    assert contract.parsed_plain(parsed)
    assert fastjcs.canonical_json(parsed) == contract.canonical_json(parsed)
    assert fastjcs.signing_input(parsed) == contract.signing_input(parsed)
    assert fastjcs.canonical_json(value) == contract.canonical_json(value)  # not parsed
    built = contract.plain(value)  # a document built in code, as a receipt is
    assert contract.parsed_plain(built)
    assert fastjcs.canonical_json(built) == contract.canonical_json(value)


def test_a_receipt_built_in_code_is_written_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    receipt = {"event_id": "e1", "seq": 7, "admitted_at": "2026-12-07T10:00:00+00:00"}
    _contracts_refuse(monkeypatch)
    assert fastjcs.canonical_json(contract.plain(receipt)) == (
        b'{"admitted_at":"2026-12-07T10:00:00+00:00","event_id":"e1","seq":7}'
    )


class _Level(enum.IntEnum):
    HIGH = 2


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1.5},  # a fraction: the general encoder refuses it
        {"a": 1.0},
        {"a": _Level.HIGH},  # a subclass: the C encoder writes 2, str() "_Level.HIGH"
        {"a": ("x", 1)},  # a tuple, not what parsing gives
        {"a": {"b": [{"c": object()}]}},  # not JSON at all, deep inside
    ],
)
def test_a_built_document_beyond_what_parsing_gives_stays_general(value: dict[str, Any]) -> None:
    assert contract.plain(value) is value


class _Refused(Exception):
    pass


def _contracts_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_value: Any) -> bytes:
        raise _Refused

    monkeypatch.setattr(contract, "canonical_json", refuse)


def test_an_envelope_is_written_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    envelope = parse_message(
        b'{"type":"case.opened","id":"x","signature":"sig","data":{"z":"caf\\u00e9\\n","a":2}}'
    )
    _contracts_refuse(monkeypatch)
    assert fastjcs.signing_input(envelope) == (
        '{"data":{"a":2,"z":"café\\n"},"id":"x","type":"case.opened"}'.encode()
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"big": 18446744073709551616}',  # beyond 64 bits
        b'{"\\u00e9": 1, "e": 2}',  # a name beyond ASCII: sorted by UTF-16 units
        b'{"a": 1.0}',  # a number written with a fraction: not plain
        b'{"deep": ' + b"[" * 300 + b"]" * 300 + b"}",  # past orjson's nesting limit
    ],
)
def test_what_orjson_cannot_write_goes_to_the_contracts(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = contract.canonical_json(parse_message(raw))
    assert fastjcs.canonical_json(parse_message(raw)) == expected
    _contracts_refuse(monkeypatch)
    with pytest.raises(_Refused):
        fastjcs.canonical_json(parse_message(raw))


def test_a_lone_surrogate_fails_as_in_the_contracts() -> None:
    parsed = parse_message(b'{"a": "\\ud800"}')
    with pytest.raises(UnicodeEncodeError):
        contract.canonical_json(parsed)
    with pytest.raises(UnicodeEncodeError):
        fastjcs.canonical_json(parsed)
