"""Background.stop: the task ends even if a cancellation is lost, the connection is closed
even if the bus is gone, and what ended the task is raised."""

from __future__ import annotations

import asyncio

import pytest

from lintas.infra.nats.background import Background
from lintas.infra.nats.outage import end_tasks


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


class _Stubborn:
    """A loop that loses its first ``swallowed`` cancellations, as one around a nats-py
    request does on Python 3.11 (``asyncio.wait_for`` returning the reply instead)."""

    def __init__(self, swallowed: int) -> None:
        self.swallowed = swallowed
        self.started = asyncio.Event()

    async def run(self) -> None:
        self.started.set()
        while True:
            try:
                await asyncio.sleep(0.001)
            except asyncio.CancelledError:
                if self.swallowed == 0:
                    raise
                self.swallowed -= 1


async def _running(*loops: _Stubborn) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(loop.run(), name=f"loop-{i}") for i, loop in enumerate(loops)]
    for loop in loops:
        await loop.started.wait()
    return tasks


async def test_end_tasks_ends_loops_that_lose_their_cancellations() -> None:
    tasks = await _running(_Stubborn(3), _Stubborn(0), _Stubborn(7))
    ending = asyncio.create_task(end_tasks(tasks))
    done, _ = await asyncio.wait({ending}, timeout=10)
    for task in tasks:
        task.cancel()  # unblocks a failing run; a no-op on tasks that ended
    assert ending in done, "end_tasks waited on a loop that had lost its cancellation"
    assert ending.result() == []
    assert all(task.cancelled() for task in tasks)


async def test_end_tasks_names_what_runs_on_past_its_bound() -> None:
    loop = _Stubborn(10**9)
    tasks = await _running(loop)
    try:
        assert await end_tasks(tasks, within=0.3) == ["loop-0"]
        assert not tasks[0].done()
    finally:
        loop.swallowed = 0
        await end_tasks(tasks)


async def test_a_caller_cancelled_meanwhile_still_ends_its_tasks_first() -> None:
    """A task stopping its children (admission's partition, its lease's renewal) that is
    itself cancelled must not leave a child running."""
    child = _Stubborn(5)
    tasks = await _running(child)
    parent = asyncio.create_task(end_tasks(tasks))
    await asyncio.sleep(0)
    parent.cancel()
    done, _ = await asyncio.wait({parent}, timeout=10)
    tasks[0].cancel()
    assert parent in done
    assert parent.cancelled()
    assert tasks[0].cancelled()
    assert child.swallowed == 0


async def test_what_a_task_raised_is_neither_raised_nor_left_unretrieved() -> None:
    async def fails() -> None:
        raise RuntimeError("lease lost")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    assert await end_tasks([task]) == []
    assert task._log_traceback is False  # type: ignore[attr-defined]  # retrieved
