"""Loops around nats-py requests on a real nats-server, ended however often a cancellation
is lost (Python 3.11's ``asyncio.wait_for``, CPython gh-86296): what admission's lease
renewals and partitions, the watchdog's ticker and the checkpointer are."""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from lintas.infra.nats.outage import end_tasks

pytestmark = pytest.mark.asyncio

ROUNDS = 20


async def _renewing(kv: Any, key: str, renewed: asyncio.Event) -> None:
    """A lease renewed back to back: a KV update is a request, waited in wait_for."""
    revision = await kv.put(key, b"held")
    while True:
        revision = await kv.update(key, b"held", last=revision)
        renewed.set()


async def test_renewal_loops_end_however_often_a_cancel_is_lost(nats_client: NATS) -> None:
    kv = await nats_client.jetstream().create_key_value(bucket="LEASES")
    ran_on = 0
    for round_ in range(ROUNDS):
        renewed = asyncio.Event()
        loop = asyncio.create_task(_renewing(kv, f"p{round_}", renewed))
        await renewed.wait()
        await asyncio.sleep(random.uniform(0.002, 0.02))  # somewhere in a renewal
        loop.cancel()
        done, _ = await asyncio.wait({loop}, timeout=0.2)
        ran_on += not done
        ending = asyncio.create_task(end_tasks([loop]))
        finished, _ = await asyncio.wait({ending}, timeout=10)
        assert ending in finished, f"round {round_}: the loop ran on, cancelled again and again"
        assert loop.cancelled()
    print(f"Python {sys.version.split()[0]}: {ran_on} of {ROUNDS} loops ran on after one cancel")
    if sys.version_info < (3, 12):  # fixed there: one cancel always lands
        assert ran_on, "the premise: on Python 3.11 some renewal loop loses its cancellation"
