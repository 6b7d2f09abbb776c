"""Reconnect loops that outlive their client: :func:`end_reconnects` and
:func:`run_to_end` end them, so that a process that used the bus always exits."""

from __future__ import annotations

import asyncio

import pytest

from lintas.infra.nats.outage import end_reconnects, run_to_end


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
