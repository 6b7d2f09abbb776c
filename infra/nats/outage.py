"""How a long-running process lives through the bus going away, and when it gives up.

A process connected to nothing is the worst way to fail: its supervisor sees it alive, and
the work it should do silently stops. So a long-running process (``lintas run``, ``lintas
up``) reconnects forever to the address it has (the embedded server comes back on the port
it had: :mod:`lintas.infra.nats.bus`), and an :class:`Outage` follows its connections: when
one has been disconnected for longer than ``LINTAS_BUS_LOST_EXIT_S``, or was closed for
good, the process stops cleanly and exits with :data:`EXIT_BUS_LOST`, for its supervisor
(systemd, compose, Kubernetes) to start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

__all__ = ["EXIT_BUS_LOST", "Outage"]

_log = structlog.get_logger("lintas.bus")

EXIT_BUS_LOST = 75
"""The exit status of a process that gave up waiting for the bus (EX_TEMPFAIL: try again)."""


class Outage:
    """The connections of one process, followed: :meth:`follow` gives the callbacks for
    one connection, :meth:`lost` returns once the process should give up, with why."""

    def __init__(self, give_up_s: float) -> None:
        self.give_up_s = give_up_s
        self._down: dict[str, float] = {}  # connection -> since when (loop time)
        self._closed: list[str] = []
        self._changed = asyncio.Event()
        self._stopping = False

    def follow(self, name: str) -> dict[str, Callable[[], Awaitable[None]]]:
        """``disconnected_cb``, ``reconnected_cb`` and ``closed_cb`` for connection ``name``
        (nats-py's and FastStream's keyword arguments)."""

        async def disconnected() -> None:
            if self._stopping or name in self._down:
                return
            self._down[name] = asyncio.get_running_loop().time()
            _log.warning("bus.disconnected", connection=name, give_up_s=self.give_up_s)
            self._changed.set()

        async def reconnected() -> None:
            if self._down.pop(name, None) is not None:
                _log.warning("bus.reconnected", connection=name)
            self._changed.set()

        async def closed() -> None:
            if not self._stopping:
                self._closed.append(name)
                self._changed.set()

        return {"disconnected_cb": disconnected, "reconnected_cb": reconnected, "closed_cb": closed}

    def stopping(self) -> None:
        """The process is ending on its own: connections closing now are not an outage."""
        self._stopping = True
        self._changed.set()

    async def lost(self) -> str:
        """Once a connection was closed for good, or down for longer than ``give_up_s``:
        why (never while :meth:`stopping`)."""
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            if not self._stopping:
                if self._closed:
                    return f"the connection {self._closed[0]} was closed and will not reconnect"
                if self._down:
                    name, since = min(self._down.items(), key=lambda item: item[1])
                    left = since + self.give_up_s - loop.time()
                    if left <= 0:
                        return f"the bus has been away for {self.give_up_s:g}s ({name})"
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), left)
                    continue
            await self._changed.wait()
