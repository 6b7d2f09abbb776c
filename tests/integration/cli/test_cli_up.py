"""``lintas up`` as a real process: starts the bus and consumers, applies, stops on SIGINT."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlmodel import Session

from lintas.audit import Checkpoint, read_checkpoints
from lintas.consumers.app import Databases
from lintas.consumers.projections import load_record
from lintas.infra.keys.signing import (
    SEALER,
    Signer,
    ensure_agency_key,
    load_registry,
    registry_from_kv,
)
from lintas.infra.nats.bus import AccessRefused, connect
from lintas.infra.nats.embedded import EmbeddedNats
from lintas.infra.nats.topology import intake_stream
from lintas.infra.reads import ServiceReads
from lintas.infra.settings import Settings
from lintas.producers import Admission, Publisher
from tests.support.gate import Gate
from tests.support.helpers import line_with, publish_case

pytestmark = [pytest.mark.nats, pytest.mark.slow]


async def _up(settings: Settings, **env: str) -> asyncio.subprocess.Process:
    """``lintas up`` on the settings' data dir and its own embedded bus, ``env`` added."""
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("LINTAS_NATS_URL", "LINTAS_DATABASE_URL")
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lintas.cli",
        "up",
        env={**inherited, "LINTAS_DATA_DIR": str(settings.data_dir), "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_up_runs_consumers_until_sigint(settings: Settings) -> None:
    for agency in ("kemlu", "kp2mi"):  # registered before `lintas up` reads the registry
        ensure_agency_key(settings, agency)
    proc = await _up(settings, LINTAS_WATCHDOG_TICK_S="0.5", LINTAS_CHECKPOINT_INTERVAL_S="0.5")
    assert proc.stdout is not None
    try:
        line = await line_with(proc.stdout, "lintas is up on", 30)
        assert "checkpoints every 0.5 s" in line
        found = re.search(r"nats://127\.0\.0\.1:\d+", line)
        assert found, line
        url_text = found.group(0)
        assert (Path(settings.data_dir) / "nats.url").read_text().strip() == url_text
        # Authorization is on: no anonymous client gets in...
        with pytest.raises(AccessRefused, match="refused an anonymous client"):
            await connect(url_text, "anonymous")
        # ...and each agency publishes as itself, with the credentials `lintas up` made.
        publishers, clients = {}, []
        try:
            for agency in ("kemlu", "kp2mi"):
                nc = await connect(url_text, agency, settings=settings, identity=agency)
                clients.append(nc)
                publishers[agency] = Publisher(
                    nc.jetstream(),
                    agency,
                    signer=Signer.load(settings, agency),
                    reads=ServiceReads(nc, agency),
                    admission=Admission(nc, nc.jetstream(), intake_stream(settings)),
                )
            # As far back as admission takes (30 days), and past both deadlines of a
            # document request (14 days to answer, 14 more before KPAI is told).
            long_ago = datetime.now(UTC) - timedelta(days=29)
            case_id = await publish_case(
                publishers["kemlu"], steps=2, kp2mi=publishers["kp2mi"], at=long_ago
            )
        finally:
            for nc in clients:
                await nc.close()
        databases = Databases(settings)
        engine, _ = databases.for_consumer("record")
        record = None
        # The requests were made 29 days ago with the default deadlines: long past. The
        # watchdog `lintas up` runs (with the key it made for it) sends both overdue
        # notices, then both escalations, into the record.
        async with asyncio.timeout(30):
            while record is None or len(record.timeline) < 7:
                await asyncio.sleep(0.05)  # another process writes it: poll its database
                with Session(engine) as session:
                    record = load_record(session, case_id) if _has_table(engine) else None
        databases.dispose()
        assert [e.type for e in record.timeline] == [
            "case.opened",
            "document.requested",
            "document.requested",
            "document.overdue",
            "document.overdue",
            "oversight.escalated",
            "oversight.escalated",
        ]
        assert {(e.source, e.target) for e in record.timeline[3:5]} == {("watchdog", "kemlu")}
        assert {(e.source, e.target) for e in record.timeline[5:]} == {("watchdog", "kpai")}
        assert (settings.data_dir / "keys" / "watchdog.key").exists()
        # The platform checkpoints the log as it grows, with the sealer's key (no agency's, not
        # the watchdog's): a checkpoint reaches the last event (the stream is written by
        # another process: poll the checkpoints).
        auditor = await connect(url_text, "auditor", settings=settings, identity="auditor")
        try:
            js = auditor.jetstream()
            last_seq = (await js.stream_info(settings.stream)).state.last_seq
            checkpoints: list[Checkpoint] = []
            async with asyncio.timeout(30):
                while not checkpoints or checkpoints[-1].last_seq < last_seq:
                    await asyncio.sleep(0.05)
                    checkpoints = await read_checkpoints(js, settings)
            # The registry is in the bus from the first start, every key of this data dir in
            # it, the sealer's and the watchdog's made by `lintas up` included.
            held = await registry_from_kv(js)
        finally:
            await auditor.close()
        assert {checkpoint.signed_by for checkpoint in checkpoints} == {SEALER}
        assert checkpoints[0].first_seq == 1
        assert {e.agency for e in held.entries()} >= {"kemlu", "kp2mi", "watchdog", SEALER}
        assert {e.keyid for e in load_registry(settings).entries()} <= {
            e.keyid for e in held.entries()
        }
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert not (Path(settings.data_dir) / "nats.url").exists()


def _has_table(engine: object) -> bool:
    return inspect(engine).has_table("record_case")


async def test_up_with_a_checkpoint_interval_of_0_does_not_checkpoint(settings: Settings) -> None:
    proc = await _up(settings, LINTAS_CHECKPOINT_INTERVAL_S="0")
    assert proc.stdout is not None
    try:
        line = await line_with(proc.stdout, "lintas is up on", 30)
        assert "agencies (" in line
        assert "checkpoints every" not in line
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0


async def test_up_interrupted_while_it_starts_ends_cleanly(settings: Settings) -> None:
    """Ctrl-C during start-up (here: just after the watchdog's key is made, while the
    declarations and consumers are still starting) ends ``lintas up`` with 0, not 130."""
    proc = await _up(settings, LINTAS_CHECKPOINT_INTERVAL_S="0")
    assert proc.stdout is not None
    try:
        await line_with(proc.stdout, "made the watchdog's signing key", 30)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, output.decode()
    assert b"Traceback" not in output


async def test_up_stopped_while_a_start_that_fails_ends_cleanly(
    settings: Settings, nats_server: EmbeddedNats
) -> None:
    """SIGTERM while ``lintas up`` starts its brokers, on a bus that holds the record's
    broker unanswered (its start would fail): the start is abandoned, and it ends with 0,
    not with the start's failure (1)."""
    gate = Gate(nats_server.url, "lintas-platform")  # create_broker's name for the record's
    async with gate:
        proc = await _up(settings, LINTAS_NATS_URL=gate.url, LINTAS_CHECKPOINT_INTERVAL_S="0")
        try:
            await asyncio.wait_for(gate.met.wait(), 60)  # declared; its broker is connecting
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, output.decode()
    assert b"lintas is up" not in output
    assert b"Traceback" not in output, output.decode()
