"""What ``--json`` prints: one JSON document on standard output, and nothing else there
(failures go to standard error, :mod:`lintas.cli._errors`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from lintas.contracts.redaction import printable_json

__all__ = ["print_json"]


def print_json(console: Console, doc: Any) -> None:
    """``doc`` as indented JSON, exactly: no markup, emoji codes, wrapping or cropping
    (``Console.out``), and no character that could drive a terminal (each escaped, as JSON
    reads it back)."""
    console.out(printable_json(doc), highlight=False)
