"""Where the repository's own files are, wherever a test module sits under tests/."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO"]

REPO = Path(__file__).resolve().parents[2]
"""The checkout's root: pyproject.toml, bench/, docs/, tests/fixtures/."""
