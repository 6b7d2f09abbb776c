"""A configured server older than lintas needs is refused at connect, before anything is
declared or published on it.

The old server here is a stand-in that speaks the first steps of the NATS protocol (INFO,
then PONG to the client's PING): enough for nats-py to connect and read the version.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from lintas.contracts.errors import PermanentError
from lintas.infra.nats.bus import connect
from lintas.infra.nats.embedded import MIN_NATS_SERVER, UnsupportedNatsServer


@asynccontextmanager
async def _server_saying(version: str) -> AsyncIterator[tuple[str, list[bytes]]]:
    heard: list[bytes] = []
    info = {
        "server_id": "stand-in",
        "version": version,
        "proto": 1,
        "headers": True,
        "jetstream": True,
        "max_payload": 1048576,
    }

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
        await writer.drain()
        while line := await reader.readline():
            heard.append(line)
            if line.startswith(b"PING"):
                writer.write(b"PONG\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"nats://127.0.0.1:{port}", heard
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("version", ["2.10.22", "2.9.10", "not-a-version"])
async def test_an_older_server_is_refused_with_what_it_is(version: str) -> None:
    async with _server_saying(version) as (url, heard):
        with pytest.raises(UnsupportedNatsServer) as caught:
            await connect(url, "lintas-test", attempts=0)
    message = str(caught.value)
    assert url in message
    assert ("v" + version if version[0].isdigit() else "an unknown version") in message
    assert ">= " + ".".join(map(str, MIN_NATS_SERVER)) in message
    assert isinstance(caught.value, PermanentError)
    assert not any(line.startswith(b"PUB") or line.startswith(b"SUB") for line in heard)


async def test_a_recent_enough_server_is_accepted() -> None:
    async with _server_saying(".".join(map(str, MIN_NATS_SERVER))) as (url, _heard):
        nc = await connect(url, "lintas-test", attempts=0)
        assert nc.is_connected
        await nc.close()


def test_the_floor_is_where_the_case_filter_of_the_chain_came() -> None:
    # Nats-Expected-Last-Subject-Sequence-Subject (the case filter of each publish to the
    # hash chain) came with nats-server 2.11; filter_subjects with 2.10.
    assert MIN_NATS_SERVER >= (2, 11, 0)
