"""How a long-running process lives through the bus going away, and when it gives up.

A process connected to nothing is the worst way to fail: its supervisor sees it alive, and
the work it should do silently stops. So a long-running process (``lintas run``, ``lintas
up``) reconnects forever to the address it has (the embedded server comes back on the port
it had: :mod:`lintas.infra.nats.bus`), and an :class:`Outage` follows its connections: when
one has been disconnected for longer than ``LINTAS_BUS_LOST_EXIT_S``, or was closed for
good, the process stops cleanly and exits with :data:`EXIT_BUS_LOST`, for its supervisor
(systemd, compose, Kubernetes) to start it again.

However it ends, nothing waits for ever on a task that lost its cancellation: on Python
3.11 ``asyncio.wait_for``, which nats-py's requests, fetches and connects all wait in,
returns the awaited reply instead of raising when the cancel lands as that reply arrives
(CPython gh-86296). A loop around such a call (an admission partition's fetches, a lease's
renewals, a ticker, a client's reconnect loop) then runs on, and whoever awaits its end
waits for ever. Under a steady stream of replies one cancel in two is lost (a loop of KV
updates on a real server, cancelled 40 times: 23 ran on). So :func:`end_tasks` asks again
until the task has ended, :func:`end_reconnects` ends reconnect loops left behind, and
:func:`run_to_end` every task a command left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import structlog

__all__ = ["EXIT_BUS_LOST", "Outage", "end_reconnects", "end_tasks", "run_to_end"]

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


_ASK_AGAIN_S = 0.1
"""How long a cancelled task has to end before it is cancelled again: one that got its
cancellation ends within a few steps of the loop, and one that lost it waits no longer."""


async def end_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, within: float | None = None
) -> list[str]:
    """Cancel ``tasks`` and wait until each has ended, cancelling again those that run on;
    the names of those left after ``within`` seconds (None: wait as long as it takes).
    Each is cancelled at least once; the caller's own task is not one of them.

    A task cancelled again while it cleans up loses the rest of its cleanup: what these
    tasks do once cancelled must be short, or survive another cancel (a connection's close
    follows them anyway). What they raised is not raised here, nor logged by asyncio as
    never retrieved (their owner may read it: a ``Background``'s stop raises it). The caller
    cancelled meanwhile still ends its tasks first (a task that stops its own children must
    not leave one running), then raises :class:`asyncio.CancelledError`: an outer timeout
    does not cut it short, as it did not cut ``gather`` short."""
    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    me = asyncio.current_task()
    tasks = [task for task in tasks if task is not me]
    pending = {task for task in tasks if not task.done()}
    asked = 0
    cancelled = False
    while pending:
        for task in pending:
            task.cancel()
        asked += 1
        left = _ASK_AGAIN_S if deadline is None else deadline - loop.time()
        if left <= 0:
            break
        try:
            _, pending = await asyncio.wait(pending, timeout=min(_ASK_AGAIN_S, left))
        except asyncio.CancelledError:
            cancelled = True
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: as gather(return_exceptions=True) would
    if asked > 1:
        _log.debug("task.cancelled_again", asked=asked, left=len(pending))
    if cancelled:
        raise asyncio.CancelledError
    return [task.get_name() for task in pending]


_T = TypeVar("_T")
_RECONNECT_LOOP = "Client._attempt_reconnect"  # nats-py's, FastStream's clients included
_END_S = 5.0


async def end_reconnects(within: float = _END_S) -> list[str]:
    """Cancel the reconnect loops of nats-py clients still running, again and again until
    they end (:func:`end_tasks`, at most ``within`` seconds); the names of those that did not.

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
    (:func:`end_tasks`, for at most 5 s): ``asyncio.run`` cancels each once, and waits
    for ever on one that lost it (a client's reconnect loop, above all). What a process
    that used the bus runs its work with."""

    async def whole() -> _T:
        try:
            return await main
        finally:
            tasks = list(asyncio.all_tasks())
            left = await end_tasks(tasks, within=_END_S)
            for task in tasks:
                # asyncio.run would have said these; end_tasks retrieved them.
                if task.done() and not task.cancelled() and task.exception() is not None:
                    error = type(task.exception()).__name__
                    _log.warning("process.task_failed", task=task.get_name(), error=error)
            if left:
                # asyncio.run cancels these once more, and waits for them.
                _log.warning("process.tasks_left", tasks=len(left), names=left)

    return asyncio.run(whole())
