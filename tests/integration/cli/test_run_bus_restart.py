"""``lintas run`` processes (real subprocesses) when the bus goes away under them.

The embedded server dies and comes back (its owner starts it again, on the port it had):
each process reconnects and carries on, nothing published before is lost and what is
published after is applied. A process stopped with SIGTERM while it reconnects ends
cleanly; one whose bus stays away exits non-zero, for a supervisor to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlmodel import Session, select

from lintas.consumers.app import Databases
from lintas.consumers.projections import RecordCaseRow
from lintas.contracts import new_case_id
from lintas.infra.db import Tracking, ensure_tables
from lintas.infra.keys.signing import ensure_agency_key
from lintas.infra.nats.bus import PID_FILE, PORT_FILE, embedded_url, open_bus
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.outage import EXIT_BUS_LOST
from lintas.infra.settings import Settings
from lintas.producers import Publisher, connect
from tests.support.helpers import declare_record, line_with, signed

pytestmark = [pytest.mark.nats, pytest.mark.slow]

OPENED = {
    "situation": "undocumented_abroad",
    "location": {"country": "MY", "subdivision": "MY-12"},
    "jurisdiction": {"country": "MY"},
    "risk_level": "high",
}


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    """The same settings for a child process (its declarations must match ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        env[f"LINTAS_{name.upper()}"] = (
            json.dumps(list(value)) if isinstance(value, tuple | list) else str(value)
        )
    return env | extra


class Part:
    """One ``lintas run PART`` process, its output kept in a file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc, self.log = proc, log

    @classmethod
    async def start(cls, part: str, env: dict[str, str], log: Path) -> Part:
        with log.open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lintas.cli", "run", part, env=env, stdout=sink, stderr=sink
            )
        return cls(proc, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def up(self) -> None:
        """Until it says it runs (its consumers declared and bound), from its log file."""
        try:
            async with asyncio.timeout(60):
                while "lintas runs" not in self.output():
                    assert self.proc.returncode is None, self.output()[-3000:]
                    await asyncio.sleep(0.05)  # a file: nothing to await
        except TimeoutError:
            raise AssertionError(self.output()[-3000:]) from None

    async def terminate(self, within_s: float = 30.0) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), within_s)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


def _positions(databases: Databases, consumers: dict[str, str]) -> dict[str, int]:
    """Each consumer's tracking position, by database: what another process applied."""
    found = {}
    for consumer, database in consumers.items():
        engine, _ = databases.for_consumer(database)
        ensure_tables(engine)  # the process may not have made them yet
        with Session(engine) as session:
            row = session.exec(select(Tracking).where(Tracking.consumer == consumer)).first()
        found[consumer] = row.position if row else 0
    return found


async def _applied_up_to(
    databases: Databases, consumers: dict[str, str], seq: int, parts: list[Part]
) -> None:
    """Until every consumer has applied up to ``seq`` (the processes tell no one: their
    tracking rows are watched), or one of the processes ends."""
    try:
        async with asyncio.timeout(90):
            while True:
                positions = await asyncio.to_thread(_positions, databases, consumers)
                if all(p >= seq for p in positions.values()):
                    return
                ended = [p for p in parts if p.proc.returncode is not None]
                assert not ended, ended[0].output()[-3000:]
                await asyncio.sleep(0.1)
    except TimeoutError:
        logs = "\n".join(p.output()[-2000:] for p in parts)
        raise AssertionError(f"applied only up to {positions}, not {seq}:\n{logs}") from None


def _crashed(output: str) -> bool:
    """Whether a traceback went to the output raw: uncaught, not a log line's (JSON)."""
    return any(line.startswith("Traceback") for line in output.splitlines())


async def _publish(publisher: Publisher, count: int) -> int:
    last = 0
    for _ in range(count):
        case_id = new_case_id()
        stored = await publisher.publish("case.opened", OPENED, case_id=case_id, target="kp2mi")
        last = stored.stream_seq
    return last


async def _restarted(settings: Settings, old_pid: int) -> str:
    """Until the owner has started the server again: its new pid published, serving."""
    async with asyncio.timeout(30):
        while True:
            url = await embedded_url(settings.data_dir)
            pid = (settings.data_dir / PID_FILE).read_text().strip()
            if url is not None and pid != str(old_pid):
                return url
            await asyncio.sleep(0.05)  # the owner's restart is in its own time


@pytest.fixture
def embedded(settings: Settings) -> Settings:
    settings = settings.model_copy(update={"agencies": ("kemlu", "kp2mi")})
    ensure_agency_key(settings, "kemlu")
    return settings


async def test_run_processes_carry_on_after_the_embedded_server_dies_and_comes_back(
    embedded: Settings, tmp_path: Path
) -> None:
    settings = embedded
    consumers = {"record": "record", "agency-kp2mi": "worklist-kp2mi"}
    databases = Databases(settings)
    parts: list[Part] = []
    async with open_bus(settings, agencies=["kemlu", "kp2mi"]) as url:
        try:
            env = _env(settings)
            for part in ("record", "kp2mi"):
                parts.append(await Part.start(part, env, tmp_path / f"{part}.log"))
            for started in parts:
                await started.up()
            async with connect("kemlu", settings, url=url) as kemlu:
                before = await _publish(kemlu, 10)
                await _applied_up_to(databases, consumers, before, parts)

                server_pid = int((settings.data_dir / PID_FILE).read_text())
                os.kill(server_pid, signal.SIGKILL)
                # Back where it was: the processes' reconnect finds it.
                assert await _restarted(settings, server_pid) == url
                assert (settings.data_dir / PORT_FILE).read_text().strip() in url

                after = await _publish(kemlu, 10)
            await _applied_up_to(databases, consumers, after, parts)
            for part in parts:
                assert part.proc.returncode is None, part.output()[-3000:]
                assert "bus.reconnected" in part.output()
        finally:
            codes = [await p.terminate() for p in parts]
    for part in parts:
        assert not _crashed(part.output()), part.output()[-3000:]
    assert codes == [0, 0]

    engine, _ = databases.for_consumer("record")
    with Session(engine) as session:
        cases = session.exec(select(RecordCaseRow)).all()
        record = session.exec(select(Tracking).where(Tracking.consumer == "record")).one()
    databases.dispose()
    assert len(cases) == 20  # nothing lost, before or after the restart
    assert (record.position, record.applied) == (after, 20)


@pytest.fixture
async def away(
    nats_server: EmbeddedNats, js: JetStreamContext, settings: Settings
) -> AsyncIterator[tuple[EmbeddedNats, Any]]:
    """A bus with the record declared and one event on it, and a function starting
    ``lintas run record`` on it with more settings (killed at the end if still running: a
    failed test leaves no process behind)."""
    await declare_record(js, settings)
    kemlu = signed(js, settings, "kemlu")
    await kemlu.publish("case.opened", OPENED, case_id=new_case_id(), target="kp2mi")
    started: list[Part] = []

    async def run_record(log: Path, **extra: str) -> Part:
        env = _env(settings.model_copy(update={"nats_url": nats_server.url}), **extra)
        with log.open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lintas.cli",
                "run",
                "record",
                env=env,
                stdout=sink,
                stderr=asyncio.subprocess.PIPE,
            )
        started.append(Part(proc, log))
        return started[-1]

    yield nats_server, run_record
    for part in started:
        if part.proc.returncode is None:
            await part.kill()


async def _said(part: Part, text: str) -> str:
    assert part.proc.stderr is not None
    try:
        return await line_with(part.proc.stderr, text, within_s=60)
    except (AssertionError, TimeoutError):
        await part.kill()
        raise


async def test_sigterm_while_reconnecting_ends_cleanly(
    away: tuple[EmbeddedNats, Any], tmp_path: Path
) -> None:
    server, run_record = away
    part = await run_record(tmp_path / "record.log", LINTAS_BUS_LOST_EXIT_S="600")
    await part.up()  # its consumer is bound
    await server.stop()
    await _said(part, "bus.disconnected")  # reconnecting now
    part.proc.send_signal(signal.SIGTERM)
    assert part.proc.stderr is not None
    rest = (await asyncio.wait_for(part.proc.stderr.read(), 30)).decode()
    assert await asyncio.wait_for(part.proc.wait(), 30) == 0, rest
    assert not _crashed(rest), rest


async def test_a_process_whose_bus_stays_away_exits_for_its_supervisor(
    away: tuple[EmbeddedNats, Any], tmp_path: Path
) -> None:
    server, run_record = away
    part = await run_record(tmp_path / "record.log", LINTAS_BUS_LOST_EXIT_S="1")
    await part.up()
    await server.stop()
    assert part.proc.stderr is not None
    rest = (await asyncio.wait_for(part.proc.stderr.read(), 60)).decode()
    assert await asyncio.wait_for(part.proc.wait(), 30) == EXIT_BUS_LOST, rest
    assert "the bus has been away for 1s" in " ".join(rest.split())
    assert not _crashed(rest), rest
