"""Waiting for Ctrl-C or SIGTERM: how the long-running commands end."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["until_signalled"]


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
