"""The settings every test starts from (the ``settings`` fixture's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lintas.infra.settings import Settings


def isolated_settings(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of ``data_dir``, deaf to the developer's own ``LINTAS_*`` variables (taken
    away through ``monkeypatch``); the numbers differ from the defaults, so a test cannot
    pass by matching a default. The ``settings`` fixture's, and those of a fixture of a
    wider scope that makes a data directory once for its tests to copy (with a monkeypatch
    of its own: ``pytest.MonkeyPatch.context()``)."""
    for name in list(os.environ):
        if name.startswith("LINTAS_") and not name.startswith("LINTAS_TEST_"):
            monkeypatch.delenv(name)
    return Settings(
        data_dir=data_dir,
        duplicate_window_s=42.0,
        ack_wait_s=7.5,
        max_deliver=5,
        batch_size=16,
    )
