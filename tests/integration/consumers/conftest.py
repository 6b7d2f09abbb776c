"""Fixtures of the consumers' integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from nats.js import JetStreamContext

from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import declare_platform, watchdog_consumer
from lintas.infra.settings import Settings
from tests.support.watchdog import Platform


@pytest.fixture
def deadline_settings(settings: Settings, database_url: str | None) -> Settings:
    # Odd durations, so that no test passes by matching a default.
    return settings.model_copy(
        update={
            "database_url": database_url,
            "due_document": timedelta(days=5),
            "escalate_referral": timedelta(days=3),
            "escalate_document": timedelta(days=4),
            "escalate_rehabilitation": timedelta(hours=30),
            "due_rehabilitation": timedelta(days=1),
        }
    )


@pytest.fixture
async def platform(
    nats_server: EmbeddedNats, js: JetStreamContext, deadline_settings: Settings
) -> AsyncIterator[Platform]:
    await declare_platform(js, deadline_settings, [watchdog_consumer()])
    platform = Platform(nats_server.url, js, deadline_settings)
    try:
        yield platform
    finally:
        for replica in list(platform.replicas):
            await platform.stop(replica)
