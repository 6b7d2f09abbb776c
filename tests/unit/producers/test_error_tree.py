"""The error tree is drawn once (lintas.contracts.errors); lintas.producers says what each
error it exports means for a publish, and draws no second tree."""

from __future__ import annotations

import re

import lintas.contracts.errors
import lintas.producers
from lintas.contracts import LintasError


def _exported_errors() -> list[str]:
    return [
        name
        for name in lintas.producers.__all__
        if isinstance(cls := getattr(lintas.producers, name), type) and issubclass(cls, LintasError)
    ]


def test_every_error_producers_export_is_in_the_one_tree_and_in_its_list() -> None:
    tree = lintas.contracts.errors.__doc__ or ""
    listed = lintas.producers.__doc__ or ""
    assert _exported_errors()
    for name in _exported_errors():
        assert re.search(rf"^[ │├└─]+{name}\b", tree, re.MULTILINE), name
        assert f":class:`{name}`" in listed or name in {"LintasError"}, name


def test_producers_draw_no_second_tree() -> None:
    assert "├──" not in (lintas.producers.__doc__ or "")
