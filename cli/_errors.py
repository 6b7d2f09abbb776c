"""What the CLI says when something fails: on standard error, so that standard output
holds only a command's result (``lintas status --json | jq`` gets JSON or nothing)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

__all__ = ["fail"]


def fail(message: str, **options: Any) -> None:
    """Print ``message`` (rich markup) on standard error, as it is at the call: a test's
    capture or a redirection."""
    Console(stderr=True).print(message, **options)
