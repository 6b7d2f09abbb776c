"""``lintas rebuild CONSUMER`` on a secured bus, as the consumer's own identity.

An agency may not read the stream: its worklist is rebuilt through the read service, with
only the agency's seed at hand (any other identity would be refused by the server), and
ends with the rows it had before they were lost. The command refuses a consumer that is
running, and a name that has no projection, on standard error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, delete, select

from lintas.cli import main
from lintas.consumers.app import Databases, attach_agency, create_broker
from lintas.consumers.projections import WorklistRow, load_worklist
from lintas.contracts import new_case_id
from lintas.infra.db import Tracking
from lintas.infra.keys.signing import (
    Verifier,
    ensure_agency_key,
    load_registry,
    publish_registry,
)
from lintas.infra.nats.credentials import seed_path
from lintas.infra.nats.topology import declare_platform, deployment_consumers
from lintas.infra.reads import ReadService
from lintas.infra.settings import Settings
from tests.support.audit import OPENED
from tests.support.helpers import Applied
from tests.support.secured import (
    AGENCIES,
    Client,
    Hub,
    admission_running,
    agency_publisher,
    secured_hub,
)

pytestmark = pytest.mark.nats


def _only_seed_of(settings: Settings, identity: str, directory: Path) -> Path:
    """A credentials directory holding ``identity``'s seed and no other."""
    directory.mkdir()
    shutil.copy2(seed_path(settings, identity), directory / seed_path(settings, identity).name)
    return directory


def _as(monkeypatch: pytest.MonkeyPatch, hub: Hub, credentials: Path) -> None:
    """The command's settings: the hub's data dir and bus, and ``credentials``."""
    for name in list(os.environ):
        if name.startswith("LINTAS_") and not name.startswith("LINTAS_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LINTAS_DATA_DIR", str(hub.settings.data_dir))
    monkeypatch.setenv("LINTAS_NATS_URL", hub.url)
    monkeypatch.setenv("LINTAS_CREDENTIALS_DIR", str(credentials))


def _worklist(databases: Databases) -> list[dict[str, Any]]:
    engine, _ = databases.for_consumer("worklist-dukcapil")
    with Session(engine) as session:
        return [item.model_dump() for item in load_worklist(session, "dukcapil")]


async def _num_waiting(platform: Client, settings: Settings, consumer: str) -> int:
    info = await platform.js().consumer_info(settings.stream, consumer)
    return int(info.num_waiting or 0)


async def test_rebuild_an_agencys_worklist_as_the_agency_through_the_read_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with secured_hub(tmp_path) as hub, contextlib.AsyncExitStack() as stack:
        settings = hub.settings
        platform = await Client.open(hub.url, settings, "platform")
        await declare_platform(platform.js(), settings, deployment_consumers(AGENCIES))
        for agency in AGENCIES:
            ensure_agency_key(settings, agency)
        await publish_registry(platform.js(), load_registry(settings))
        reads = ReadService(
            platform.conn,
            platform.js(),
            settings.stream,
            verifier=Verifier(load_registry(settings)),
        )
        await reads.start()
        kemlu = await Client.open(hub.url, settings, "kemlu")
        await stack.enter_async_context(admission_running(hub))
        try:
            publisher = agency_publisher(kemlu, settings)
            case_id, now = new_case_id(), datetime.now(UTC)
            await publisher.publish(
                "case.opened", OPENED, case_id=case_id, target="kp2mi", time=now
            )
            for n in range(3):
                await publisher.publish(
                    "document.requested",
                    {"request_id": f"doc-{n}", "kind": "nik"},
                    case_id=case_id,
                    target="dukcapil",
                    time=now,
                )

            def consumer(on_commit: list[Any]) -> tuple[Any, Databases]:
                databases = Databases(settings)
                broker = create_broker(hub.url, settings, "dukcapil")
                attach_agency(
                    broker, databases, settings, "dukcapil", on_commit=on_commit,
                    verifier=Verifier(load_registry(settings)), via_read_service=True,
                )  # fmt: skip
                return broker, databases

            applied = Applied()
            broker, databases = consumer([applied])
            await broker.start()
            try:
                await applied.wait_for(3)
                before = _worklist(databases)
                assert len(before) == 3

                # Running: the command refuses, and changes nothing.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 15
                while not await _num_waiting(platform, settings, "agency-dukcapil"):
                    assert loop.time() < deadline, "the consumer never pulled"
                    await asyncio.sleep(0.05)
                _as(monkeypatch, hub, _only_seed_of(settings, "dukcapil", tmp_path / "mine"))
                capsys.readouterr()
                assert await asyncio.to_thread(main, ["rebuild", "dukcapil"]) == 1
                failed = capsys.readouterr()
                # Either of its two consumers, whichever was seen asking first.
                assert "-dukcapil is being consumed" in failed.err
                assert failed.out == ""
                assert _worklist(databases) == before
            finally:
                await broker.stop()

            # Stopped pulling, but its process still holds the tables (as one busy applying
            # a long batch would, unseen by the look at pull requests): the lock refuses.
            assert await asyncio.to_thread(main, ["rebuild", "dukcapil"]) == 1
            held = capsys.readouterr()
            assert "the worklist projection is in use" in held.err
            assert _worklist(databases) == before

            # The projection lost its rows (a bad restore, a fold fixed): rebuilt from the log.
            engine, _ = databases.for_consumer("worklist-dukcapil")
            with Session(engine) as session:
                session.exec(delete(WorklistRow))  # type: ignore[call-overload]
                session.commit()
            databases.dispose()
            assert await asyncio.to_thread(main, ["rebuild", "dukcapil"]) == 0
            done = capsys.readouterr()
            assert done.err == ""
            assert "agency-dukcapil: 3 events applied up to stream sequence 4" in done.out
            assert "rebuilt the worklist of dukcapil from the log" in done.out
            assert _worklist(databases) == before
            with Session(engine) as session:
                tracked = {
                    row.consumer: (row.position, row.applied)
                    for row in session.exec(select(Tracking))
                }
            assert tracked["agency-dukcapil"] == (4, 3)  # seq 1: the opening, for kp2mi

            # The record, as the platform (only its seed at hand).
            _as(monkeypatch, hub, _only_seed_of(settings, "platform", tmp_path / "platform"))
            assert await asyncio.to_thread(main, ["rebuild", "record"]) == 0
            assert "rebuilt the coordination record from the log" in capsys.readouterr().out

            assert await asyncio.to_thread(main, ["rebuild", "nobody"]) == 2
            refused = capsys.readouterr()
            assert "'nobody' has no projection" in refused.err
            assert refused.out == ""
            databases.dispose()
        finally:
            await reads.stop()
            await kemlu.close()
            await platform.close()
