"""``lintas run`` (a real subprocess) when the bus goes away as it starts its consumers:
after it has declared them, before its broker has connected.

The bus is a real nats-server behind a gate (a TCP proxy) that lets every connection
through but the broker's, which it holds unanswered, as a bus that has just gone away
does. Such a process exits 1 within seconds (its broker's first connection fails fast, as
every command's does), and SIGTERM while its broker connects ends it with 0. Before, its
broker tried again for ever, in silence, deaf to SIGTERM and outside its
``LINTAS_BUS_LOST_EXIT_S``; and it had said ``lintas runs`` already.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from tests.support.gate import Gate
from tests.support.helpers import declare_record

pytestmark = [pytest.mark.nats, pytest.mark.slow]

# What create_broker names the record's broker (it connects as the platform).
BROKER = "lintas-platform"


def _env(settings: Settings, url: str) -> dict[str, str]:
    """The same settings for the child (its declarations must match ours), on ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        env[f"LINTAS_{name.upper()}"] = (
            json.dumps(list(value)) if isinstance(value, tuple | list) else str(value)
        )
    return env | {"LINTAS_NATS_URL": url, "LINTAS_BUS_LOST_EXIT_S": "600"}


@contextlib.asynccontextmanager
async def _record(settings: Settings, url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``lintas run record`` on ``url``; killed if the test left it running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lintas.cli",
        "run",
        "record",
        env=_env(settings, url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_while_its_broker_connects_ends_cleanly(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await declare_record(js, settings)
    gate = Gate(nats_server.url, BROKER)
    async with gate, _record(settings, gate.url) as proc:
        await asyncio.wait_for(gate.met.wait(), 60)  # declared; its broker is connecting
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"lintas runs" not in out  # it never ran
    assert b"Traceback" not in err, err.decode()


async def test_a_bus_gone_before_its_broker_connects_ends_it_within_seconds(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    await declare_record(js, settings)
    gate = Gate(nats_server.url, BROKER)
    async with gate, _record(settings, gate.url) as proc:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert gate.met.is_set()  # it got as far as its broker
    # A few tries, each given up after nats-py's connect_timeout, not for ever.
    assert proc.returncode == 1, err.decode()
    assert f"cannot reach NATS at {gate.url}" in " ".join(err.decode().split())
    assert b"lintas runs" not in out
    assert b"Traceback" not in err, err.decode()
