"""``lintas run reads`` and ``lintas run admission`` (real subprocesses, each connected as
its own identity to a secured bus) when the bus goes away under them: they reconnect for
``LINTAS_BUS_LOST_EXIT_S``, then exit 75 for their supervisor, as ``lintas run AGENCY``
does; SIGTERM while they reconnect still ends them cleanly (0)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lintas.infra.nats.outage import EXIT_BUS_LOST
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from tests.support.helpers import line_with
from tests.support.secured import AGENCIES, Client, Hub, secured_hub

pytestmark = [pytest.mark.nats, pytest.mark.slow]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with secured_hub(tmp_path) as hub:
        platform = await Client.open(hub.url, hub.settings, "platform")
        try:
            await declare_platform(platform.js(), hub.settings, deployment_consumers(AGENCIES))
        finally:
            await platform.close()
        yield hub


@contextlib.asynccontextmanager
async def _running(
    hub: Hub, part: str, give_up_s: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``lintas run PART`` on the hub, with the data dir's credentials (each process picks
    its own identity's seed), once it says it is up; killed at the end if still running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    env |= {
        "LINTAS_DATA_DIR": str(hub.settings.data_dir),
        "LINTAS_NATS_URL": hub.url,
        "LINTAS_BUS_LOST_EXIT_S": give_up_s,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lintas.cli",
        "run",
        part,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        await line_with(proc.stdout, f"{'read service' if part == 'reads' else part} up on", 60)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _crashed(output: str) -> bool:
    return any(line.startswith("Traceback") for line in output.splitlines())


@pytest.mark.parametrize("part", ["reads", "admission"])
async def test_a_platform_service_whose_bus_stays_away_exits_75(hub: Hub, part: str) -> None:
    async with _running(hub, part, "1") as proc:
        await hub.server.stop()
        assert proc.stderr is not None
        said = (await asyncio.wait_for(proc.stderr.read(), 60)).decode()
        assert await asyncio.wait_for(proc.wait(), 30) == EXIT_BUS_LOST, said
    assert "the bus has been away for 1s" in " ".join(said.split())
    assert not _crashed(said), said


@pytest.mark.parametrize("part", ["reads", "admission"])
async def test_sigterm_while_a_platform_service_reconnects_ends_it_cleanly(
    hub: Hub, part: str
) -> None:
    async with _running(hub, part, "600") as proc:
        await hub.server.stop()
        assert proc.stderr is not None
        await line_with(proc.stderr, "bus.disconnected", 60)
        proc.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, rest
    assert not _crashed(rest), rest
