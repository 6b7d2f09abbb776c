"""Canonical JSON (RFC 8785) as far as lintas envelopes need it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lintas.contracts import canonical_json, message_hash, parse_message, signing_input


def test_members_sort_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3's example of sorting.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(value)
    order = canonical_json(value).decode()
    positions = sorted(keys, key=lambda k: order.index(f'"{k}"' if k != "\r" else '"\\r"'))
    assert positions == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_strings_escape_only_what_json_stringify_escapes() -> None:
    text = 'a"b\\c\n\t\x01\x7f é €'
    assert canonical_json(text) == '"a\\"b\\\\c\\n\\t\\u0001\x7f é €"'.encode()


def test_no_whitespace_literals_and_integers() -> None:
    assert canonical_json({"b": [1, True, None, False], "a": {}}) == (
        b'{"a":{},"b":[1,true,null,false]}'
    )
    assert canonical_json(3.0) == b"3"
    with pytest.raises(ValueError, match="fractional"):
        canonical_json(0.5)


def test_a_signature_covers_everything_but_itself() -> None:
    envelope = {"id": "x", "signature": "sig", "keyid": "k", "data": {"z": 1, "a": 2}}
    assert signing_input(envelope) == b'{"data":{"a":2,"z":1},"id":"x","keyid":"k"}'


# -- the C encoder's fast path for parsed messages -------------------------------------------

_json_text = st.characters(codec="utf-8") | st.sampled_from(
    ["\x00", "\x1f", "\x7f", "\u2028", "\ufeff", "\U0001f600", '"', "\\", "\n", "é", "\ufb33"]
)
_strings = st.text(_json_text, max_size=12)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _strings,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(_json_text, max_size=6) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(deadline=None)  # the examples the profile runs (tests/conftest.py)
@given(_values)
def test_a_parsed_message_is_written_as_the_general_encoder_writes_it(value: object) -> None:
    raw = json.dumps(value, ensure_ascii=bool(hash(repr(value)) % 2)).encode()
    parsed = parse_message(raw)
    assert parsed == value
    assert canonical_json(parsed) == canonical_json(json.loads(raw))
    if isinstance(value, dict):
        assert signing_input(parsed) == signing_input(json.loads(raw))
        assert message_hash(raw) == message_hash(raw, json.loads(raw))


def test_fractions_and_non_ascii_names_take_the_general_encoder() -> None:
    assert canonical_json(parse_message(b'{"a": 1.0, "b": [2.00]}')) == b'{"a":1,"b":[2]}'
    with pytest.raises(ValueError, match="fractional"):
        canonical_json(parse_message(b'{"a": 0.5}'))
    order = canonical_json(parse_message('{"\ufb33": 1, "\U0001f600": 2}'.encode()))
    assert order == '{"\U0001f600":2,"\ufb33":1}'.encode()
    assert type(parse_message(b'{"a": [{"b": 1}]}')) is not dict  # the fast path was taken
    assert type(parse_message(b'{"a": 1.5}')) is dict
    assert parse_message(b"{not json") is None
    assert parse_message(b'{"a": NaN}') is not None  # Python reads it; the encoder refuses it
