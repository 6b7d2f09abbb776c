"""A task that runs in the background on a NATS connection of its own (the watchdog's
ticker, the checkpointer): stopping it ends both, however often its cancellation is lost
(:func:`~lintas.infra.nats.outage.end_tasks`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors

from lintas.infra.nats.outage import end_tasks

__all__ = ["Background"]


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
