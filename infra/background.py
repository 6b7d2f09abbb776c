"""A task that runs in the background on a NATS connection of its own (the watchdog's
ticker, the sealer): stopping it ends both."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["Background"]


class Background:
    """``task`` running on ``nc``, which it alone uses; :meth:`stop` ends both."""

    def __init__(self, nc: Any, task: asyncio.Task[None]) -> None:
        self._nc = nc
        self._task = task

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._nc.close()
