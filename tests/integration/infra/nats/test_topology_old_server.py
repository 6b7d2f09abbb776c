"""Against a real nats-server older than 2.10, which ignores ``filter_subjects``.

Skipped unless one is found: ``LINTAS_TEST_OLD_NATS_SERVER``, else ``/usr/sbin/nats-server``
(Debian 12's package is 2.9.10). lintas refuses to launch such a server itself, but an
external one (``LINTAS_NATS_URL``) may be that old.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext

from lintas.contracts.subjects import inbound_filters
from lintas.infra.nats import embedded
from lintas.infra.nats.bus import connect
from lintas.infra.nats.embedded import EmbeddedNats, UnsupportedNatsServer, find_nats_server
from lintas.infra.nats.topology import (
    TopologyConflict,
    TopologyNotApplied,
    agency_consumer,
    agency_sent_consumer,
    declare,
    ensure_consumer,
    ensure_stream,
)
from lintas.infra.settings import Settings

pytestmark = pytest.mark.nats


def _old_server() -> Path | None:
    path = Path(os.environ.get("LINTAS_TEST_OLD_NATS_SERVER", "/usr/sbin/nats-server"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        return None
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"v(\d+)\.(\d+)\.", out)
    if found is None or (int(found[1]), int(found[2])) >= (2, 10):
        return None
    return path


OLD_SERVER = _old_server()
requires_old_server = pytest.mark.skipif(
    OLD_SERVER is None, reason="no nats-server older than 2.10 on this machine"
)


@requires_old_server
def test_lintas_refuses_to_launch_it() -> None:
    assert OLD_SERVER is not None
    with pytest.raises(UnsupportedNatsServer, match=re.escape(str(OLD_SERVER))):
        find_nats_server(OLD_SERVER)


@pytest.fixture
async def old_js(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[JetStreamContext]:
    assert OLD_SERVER is not None
    # Launched anyway, standing in for an old external server.
    monkeypatch.setattr(embedded, "find_nats_server", lambda binary: binary)
    async with EmbeddedNats(tmp_path / "old-store", binary=OLD_SERVER) as server:
        nc = await nats.connect(server.url)
        try:
            yield nc.jetstream()
        finally:
            await nc.close()


@requires_old_server
async def test_a_consumer_of_several_subjects_is_refused_not_left_reading_everything(
    old_js: JetStreamContext, settings: Settings
) -> None:
    await ensure_stream(old_js, settings)
    # One filter is a field every server knows.
    sent = agency_sent_consumer("kp2mi")
    assert await ensure_consumer(old_js, settings.stream, sent, settings) == "created"

    spec = agency_consumer("kp2mi")
    with pytest.raises(TopologyNotApplied, match=r"2\.10") as caught:
        await ensure_consumer(old_js, settings.stream, spec, settings)
    assert caught.value.differences == {"filter_subjects": ([], sorted(inbound_filters("kp2mi")))}
    # Left for an operator to see, and reported as a conflict from then on.
    with pytest.raises(TopologyConflict) as again:
        await declare(old_js, settings, [sent, spec])
    assert not isinstance(again.value, TopologyNotApplied)
    assert set(again.value.differences) == {"filter_subjects"}


@requires_old_server
async def test_lintas_refuses_to_connect_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an external server (LINTAS_NATS_URL) it is refused at connect, before a stream
    or consumer is declared on it."""
    assert OLD_SERVER is not None
    monkeypatch.setattr(embedded, "find_nats_server", lambda binary: binary)
    async with EmbeddedNats(tmp_path / "old-store", binary=OLD_SERVER) as server:
        with pytest.raises(UnsupportedNatsServer, match=r"nats-server v2\.9\.\d+; lintas needs"):
            await connect(server.url, "lintas-test", attempts=0)
