"""How a long-running process lives through the bus going away, and when it gives up.

A process connected to nothing is the worst way to fail: its supervisor sees it alive, and
the work it should do silently stops. So a long-running process (``lintas run``, ``lintas
up``) reconnects forever to the address it has (the embedded server comes back on the port
it had: :mod:`lintas.infra.nats.bus`), and an :class:`Outage` follows its connections: when
one has been disconnected for longer than ``LINTAS_BUS_LOST_EXIT_S``, or was closed for
good, the process stops cleanly and exits with :data:`EXIT_BUS_LOST`, for its supervisor
(systemd, compose, Kubernetes) to start it again.

However it ends, :func:`end_reconnects` makes sure no reconnect loop outlives its client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog

from lintas.infra.nats.background import end_tasks

__all__ = ["EXIT_BUS_LOST", "Outage", "end_reconnects", "run_to_end"]

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


_T = TypeVar("_T")
_RECONNECT_LOOP = "Client._attempt_reconnect"  # nats-py's, FastStream's clients included
_END_S = 5.0


async def end_reconnects(within: float = _END_S) -> list[str]:
    """Cancel the reconnect loops of nats-py clients still running, again and again until
    they end (:func:`~lintas.infra.nats.background.end_tasks`, at most ``within``
    seconds); the names of those that did not.

    A client closed while it reconnects cancels its reconnect task once, and nats-py's
    loop catches every error but that cancellation and tries again: for ever, on a
    connection that reconnects forever, once the cancellation is lost (seen under load:
    ``lintas run reads`` said it was stopping for its supervisor, and hung). Here
    while the event loop goes on (a test's, between tests); :func:`run_to_end` ends
    every task a command left."""
    me = asyncio.current_task()
    loops = [
        task
        for task in asyncio.all_tasks()
        if task is not me and getattr(task.get_coro(), "__qualname__", "") == _RECONNECT_LOOP
    ]
    left = await end_tasks(loops, within=within)
    if left:
        _log.warning("bus.reconnect_loop_left", tasks=len(left))
    return left


def run_to_end(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)``, ending every task still running before the loop closes
    (:func:`~lintas.infra.nats.background.end_tasks`): ``asyncio.run`` cancels each once,
    and waits for ever on one that lost it (a client's reconnect loop, above all). What a
    process that used the bus runs its work with."""

    async def whole() -> _T:
        try:
            return await main
        finally:
            me = asyncio.current_task()
            left = await end_tasks([t for t in asyncio.all_tasks() if t is not me], within=_END_S)
            if left:
                _log.warning("process.tasks_left", tasks=len(left), names=left)

    return asyncio.run(whole())
