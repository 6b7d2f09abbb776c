"""Fast header reading on a real nats-server: lintas' clients (``infra.bus.connect`` and
the agency consumers' brokers) see the headers nats-py's email parser would give."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from lintas.consumers.app import attach_batches, create_broker
from lintas.infra.nats.bus import connect
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.headers import read_headers_fast
from lintas.infra.nats.topology import ConsumerSpec, ensure_consumer, ensure_stream
from lintas.infra.settings import Settings

pytestmark = pytest.mark.nats

HEADERS = [
    {
        "Nats-Msg-Id": "one",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    },
    {"Nats-Msg-Id": "two", "X-Padded": "  padded  ", "X-Colons": "a:b:c"},
    {"Nats-Msg-Id": "three", "X-Empty": ""},
]


class _Recording:
    """The email parser, keeping the blocks it is asked to read."""

    def __init__(self, parser: Any) -> None:
        self.parser, self.asked = parser, list[bytes]()

    def parsebytes(self, raw: bytes) -> Any:
        self.asked.append(raw)
        return self.parser.parsebytes(raw)

    def stored(self) -> list[bytes]:
        """The blocks of stored messages it read (not the server's status lines)."""
        return [raw for raw in self.asked if b"Nats-Msg-Id" in raw]


def _recording(nc: Any) -> _Recording:
    recording = _Recording(nc._hdr_parser._fallback)
    nc._hdr_parser._fallback = recording
    return recording


async def _publish(js: Any, subject: str, round_: int = 1) -> None:
    for headers in HEADERS:
        # Each round its own message ids: JetStream drops a repeated one.
        mine = {**headers, "Nats-Msg-Id": f"{headers['Nats-Msg-Id']}-{round_}"}
        await js.publish(subject, b"{}", headers=mine)


async def _stored_headers(nc: Client, stream: str, count: int) -> list[dict[str, str] | None]:
    sub = await nc.jetstream().subscribe("lintas.>", stream=stream, ordered_consumer=True)
    try:
        return [(await sub.next_msg(timeout=10)).headers for _ in range(count)]
    finally:
        await sub.unsubscribe()


@pytest.fixture
async def plain(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[Client]:
    """A plain nats-py client, on a stream holding the published HEADERS."""
    nc = await nats.connect(nats_server.url)
    try:
        await ensure_stream(nc.jetstream(), settings)
        await _publish(nc.jetstream(), "lintas.a.b.case.opened.C1")
        yield nc
    finally:
        await nc.close()


async def test_connect_reads_the_headers_the_email_parser_reads(
    nats_server: EmbeddedNats, settings: Settings, plain: Client
) -> None:
    fast = await connect(nats_server.url, "headers-test")
    try:
        fallback = _recording(fast)
        expected = await _stored_headers(plain, settings.stream, len(HEADERS))
        got = await _stored_headers(fast, settings.stream, len(HEADERS))
        assert got == expected
        assert [h and h["Nats-Msg-Id"] for h in got] == ["one-1", "two-1", "three-1"]
        assert got[1] is not None
        assert got[1]["X-Padded"] == "padded"
        # Stored messages came by the fast path; only the server's status lines (flow
        # control, heartbeats) may have reached the email parser.
        assert fallback.stored() == []
    finally:
        await fast.close()


async def test_a_direct_get_reads_the_same_headers(
    nats_server: EmbeddedNats, settings: Settings, plain: Client
) -> None:
    fast = await nats.connect(nats_server.url)
    read_headers_fast(fast)
    fallback = _recording(fast)
    try:
        for seq in range(1, len(HEADERS) + 1):
            want = await plain.jetstream().get_msg(settings.stream, seq, direct=True)
            got = await fast.jetstream().get_msg(settings.stream, seq, direct=True)
            assert got.headers == want.headers
            assert got.headers is not None
            assert "Nats-Time-Stamp" in got.headers
        assert fallback.asked == []
    finally:
        await fast.close()


async def test_an_agency_consumer_broker_reads_headers_fast(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    spec = ConsumerSpec("headers-test", ("lintas.>",), "headers")
    await ensure_stream(js, settings)
    await ensure_consumer(js, settings.stream, spec, settings)
    broker = create_broker(nats_server.url)
    received: list[dict[str, str] | None] = []
    first, done = asyncio.Event(), asyncio.Event()

    async def handler(msgs: list[Any], _js: Any) -> None:
        for msg in msgs:
            received.append(msg.headers)
            await msg.ack()
        if len(received) >= len(HEADERS):
            first.set()
        if len(received) >= 2 * len(HEADERS):
            done.set()

    attach_batches(broker, spec, settings, handler, in_schema=False)
    await broker.start()
    try:
        await _publish(js, "lintas.a.b.case.opened.C1")
        # The first batch may come before the parser is swapped; the next ones after.
        await asyncio.wait_for(first.wait(), 10)
        assert type(broker.connection._hdr_parser).__name__ == "_HeaderParser"
        await _publish(js, "lintas.a.b.case.opened.C2", 2)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await broker.stop()
        await nc.close()
    stored = [
        {k: v for k, v in h.items() if k == "Nats-Msg-Id" or k.startswith("X-")}
        for h in received
        if h
    ]
    assert [h["Nats-Msg-Id"] for h in stored] == [
        *("one-1", "two-1", "three-1"),
        *("one-2", "two-2", "three-2"),
    ]
    assert stored[1]["X-Padded"] == stored[4]["X-Padded"] == "padded"
    assert stored[2]["X-Empty"] == stored[5]["X-Empty"] == ""
