"""How the long-running commands catch Ctrl-C and SIGTERM (cli/_signals.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal

import pytest

from lintas.cli._signals import stop_on_signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_before_the_wait_stops_the_wait(signum: int) -> None:
    """The race `lintas up` lost: the signal arrives after the handlers are in but before
    anything waits for it. It is kept, not raised as KeyboardInterrupt."""
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signum)
        async with asyncio.timeout(5):
            await stop.wait()
        assert stop.is_set()


async def test_the_handlers_go_when_it_ends() -> None:
    # asyncio puts back the default handler (SIG_DFL, default_int_handler for SIGINT).
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    with stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_disabled_it_installs_nothing() -> None:
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(enabled=False) as stop:
        assert signal.getsignal(signal.SIGINT) is before
        assert not stop.is_set()


def test_outside_the_main_thread_it_installs_nothing() -> None:
    """A command run in a worker thread (as tests run `main`) cannot take signals: asyncio
    refuses handlers there, which must not end the command."""

    async def inside() -> bool:
        with stop_on_signals() as stop:
            return stop.is_set()

    def run() -> bool:
        return asyncio.run(inside())

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(run).result(timeout=10) is False
