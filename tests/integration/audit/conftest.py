"""Fixtures of the auditors' command tests."""

from __future__ import annotations

import pytest

from lintas.infra.keys.signing import ensure_sealer_key
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings


@pytest.fixture(name="cli_env")
def cli_env_fixture(
    nats_server: EmbeddedNats, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The CLI sees the test's data dir and bus: the platform's host, whose data dir holds
    the sealer's key (`lintas up` makes it there), as `lintas export` needs."""
    ensure_sealer_key(settings)
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LINTAS_NATS_URL", nats_server.url)
    monkeypatch.setenv("LINTAS_STREAM", settings.stream)
    return settings
