"""A TCP proxy that holds one named client's connection unanswered: a bus that has just
gone away, for that client only (the others pass through to the real server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from lintas.infra.nats.outage import end_tasks

__all__ = ["Gate"]


class Gate:
    """A proxy to ``upstream`` for every client but one whose CONNECT names ``name``: that
    one gets the server's INFO, then nothing, until it gives up."""

    def __init__(self, upstream: str, name: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 4222)
        self._name = name
        self.met = asyncio.Event()  # set once the named client has tried
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Gate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"nats://{host}:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await end_tasks(self._tasks)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        writer.write(await up_reader.readline())  # the server speaks first: INFO
        connect = await reader.readline()
        if connect.startswith(b"CONNECT ") and json.loads(connect[8:]).get("name") == self._name:
            self.met.set()
            up_writer.close()
            await reader.read()  # until the client gives up on this connection
            writer.close()
            return
        up_writer.write(connect)
        self._spawn(_pump(up_reader, writer))
        self._spawn(_pump(reader, up_writer))


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()
