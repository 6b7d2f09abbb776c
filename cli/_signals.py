"""Ctrl-C and SIGTERM: how the long-running commands end.

The handlers go in before a command starts anything, not when it begins to wait: a signal
that arrives while it starts up (or just after it has said it is up) must end it cleanly,
with exit 0, as one that arrives later does. Caught by Python's default handler instead, it
would surface as ``KeyboardInterrupt`` (exit 130) from wherever the process happened to be.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Stop", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop:
    """Set once SIGINT or SIGTERM has arrived."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


@contextmanager
def stop_on_signals(*, enabled: bool = True) -> Iterator[Stop]:
    """Within it, SIGINT and SIGTERM set the returned :class:`Stop` instead of raising.

    Enter it first thing in a command's coroutine, before anything is started.
    """
    stop = Stop()
    loop = asyncio.get_running_loop()
    # Signals reach the main thread only (a command run in a worker thread, as tests do,
    # is stopped some other way).
    main_thread = threading.current_thread() is threading.main_thread()
    signals = _SIGNALS if enabled and main_thread else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
