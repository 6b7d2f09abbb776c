"""A consumer and a publisher ride out the NATS server restarting under them."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from lintas.infra.nats.bus import connect
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from lintas.producers import Publisher
from tests.support.helpers import Applied, declare_record, publish_case, start_record

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def test_consumer_and_publisher_resume_after_a_server_restart(
    tmp_path: object, settings: Settings
) -> None:
    store = settings.data_dir / "nats-store"
    server = EmbeddedNats(store)
    await server.start()
    port = urlsplit(server.url).port
    assert port is not None
    # The publisher's connection must outlive the server: reconnect for as long as it takes
    # (what lintas' own long-running clients ask for: the watchdog's ticker, `lintas watch`).
    nc = await connect(server.url, "publisher", reconnect_forever=True)
    restarted: EmbeddedNats | None = None
    try:
        js = nc.jetstream()
        await declare_record(js, settings)
        kemlu = Publisher(js, "kemlu", stream=settings.stream)
        await publish_case(kemlu, steps=2)  # seq 1..3
        applied = Applied()
        stop, databases = await start_record(server.url, settings, [applied])
        try:
            await applied.wait_for(3)
            await server.stop()
            restarted = EmbeddedNats(store, port=port)  # same store, same address
            await restarted.start()
            await publish_case(kemlu, steps=2)  # seq 4..6, through the reconnected client
            await applied.wait_for(6, within_s=60)
        finally:
            await stop()
            databases.dispose()
        assert [seq for seq, _ in applied.events] == [1, 2, 3, 4, 5, 6]
    finally:
        await nc.close()
        await server.stop()
        if restarted is not None:
            await restarted.stop()
