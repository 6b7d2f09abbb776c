"""Tasks that run in the background on NATS, and how they end.

A cancellation can be lost: Python 3.11's ``asyncio.wait_for``, which nats-py's requests,
fetches and connects all wait in, returns the awaited reply instead of raising when the
cancel lands as that reply arrives (CPython gh-86296). A loop around such a call (an
admission partition's fetches, a lease's renewals, a ticker, a reconnect loop) then runs
on, and whoever awaits its end waits for ever. Under a steady stream of replies one cancel
in two is lost (a loop of KV updates, cancelled 300 times: 193 ran on). So nothing here
cancels once and waits: :func:`end_tasks` asks again until the task has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import nats.errors
import structlog

__all__ = ["Background", "end_tasks"]

_log = structlog.get_logger("lintas.bus")

_ASK_AGAIN_S = 0.1
"""How long a cancelled task has to end before it is cancelled again: one that got its
cancellation ends within a few steps of the loop, and one that lost it waits no longer."""


async def end_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, within: float | None = None
) -> list[str]:
    """Cancel ``tasks`` and wait until each has ended, cancelling again those that run on;
    the names of those left after ``within`` seconds (None: wait as long as it takes).

    What the tasks raised is not raised here, nor logged by asyncio as never retrieved
    (their owner may read it: :meth:`Background.stop` raises it). The caller cancelled
    meanwhile still ends its tasks first (a task that stops its own children must not leave
    one running), then raises :class:`asyncio.CancelledError`."""
    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    asked = 0
    cancelled = False
    while pending and (left := _ASK_AGAIN_S if deadline is None else deadline - loop.time()) > 0:
        for task in pending:
            task.cancel()
        asked += 1
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


class Background:
    """``task`` running on ``nc``, which it alone uses; :meth:`stop` ends both."""

    def __init__(self, nc: Any, task: asyncio.Task[None]) -> None:
        self._nc = nc
        self._task = task

    @property
    def is_connected(self) -> bool:
        """Whether its connection is up (its process's readiness)."""
        return bool(self._nc.is_connected)

    async def stop(self) -> None:
        await end_tasks([self._task])
        # A bus already gone has nothing to close: the rest of a shutdown must go on.
        with contextlib.suppress(OSError, nats.errors.Error):
            await self._nc.close()
        if not self._task.cancelled():
            self._task.result()  # raises what ended the task, if anything did
