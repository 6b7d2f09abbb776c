"""What a stored head's headers say about the case's message before it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lintas.contracts import case_filter, new_case_id
from lintas.infra.reads import _head_of

CASE = new_case_id()
SEQ = "Nats-Expected-Last-Subject-Sequence"
SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"


def _raw(headers: dict[str, str] | None) -> SimpleNamespace:
    return SimpleNamespace(seq=42, data=b'{"id": "x"}', subject="s", headers=headers)


def test_a_publish_held_to_the_case_names_the_case_sequence_before_it() -> None:
    raw = _raw({SEQ: "17", SUBJECT: case_filter(CASE), "Nats-Msg-Id": "x"})
    assert _head_of(raw, CASE, visible=True).prior == 17
    assert _head_of(raw, CASE, visible=False).prior == 17
    assert _head_of(_raw({SEQ: "0", SUBJECT: case_filter(CASE)}), CASE, visible=True).prior == 0


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Nats-Msg-Id": "x"},
        # Held to its own subject only (no filter): other subjects of the case unchecked.
        {SEQ: "17"},
        # Held to a narrower filter, or to another case's.
        {SEQ: "17", SUBJECT: "lintas.kemlu.all.*.*." + CASE},
        {SEQ: "17", SUBJECT: case_filter(new_case_id())},
        {SEQ: "-1", SUBJECT: case_filter(CASE)},
        {SEQ: "17x", SUBJECT: case_filter(CASE)},
        {SEQ: "\u0661\u0667", SUBJECT: case_filter(CASE)},  # digits, not ASCII ones
    ],
)
def test_anything_else_says_nothing(headers: dict[str, str] | None) -> None:
    assert _head_of(_raw(headers), CASE, visible=True).prior is None
