"""No free text travels in clear in the newest version of any contract, by construction.

Every text field of every current version's schema is sealed, constrained (a pattern, an
enum or Literal, a format) or on the reasoned allow-list of
:data:`lintas.contracts.freetext.ALLOWED`. A new version that adds a free-text field fails
here until it seals the field or makes it a code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from lintas.contracts import EventData, all_models, latest
from lintas.contracts.freetext import ALLOWED, carried, free_text_paths, unconstrained_paths

CURRENT = sorted({latest(m.TYPE) for m in all_models()}, key=lambda m: m.TYPE)


@pytest.mark.parametrize("model", CURRENT, ids=lambda m: f"{m.TYPE}.v{m.VERSION}")
def test_no_current_version_carries_free_text_in_clear(model: type[EventData]) -> None:
    assert free_text_paths(model) == ()


def test_every_allowed_field_exists_and_says_why() -> None:
    walked = {(m.TYPE, p) for m in all_models() for p in unconstrained_paths(m)}
    for key, reason in ALLOWED.items():
        assert key in walked, f"{key} is allowed but no version has it: drop it"
        assert len(reason) > 20


class _Note(BaseModel):
    text: str = Field(max_length=50)


class _WithFreeText(EventData):
    TYPE: ClassVar[str] = "case.test"
    VERSION: ClassVar[int] = 1

    code: str = Field(pattern=r"^[A-Z]{2}$")
    label: str = Field(max_length=120)  # free text in clear: the walker must find it
    notes: list[_Note] = Field(default_factory=list)


def test_the_walker_finds_free_text_at_any_depth() -> None:
    # Not registered: a model the walker has never seen, with what a careless version adds.
    assert free_text_paths(_WithFreeText) == ("label", "notes[].text")
    data: dict[str, Any] = {"code": "AB", "label": None, "notes": [{"text": "Siti"}]}
    assert carried(_WithFreeText, data) == ["notes[].text"]
    assert carried(_WithFreeText, {"code": "AB", "label": "x"}) == ["label"]


def test_older_versions_with_free_text_are_found() -> None:
    found = {(m.TYPE, m.VERSION): free_text_paths(m) for m in all_models()}
    assert found[("document.issued", 3)] == ("issuing_office",)
    assert found[("case.opened", 3)] == ("jurisdiction.responsible_office", "location.name")
    assert found[("consent.overridden", 2)] == ("legal_basis", "officer_role")
    assert found[("repatriation.completed", 1)] == ("port_of_entry",)
