"""Fault tests with real processes: SIGKILL a consumer while events flow.

Each prints the lost / duplicated / quarantined counts it asserts on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from sqlmodel import Session, select

from lintas.consumers.app import Databases
from lintas.consumers.projections import RecordCaseRow, load_records
from lintas.consumers.quarantine import list_entries
from lintas.infra.db import Tracking, ensure_tables
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.settings import Settings
from tests.support.helpers import declare_record, publish_case, signed

pytestmark = [pytest.mark.nats, pytest.mark.slow]

CASES = 500
STEPS = 9  # events per case: case.opened + 9 document requests = 10
EVENTS = CASES * (STEPS + 1)
KILLS = 6


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings for a child process (its declarations must match ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        env[f"LINTAS_{name.upper()}"] = (
            json.dumps(list(value)) if isinstance(value, tuple | list) else str(value)
        )
    return env


async def _start_consumer(url: str, settings: Settings, log: Path) -> asyncio.subprocess.Process:
    env = settings_env(settings.model_copy(update={"nats_url": url}))
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lintas.cli", "run", "record", env=env, stdout=sink, stderr=sink
        )


def _position(databases: Databases) -> int:
    engine, _ = databases.for_consumer("record")
    ensure_tables(engine, RecordCaseRow)  # the consumer process may not have made them yet
    with Session(engine) as session:
        row = session.exec(select(Tracking).where(Tracking.consumer == "record")).first()
        return row.position if row else 0


async def _applying(
    proc: asyncio.subprocess.Process, databases: Databases, past: int, log: Path
) -> None:
    """Once the consumer process has committed beyond ``past``: it is applying."""
    try:
        async with asyncio.timeout(120):
            # Another process writes the projection and tells no one: watch its tracking row.
            while await asyncio.to_thread(_position, databases) <= past:
                if proc.returncode is not None:
                    raise AssertionError(f"it ended ({proc.returncode}) before applying anything")
                await asyncio.sleep(0.05)
    except (TimeoutError, AssertionError) as exc:
        said = await asyncio.to_thread(log.read_text)
        raise AssertionError(f"{exc}\n{said[-3000:]}") from None


async def test_sigkill_a_consumer_many_times_loses_and_duplicates_nothing(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> None:
    settings = settings.model_copy(update={"ack_wait_s": 2.0, "batch_size": 64})
    await declare_record(js, settings)
    # Keys before the first consumer starts: it reads the registry once, at start.
    kemlu, kp2mi = signed(js, settings, "kemlu"), signed(js, settings, "kp2mi")
    rng = random.Random(20261121)
    log = settings.data_dir.parent / "consumer.log"

    async def publish_all() -> None:
        for _ in range(CASES):
            await publish_case(kemlu, steps=STEPS, kp2mi=kp2mi)

    publishing = asyncio.create_task(publish_all())
    databases = Databases(settings)
    kills = 0
    died_on_their_own: list[int] = []
    positions = [0]  # where each consumer found the projection, and where the last left it
    while kills < KILLS:
        proc = await _start_consumer(nats_server.url, settings, log)
        # Killed while it applies, never while it starts (its imports alone take longer
        # than the random delays did, and every kill landed there, with nothing applied):
        # once it has committed a batch, at an arbitrary moment of what follows (inside a
        # transaction, between a commit and its acks, fetching). The fault is the point
        # here: not when told to.
        await _applying(proc, databases, positions[-1], log)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        with contextlib.suppress(ProcessLookupError):  # it may have ended: checked below
            proc.send_signal(signal.SIGKILL)
        code = await proc.wait()
        if code != -signal.SIGKILL:
            died_on_their_own.append(code)
        kills += 1
        positions.append(await asyncio.to_thread(_position, databases))
    assert died_on_their_own == [], log.read_text()[-3000:]
    await publishing

    survivor = await _start_consumer(nats_server.url, settings, log)
    try:
        async with asyncio.timeout(120):
            while await asyncio.to_thread(_position, databases) < EVENTS:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(log.read_text()[-3000:]) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            survivor.send_signal(signal.SIGTERM)
        await asyncio.wait_for(survivor.wait(), 30)

    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        records = load_records(session)
        tracking = session.exec(select(Tracking).where(Tracking.consumer == "record")).one()
    databases.dispose()
    seqs = Counter(entry.seq for record in records for entry in record.timeline)
    lost = EVENTS - len(seqs)
    duplicated = sum(count - 1 for count in seqs.values())
    quarantined = len([e async for e in list_entries(js, settings)])
    print(
        f"kills={kills} (positions {positions}) events={EVENTS} lost={lost} "
        f"duplicated={duplicated} quarantined={quarantined}"
    )
    assert (lost, duplicated, quarantined) == (0, 0, 0)
    assert (tracking.position, tracking.applied) == (EVENTS, EVENTS)
    for record in records:
        timeline = [entry.seq for entry in record.timeline]
        assert timeline == sorted(timeline), "a case's events applied out of order"
        assert len(timeline) == STEPS + 1
