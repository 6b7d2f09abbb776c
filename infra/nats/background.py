"""A task that runs in the background on a NATS connection of its own (the watchdog's
ticker, the checkpointer): stopping it ends both."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats.errors

__all__ = ["Background"]

# A cancellation can be lost: Python 3.11's asyncio.wait_for (which nats-py's requests use)
# swallows one that arrives as the awaited reply does, and the task then runs on. So
# stop() asks again until the task has ended, this often.
_ASK_AGAIN_S = 0.5


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
        while not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=_ASK_AGAIN_S)
        # A bus already gone has nothing to close: the rest of a shutdown must go on.
        with contextlib.suppress(OSError, nats.errors.Error):
            await self._nc.close()
        if not self._task.cancelled():
            self._task.result()  # raises what ended the task, if anything did
