"""What of an event a person may be shown (lintas.contracts.redaction): hostile strings
escaped, personal and unknown fields masked."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest

from lintas.contracts.redaction import (
    FREE_TEXT,
    PERSONAL,
    UNKNOWN,
    UNKNOWN_TYPE,
    printable,
    printable_json,
    redacted_data,
    redacted_event,
)

# What an attacker puts in a free-text field: a terminal escape that clears the screen
# and paints a fake line, a NUL, a forged newline, the bidirectional controls that reorder
# what follows (U+202E RIGHT-TO-LEFT OVERRIDE, the isolates U+2066..2069), zero-width and
# line-separator characters, a lone surrogate and a tag character outside the BMP.
ATTACKS = [
    "\x1b[2J\x1b[31mverified\x1b[0m",
    "Nunukan\x00hidden",
    "ok\nFAILED forged line",
    "exe.\u202etxt",
    "\u2066abc\u2069\u2067\u2068",
    "zero\u200bwidth\u200d\ufeff",
    "line\u2028para\u2029",
    "\ud800",
    "tag\U000e0041",
    "\x7f\x9b",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_printable_leaves_no_character_that_hides_or_reorders_text(text: str) -> None:
    shown = printable(text)
    hidden = [
        c for c in shown if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
    ]
    assert hidden == []
    # Each one is written out where it was, as JSON writes it: nothing silently dropped.
    assert json.loads(f'"{shown}"') == text


def test_printable_keeps_letters_of_every_script_and_plain_text() -> None:
    for text in ("Kabupaten Nunukan", "KJRI Jeddah — جدة", "Dinsos 中文 é", "a\\u202e b"):
        assert printable(text) == text


def test_printable_json_reads_back_as_the_same_value_and_shows_nothing_hidden() -> None:
    value = {"name": "exe.\u202etxt", "nested": ["\x1b[31m", "tag\U000e0041"], "n": 3}
    text = printable_json(value)
    assert "\u202e" not in text
    assert "\x1b" not in text
    assert "\U000e0041" not in text
    assert json.loads(text) == value
    assert "\\u202e" in text


OPENED: dict[str, Any] = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY", "responsible_office": "KJRI-MYBKI"},
    "risk_level": "high",
    "child": {"alg": "A256GCM", "gen": 1, "iv": "A" * 16, "ct": "B" * 30},
}


def test_known_fields_are_shown_personal_ones_masked() -> None:
    shown = redacted_data("case.opened", 4, OPENED)
    assert shown == {**OPENED, "child": PERSONAL}


def test_a_field_the_contract_does_not_know_is_masked_at_any_depth() -> None:
    data = {
        **OPENED,
        "child_name": "Siti Aminah",  # what broke the contract
        "location": {**OPENED["location"], "village_head": "Pak Budi"},
        "Siti Aminah binti Ahmad": "born 2015-04-01",  # the name is the data
        "jurisdiction": ["not", "an", "object"],
    }
    shown = redacted_data("case.opened", 4, data)
    text = json.dumps(shown)
    for value in ("Siti", "Budi", "2015-04-01", '"not"'):
        assert value not in text
    assert shown["child_name"] == UNKNOWN
    assert shown["location"]["village_head"] == UNKNOWN
    assert shown["location"]["subdivision"] == "MY-12"
    assert shown["[unknown field 1]"] == UNKNOWN
    assert shown["jurisdiction"] == UNKNOWN  # a shape the contract does not declare


def test_free_text_an_older_version_carried_in_clear_is_not_shown() -> None:
    # v3 carried names where v4 carries codes: whatever was sent there is not shown.
    opened = {
        **OPENED,
        "location": {"country": "MY", "subdivision": "MY-12", "name": "Siti Aminah"},
        "jurisdiction": {"country": "MY", "responsible_office": "born 2015-04-01"},
    }
    shown = redacted_data("case.opened", 3, opened)
    assert shown["location"] == {"country": "MY", "subdivision": "MY-12", "name": FREE_TEXT}
    assert shown["jurisdiction"] == {"country": "MY", "responsible_office": FREE_TEXT}
    issued = {
        "kind": "kk",
        "number": OPENED["child"],
        "issuing_office": "Siti Aminah, 2015-04-01",
        "issuing_office_code": "65.03",
        "issued_on": "2024-03-02",
    }
    shown = redacted_data("document.issued", 3, issued)
    assert shown["issuing_office"] == FREE_TEXT
    assert shown["issuing_office_code"] == "65.03"  # constrained: it was shown, and is
    assert "Siti" not in json.dumps(shown)
    overridden = {"officer_role": "Siti", "legal_basis": "x", "scopes": [], "agencies": []}
    shown = redacted_data("consent.overridden", 1, overridden)
    assert (shown["officer_role"], shown["legal_basis"]) == (FREE_TEXT, FREE_TEXT)


def test_an_older_version_is_read_by_its_own_contract_an_unknown_type_not_at_all() -> None:
    # referral.requested v1 carried its notes in the clear: still personal, still masked.
    shown = redacted_data(
        "referral.requested", 1, {"referral_id": "ref-1", "service": "x", "notes": "Siti"}
    )
    assert shown["referral_id"] == "ref-1"
    assert shown["notes"] == PERSONAL
    # A version this build does not know is read by the newest: unknown fields still masked.
    assert redacted_data("case.opened", 99, {"child_name": "Siti"}) == {"child_name": UNKNOWN}
    assert redacted_data("no.such", 1, {"a": "Siti"}) == UNKNOWN_TYPE


def test_an_envelope_shows_its_attributes_and_masks_what_it_does_not_know() -> None:
    doc = {
        "specversion": "1.0",
        "id": "x",
        "type": "case.opened",
        "dataversion": 4,
        "source": "kemlu",
        "childname": "Siti",
        "subject": {"nested": "Siti"},
        "data": {**OPENED, "child_name": "Siti"},
    }
    shown = redacted_event(doc)
    assert "Siti" not in json.dumps(shown)
    assert shown["source"] == "kemlu"
    assert shown["childname"] == UNKNOWN
    assert shown["subject"] == UNKNOWN
    assert shown["data"]["child"] == PERSONAL
    assert redacted_event({"type": 3, "data": {"a": "Siti"}})["data"] == UNKNOWN_TYPE
