"""Canonical JSON (RFC 8785) as far as lintas envelopes need it."""

from __future__ import annotations

import pytest

from lintas.contracts import canonical_json, signing_input


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
