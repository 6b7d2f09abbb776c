"""Tasks that lose their cancellation (Python 3.11's wait_for, CPython gh-86296) and
reconnect loops that outlive their client: :func:`end_tasks`, :func:`end_reconnects` and
:func:`run_to_end` end them, so that stopping never waits for ever and a process that used
the bus always exits."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from lintas.infra.nats.outage import end_reconnects, end_tasks, run_to_end


class Client:
    """Named as nats-py's client is: its ``_attempt_reconnect`` loses the first
    ``swallowed`` cancellations, as nats-py's does on Python 3.11 when a cancel lands as a
    refused connect completes inside ``asyncio.wait_for``, and tries again."""

    def __init__(self, swallowed: int) -> None:
        self.swallowed = swallowed
        self.tries = 0

    async def _attempt_reconnect(self) -> None:
        while True:
            try:
                self.tries += 1
                await asyncio.sleep(0.001)  # a connect attempt, refused
            except asyncio.CancelledError:
                if self.swallowed == 0:
                    raise
                self.swallowed -= 1


async def test_a_reconnect_loop_that_loses_its_cancellations_is_ended() -> None:
    client = Client(swallowed=3)
    loop = asyncio.get_running_loop().create_task(client._attempt_reconnect())
    await asyncio.sleep(0)
    loop.cancel()  # what the client's close does, once
    await asyncio.wait({loop}, timeout=0.2)
    assert not loop.done()  # the premise: one cancel did not end it
    assert await end_reconnects() == []
    assert loop.cancelled()


async def test_other_tasks_are_left_alone() -> None:
    other = asyncio.get_running_loop().create_task(asyncio.sleep(5))
    try:
        assert await end_reconnects() == []
        assert not other.done()
    finally:
        other.cancel()


async def test_a_loop_that_never_ends_is_named_after_the_bound() -> None:
    client = Client(swallowed=10**9)
    loop = asyncio.get_running_loop().create_task(client._attempt_reconnect(), name="stuck")
    await asyncio.sleep(0)  # started: a task cancelled before its first step just ends
    try:
        assert await end_reconnects(within=0.3) == ["stuck"]
    finally:
        client.swallowed = 0
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


@pytest.mark.timeout(30)
def test_run_to_end_returns_once_the_loop_left_behind_has_ended() -> None:
    """``asyncio.run`` alone would wait for the loop for ever (the test then times out)."""
    client = Client(swallowed=5)
    held: list[asyncio.Task[None]] = []

    async def main() -> int:
        held.append(asyncio.get_running_loop().create_task(client._attempt_reconnect()))
        await asyncio.sleep(0.01)
        return 7

    assert run_to_end(main()) == 7
    assert held[0].cancelled()


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


async def test_end_tasks_cancels_once_even_with_no_time_left() -> None:
    tasks = await _running(_Stubborn(0))
    assert await end_tasks(tasks, within=0) == ["loop-0"]
    await asyncio.wait(tasks, timeout=5)
    assert tasks[0].cancelled()


async def test_end_tasks_leaves_its_caller_out() -> None:
    """Passed every task of the loop, as run_to_end passes them, it does not wait on itself."""
    test = asyncio.current_task()

    async def ends_the_others() -> list[str]:
        return await end_tasks(t for t in asyncio.all_tasks() if t is not test)

    ending = asyncio.create_task(ends_the_others())
    done, _ = await asyncio.wait({ending}, timeout=5)
    assert ending in done
    assert ending.result() == []


def test_run_to_end_says_what_a_task_left_behind_raised() -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("closing on a dead connection") from None

    async def main() -> None:
        asyncio.get_running_loop().create_task(fails_when_cancelled(), name="relay")
        await asyncio.sleep(0.01)

    with capture_logs() as logs:
        run_to_end(main())
    assert {
        "event": "process.task_failed",
        "task": "relay",
        "error": "RuntimeError",
        "log_level": "warning",
    } in logs
