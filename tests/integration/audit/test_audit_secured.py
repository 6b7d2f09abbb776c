"""The auditors' commands on the embedded default, where authorization is on: the auditor
may read the log but create no consumer, so the whole log is read by batched direct gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lintas.audit import StreamReader
from lintas.audit.events import StoredEvent
from lintas.demo import PATHWAYS, run_demo
from lintas.infra.nats.bus import connect, open_bus
from lintas.infra.nats.credentials import uses_credentials
from lintas.infra.settings import Settings
from tests.support.audit import cli

pytestmark = pytest.mark.nats


async def test_verify_and_replay_run_as_the_auditor_on_a_secured_bus(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = await run_demo(settings, len(PATHWAYS), timeout_s=120)
    assert uses_credentials(settings, "auditor")  # the demo's bus: authorization on
    monkeypatch.setenv("LINTAS_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("LINTAS_NATS_URL", raising=False)
    single: list[int] = []

    async def one_by_one(self: StreamReader, seq: int) -> StoredEvent | None:
        single.append(seq)
        return None

    monkeypatch.setattr(StreamReader, "_get", one_by_one)  # not needed: all in batches
    capsys.readouterr()
    assert await cli("verify") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{result.events} events of {len(PATHWAYS)} cases" in out, out
    assert await cli("replay", "--database", f"sqlite:///{tmp_path / 'r.db'}") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{result.events} applied, 0 skipped" in out, out
    assert single == []
    case = result.records[0]
    assert await cli("verify", "--case", case.case_id) == 0  # a case's batches, as the auditor
    out = " ".join(capsys.readouterr().out.split())
    assert f"{len(case.timeline)} events of 1 case" in out, out
    # Junk on the log, under an agency's subjects (only admission's identity may write
    # there now: a faulty or broken-into writer): the auditor's verify counts it, passes
    # over it, and checks the streams' configuration too (stream info is its to read).
    async with open_bus(settings) as url:
        nc = await connect(url, "lintas-junk", settings=settings, identity="admission")
        try:
            ack = await nc.jetstream().publish(
                f"lintas.kemlu.kp2mi.case.opened.{case.case_id}", b"", stream=settings.stream
            )
        finally:
            await nc.close()
    assert await cli("verify", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["events"] == result.events
    assert [(p["code"], p["seq"]) for p in doc["not_events"]] == [("not-json", ack.seq)]
    assert doc["problems"] == []
