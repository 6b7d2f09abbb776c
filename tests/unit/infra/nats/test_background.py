"""Background.stop: the task ends even if a cancellation is lost, the connection is closed
even if the bus is gone, and what ended the task is raised."""

from __future__ import annotations

import asyncio

import pytest

from lintas.infra.nats.background import Background


class _Connection:
    def __init__(self, error: Exception | None = None) -> None:
        self.closed = False
        self._error = error

    async def close(self) -> None:
        self.closed = True
        if self._error is not None:
            raise self._error


async def test_a_task_that_loses_a_cancellation_is_cancelled_again() -> None:
    """As a library's wait_for can swallow one (Python 3.11): the task goes on sleeping."""
    started, swallowed = asyncio.Event(), asyncio.Event()

    async def loop() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(loop())
    await started.wait()
    nc = _Connection()
    # Not under asyncio.timeout: its own cancellation would cancel the task a second time.
    stopping = asyncio.create_task(Background(nc, task).stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    if not done:
        task.cancel()
        stopping.cancel()
    assert stopping in done, "stop() waited on a task that had lost its cancellation"
    assert swallowed.is_set()
    assert task.cancelled()
    assert nc.closed


@pytest.mark.parametrize("error", [ConnectionResetError("Connection lost"), BrokenPipeError()])
async def test_a_connection_already_gone_does_not_stop_the_shutdown(error: Exception) -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    nc = _Connection(error)
    await Background(nc, task).stop()
    assert task.cancelled()
    assert nc.closed


async def test_what_ended_the_task_is_raised_after_the_connection_is_closed() -> None:
    async def fails() -> None:
        raise RuntimeError("the ticker broke")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    nc = _Connection()
    with pytest.raises(RuntimeError, match="the ticker broke"):
        await Background(nc, task).stop()
    assert nc.closed
