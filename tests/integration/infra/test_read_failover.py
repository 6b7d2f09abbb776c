"""The read service's failover: two instances (real ``lintas run reads`` processes) on a
bus with authorization on; one is killed, and an agency's requests are still answered,
each within its first timeout, by the one left."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lintas.contracts import new_case_id
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from lintas.infra.reads import ServiceReads
from tests.support.secured import Client, Hub, secured_hub

pytestmark = [pytest.mark.nats, pytest.mark.slow]

REQUESTS = 40


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with secured_hub(tmp_path) as hub:
        yield hub


async def _reads(hub: Hub, log: Path) -> asyncio.subprocess.Process:
    """``lintas run reads`` as the platform, once it serves (it says so on stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    env |= {
        "LINTAS_NATS_URL": hub.url,
        "LINTAS_DATA_DIR": str(hub.settings.data_dir),
        "LINTAS_AGENCIES": json.dumps(list(hub.settings.agencies)),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lintas.cli", "run", "reads",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=log.open("ab"),
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
    assert b"read service up" in line, (await asyncio.to_thread(log.read_text))[-2000:]
    return proc


async def test_a_killed_instance_does_not_hold_up_the_requests(hub: Hub, tmp_path: Path) -> None:
    settings = hub.settings
    platform = await Client.open(hub.url, settings, "platform")
    kemlu = await Client.open(hub.url, settings, "kemlu")
    procs: list[asyncio.subprocess.Process] = []
    try:
        await declare_platform(platform.js(), settings, deployment_consumers(["kp2mi"]))
        case_id = new_case_id()
        writer = await Client.open(hub.url, settings, "admission")  # the log's only writer
        ack = await writer.js().publish(
            f"lintas.kemlu.kp2mi.case.opened.{case_id}", b"{}", stream=settings.stream
        )
        await writer.close()
        for n in range(2):
            procs.append(await _reads(hub, tmp_path / f"reads-{n}.log"))
        # No retry after a timeout here: each answer must come from the first request.
        reads = ServiceReads(kemlu.conn, "kemlu", timeout=5.0)
        assert (await reads.head(case_id)).seq == ack.seq

        procs[0].send_signal(signal.SIGKILL)
        await procs[0].wait()
        timeouts = 0
        original = kemlu.conn.request

        async def counted(*args: object, **kw: object) -> object:
            try:
                return await original(*args, **kw)  # type: ignore[arg-type]
            except TimeoutError:
                nonlocal timeouts
                timeouts += 1
                raise

        kemlu.conn.request = counted  # type: ignore[method-assign]
        heads = await asyncio.gather(*(reads.head(case_id) for _ in range(REQUESTS)))
        assert [h.seq for h in heads] == [ack.seq] * REQUESTS
        assert timeouts == 0  # none went to the dead instance
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        await kemlu.close()
        await platform.close()


async def test_a_frozen_instance_does_not_hold_up_the_requests(hub: Hub, tmp_path: Path) -> None:
    """One of two instances is SIGSTOPped: still connected as far as the server knows (for
    minutes, until its pings go unanswered), it is handed about half the requests and
    answers none. Each request must still be answered, by the other, within its bound."""
    settings = hub.settings
    platform = await Client.open(hub.url, settings, "platform")
    kemlu = await Client.open(hub.url, settings, "kemlu")
    procs: list[asyncio.subprocess.Process] = []
    try:
        await declare_platform(platform.js(), settings, deployment_consumers(["kp2mi"]))
        case_id = new_case_id()
        writer = await Client.open(hub.url, settings, "admission")
        ack = await writer.js().publish(
            f"lintas.kemlu.kp2mi.case.opened.{case_id}", b"{}", stream=settings.stream
        )
        await writer.close()
        for n in range(2):
            procs.append(await _reads(hub, tmp_path / f"reads-{n}.log"))
        reads = ServiceReads(kemlu.conn, "kemlu", timeout=5.0)
        assert (await reads.head(case_id)).seq == ack.seq

        procs[0].send_signal(signal.SIGSTOP)
        loop = asyncio.get_running_loop()

        async def timed() -> tuple[int, float]:
            began = loop.time()
            head = await reads.head(case_id)
            return head.seq, loop.time() - began

        answers = await asyncio.gather(*(timed() for _ in range(REQUESTS)))
        # Each answered (one try, then one more after a timeout, left about a quarter of
        # them to fail), and most at once: a copy reached the live instance.
        assert [seq for seq, _ in answers] == [ack.seq] * REQUESTS
        took = sorted(took for _, took in answers)
        assert took[-1] < 2 * reads.timeout
        assert took[len(took) // 2] < 1.0, took
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
        await kemlu.close()
        await platform.close()
